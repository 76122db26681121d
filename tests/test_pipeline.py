"""MultiCameraPipeline end to end with the synthetic engines: the scene must come out right."""
import numpy as np
import pytest

from host_memory import host_allocations
from pipeline_cases import NAMES, assert_scene_seen, make_pipeline, scores
from segpost.engines.base import EngineError
from segpost.synthetic.engines import SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder
from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from segpost.postprocess import OutputKind

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("output", [OutputKind.FULL, OutputKind.PACKED, OutputKind.RLE])
def test_scene_is_segmented(device, output):
    cameras = 8 if device == "cuda" else 3
    pipeline, scene = make_pipeline(device, cameras=cameras, output=output)
    for r in range(3):
        frames, truths = scene.render(r * 7)
        result = pipeline.process(frames)
        assert result.round_index == r and not result.skipped and not result.overflow
        assert sorted(result.cameras) == list(range(cameras))
        for camera, camera_result in result.cameras.items():
            assert camera_result.frame_size == frames[camera].shape[:2]
        assert_scene_seen(result, truths)
    assert set(result.timings_ms) >= {"preprocess", "vision_encoder", "decoder", "postprocess_enqueue", "round"}


@pytest.mark.parametrize("device", DEVICES)
def test_fewer_live_cameras_and_resolution_change(device):
    pipeline, scene = make_pipeline(device, cameras=3)
    frames, truths = scene.render(0)
    result = pipeline.process([frames[0], None, frames[2]])
    assert sorted(result.cameras) == [0, 2] and not result.skipped
    assert_scene_seen(result, truths)
    # Camera 0 now sends a frame of another size: nothing to reconfigure.
    small, small_truth = make_pipeline(device, cameras=3)[1].render(5)
    result = pipeline.process([small[2], frames[1]])
    assert result.cameras[0].frame_size == small[2].shape[:2]
    assert_scene_seen(result, {0: small_truth[2], 1: truths[1]})


@pytest.mark.parametrize("device", DEVICES)
def test_bad_frame_skips_that_camera_only(device):
    pipeline, scene = make_pipeline(device, cameras=3)
    frames, truths = scene.render(1)
    bad = [frames[0], frames[1][:, :, :2].copy(), frames[2]]
    result = pipeline.process(bad)
    assert list(result.skipped) == [1] and "(H, W, 3) uint8" in result.skipped[1]
    assert sorted(result.cameras) == [0, 2]
    assert_scene_seen(result, truths)
    too_big = np.zeros((pipeline.max_frame_size[0] + 1, 8, 3), np.uint8)
    result = pipeline.process([too_big, frames[1], np.zeros((4, 4, 3), np.float32)])
    assert sorted(result.skipped) == [0, 2] and "larger than max_frame_size" in result.skipped[0]
    assert_scene_seen(result, truths)
    result = pipeline.process([None, None])
    assert not result.cameras and not result.skipped


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_channel_order_is_caught(device):
    """Negative control: frames handed over as RGB instead of BGR swap red and blue."""
    pipeline, scene = make_pipeline(device, cameras=2)
    frames, truths = scene.render(2)
    result = pipeline.process([np.ascontiguousarray(f[:, :, ::-1]) for f in frames])
    assert all(mean_iou < 0.6 for mean_iou, *_ in scores(result, truths).values())


def test_submit_collect_protocol():
    pipeline, scene = make_pipeline("cpu", cameras=2)
    frames, _ = scene.render(0)
    with pytest.raises(RuntimeError, match="collect"):
        pipeline.collect()
    pipeline.submit(frames)
    with pytest.raises(RuntimeError, match="submit"):
        pipeline.submit(frames)
    pipeline.collect()
    with pytest.raises(ValueError, match="at most 2"):
        pipeline.process(frames * 2)
    with pytest.raises(ValueError):
        pipeline.process(frames[0])


def test_results_are_views_and_a_copy_survives_the_next_round():
    pipeline, scene = make_pipeline("cpu", cameras=2)
    assert pipeline.memory_report()["io_buffers"] > 0
    first = pipeline.process(scene.render(0)[0])
    view = first.cameras[0].by_class["red"]
    kept = view.copy()
    boxes, masks = view.boxes.copy(), np.asarray(view.masks).copy()
    now = pipeline.process(scene.render(40)[0]).cameras[0].by_class["red"]
    assert len(view) == len(now) == 2
    # the copy still holds round 0 ...
    np.testing.assert_array_equal(kept.boxes, boxes)
    np.testing.assert_array_equal(np.asarray(kept.masks), masks)
    # ... while the views were overwritten in place with round 40, where the objects have moved
    assert np.shares_memory(view.boxes, now.boxes) and np.shares_memory(view.masks, now.masks)
    np.testing.assert_array_equal(view.boxes, now.boxes)
    assert not np.array_equal(boxes, now.boxes) and not np.array_equal(masks, np.asarray(now.masks))
    assert all(d.class_name in NAMES for d in first.cameras[1])


def test_rounds_keep_no_host_memory():
    """Everything is allocated at construction: 20 rounds leave nothing behind (one round's
    kept masks are ~0.6 MB; the synthetic engines' own temporaries come and go)."""
    pipeline, scene = make_pipeline("cpu", cameras=2)
    for r in range(2):
        pipeline.process(scene.render(r)[0])
    with host_allocations() as seen:
        for r in range(2, 22):
            pipeline.process(scene.render(r)[0])
    assert seen.traced_growth < 512 * 1024 and seen.heap_growth < 1024 * 1024, seen


