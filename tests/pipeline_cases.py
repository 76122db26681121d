"""Shared builders for the pipeline tests: synthetic engines, the scene, scoring."""
from __future__ import annotations

from segpost.synthetic.engines import SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder, prompt_for_class
from segpost.synthetic.evaluation import score_camera
from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from segpost.postprocess import OutputKind
from segpost.synthetic.scene import Scene

NAMES = ("red", "green", "blue", "yellow")


def geometry_for(device: str) -> SyntheticGeometry:
    return SyntheticGeometry() if device == "cuda" else SyntheticGeometry.small()


def camera_sizes(device: str, cameras: int):
    sizes = [(1080, 1920), (720, 1280)] if device == "cuda" else [(240, 320), (480, 640), (300, 200)]
    return [sizes[i % len(sizes)] for i in range(cameras)]


def prompts(geometry, classes: int = 4):
    return [ClassPrompt(n, *prompt_for_class(i, geometry)) for i, n in enumerate(NAMES[:classes])]


def make_pipeline(device: str, cameras: int = 3, classes: int = 4, output=OutputKind.FULL, engines=None, **config):
    geometry = geometry_for(device)
    sizes = camera_sizes(device, cameras)
    ve, dec = engines or (SyntheticVisionEncoder(geometry, device=device), SyntheticDecoder(geometry, device=device))
    cfg = PipelineConfig(prompts(geometry, classes), max_cameras=cameras,
                         max_frame_size=(max(h for h, _ in sizes), max(w for _, w in sizes)), output=output, **config)
    return MultiCameraPipeline(ve, dec, cfg), Scene(sizes, num_classes=classes, seed=3)


def scores(result, truths, classes: int = 4):
    """Per camera (mean IoU, false positives, objects)."""
    out = {}
    for camera, camera_result in result.cameras.items():
        s = score_camera(camera_result, truths[camera], NAMES[:classes])
        out[camera] = (s.mean_iou, s.false_positives, len(s.ious), min(s.ious) if s.ious else 1.0)
    return out


def assert_scene_seen(result, truths, classes: int = 4, min_iou: float = 0.9):
    got = scores(result, truths, classes)
    assert got, "no camera produced results"
    for camera, (mean_iou, false_positives, objects, worst) in got.items():
        assert objects == 2 * classes
        assert false_positives == 0, f"camera {camera}: {false_positives} false positives"
        assert worst > 0.5, f"camera {camera}: an object was missed or badly segmented (IoU {worst:.3f})"
        assert mean_iou >= min_iou, f"camera {camera}: mean IoU {mean_iou:.3f} < {min_iou}"
    return got