def _engines(geometry=None, **decoder_kw):
    geometry = geometry or SyntheticGeometry.small()
    return SyntheticVisionEncoder(geometry), SyntheticDecoder(geometry, **decoder_kw), geometry


def test_config_errors_are_single_clear_messages():
    from pipeline_cases import prompts

    ve, dec, geometry = _engines()
    good = prompts(geometry)
    # a decoder whose tensor is named differently
    renamed = dict(dec.tensors)
    renamed["text_features"] = renamed.pop("prompt_features")
    dec._specs = renamed
    with pytest.raises(EngineError, match=r"decoder engine .*missing input tensor\(s\) \['prompt_features'\]"):
        MultiCameraPipeline(ve, dec, PipelineConfig(good))
    # engines not built as a pair
    ve, _, _ = _engines()
    other = SyntheticDecoder(SyntheticGeometry(image_size=252, mask_size=80, channels=4, num_queries=16,
                                               prompt_length=4, prompt_width=8))
    with pytest.raises(EngineError, match="fpn_feat_0 .* not built as a pair"):
        MultiCameraPipeline(ve, other, PipelineConfig(good))
    # a prompt of the wrong width
    ve, dec, _ = _engines()
    with pytest.raises(EngineError, match=r"prompt of class 'bad' has shape \[1, 5\]"):
        MultiCameraPipeline(ve, dec, PipelineConfig([ClassPrompt("bad", np.zeros((1, 5), np.float32))]))
    with pytest.raises(ValueError, match="unique"):
        MultiCameraPipeline(ve, dec, PipelineConfig(good[:1] * 2))
    with pytest.raises(ValueError, match="NaN"):
        MultiCameraPipeline(ve, dec, PipelineConfig([ClassPrompt("x", np.full((1, 8), np.nan, np.float32))]))
    with pytest.raises(ValueError, match="no classes"):
        MultiCameraPipeline(ve, dec, PipelineConfig([]))


def test_capacity_overflow_is_reported():
    pipeline, scene = make_pipeline("cpu", cameras=3, capacity=4)
    result = pipeline.process(scene.render(0)[0])
    assert set(result.overflow) == set(NAMES)
    assert all(sum(len(c.by_class[n]) for c in result.cameras.values()) == 4 for n in NAMES)


@pytest.mark.gpu
def test_gpu_pipeline_memory_constant_and_no_second_pred_masks(cp):
    """The VRAM the pipeline takes at construction is what its report counts (no hidden second
    pred_masks, the users' old double buffer), and rounds take no more."""
    cp.zeros(1)
    cp.get_default_memory_pool().free_all_blocks()   # every allocation below is a fresh cudaMalloc
    cp.cuda.Device().synchronize()   # and the context exists before the measure
    free_before = cp.cuda.runtime.memGetInfo()[0]
    pipeline, scene = make_pipeline("cuda", cameras=8)
    cp.cuda.Device().synchronize()
    taken = free_before - cp.cuda.runtime.memGetInfo()[0]
    report = pipeline.memory_report()
    counted = report["engines"] + report["io_buffers"] + report["postprocess"] + report["preprocess"]
    pred_masks = pipeline._buffers["pred_masks"].nbytes
    assert pred_masks > 256 << 20 and taken < counted + pred_masks // 2, (taken, report, pred_masks)
    frames, _ = scene.render(0)
    pipeline.process(frames)
    before = pipeline.memory_report()
    for r in range(1, 30):
        pipeline.process(scene.render(r)[0])
    after = pipeline.memory_report()
    assert after["device_used"] == before["device_used"]


@pytest.mark.parametrize("device", DEVICES)
def test_frames_decoded_into_staging(device):
    pipeline, scene = make_pipeline(device, cameras=3)
    frames, truths = scene.render(6)
    staged = [pipeline.staging(c, *f.shape[:2]) for c, f in enumerate(frames)]
    scene.render(6, into=staged)
    result = pipeline.process([staged[0], None, staged[2]])
    assert sorted(result.cameras) == [0, 2]
    assert_scene_seen(result, truths)
    # submit() returned after the upload: the slots can be refilled before collect()
    pipeline.submit(staged)
    scene.render(30, into=staged)
    assert_scene_seen(pipeline.collect(), truths)
    with pytest.raises(ValueError, match="camera 3 outside"):
        pipeline.staging(3, 10, 10)


@pytest.mark.parametrize("device", DEVICES)
def test_two_pipelines_in_two_threads_match_one_at_a_time(device):
    import threading

    def build():
        return make_pipeline(device, cameras=3, output=OutputKind.PACKED)

    def summary(result):
        return {c: {n: (r.query_ids.tolist(), r.scores.tolist(), r.boxes.tolist(), np.asarray(r.masks).tobytes())
                    for n, r in cr.by_class.items()} for c, cr in result.cameras.items()}

    rounds = [4, 9, 17]
    expected = {}
    for seed_shift, (pipeline, scene) in enumerate((build(), build())):
        expected[seed_shift] = [summary(pipeline.process(scene.render(r + seed_shift)[0])) for r in rounds]
    got, errors = {}, []

    def worker(index):
        try:
            pipeline, scene = build()
            got[index] = [summary(pipeline.process(scene.render(r + index)[0])) for r in rounds]
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert got == expected
