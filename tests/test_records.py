"""One module writes a detection's record (io/records.py): segpost serve's answers and segpost
run's lines carry the same detections, in the same form, for the same round of a real pipeline."""
import dataclasses

import pytest

from segpost.config import build_from_config
from segpost.io.records import frame_record
from segpost.pipeline import MultiCameraPipeline
from segpost.postprocess import OutputKind
from segpost.synthetic.scene import Scene

pytest.importorskip("grpc", reason="segpost.serve needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")
from segpost.serve.app import round_answers  # noqa: E402


def test_serve_answers_are_the_records_segpost_run_writes(tmp_path):
    ve, dec, config = build_from_config({"backend": "synthetic", "classes": ["red", "green", "blue"],
                                         "max_frame_size": [240, 320], "max_cameras": 2}, str(tmp_path), device="cpu")
    # As serve builds it: RLE masks, no tracking (its requests are independent frames).
    pipeline = MultiCameraPipeline(ve, dec, dataclasses.replace(config, output=OutputKind.RLE, track=None))
    scene = Scene([(240, 320), (240, 320)], num_classes=3, seed=7)
    seen = 0
    for r in range(3):
        result = pipeline.process(scene.render(r)[0])
        answers = round_answers(result, 2, replica=5)
        for slot in range(2):
            camera = result.cameras[slot]
            record = frame_record(r, slot, "file.mp4", r, camera)
            assert answers[slot]["detections"] == record["detections"], (r, slot)
            assert (answers[slot]["height"], answers[slot]["width"]) == tuple(camera.frame_size)
            # The form itself, written out here: class, score (5 decimals), box (2), COCO RLE mask.
            written = [{"class": name, "score": round(float(fr.scores[k]), 5),
                        "box": [round(float(v), 2) for v in fr.boxes[k]],
                        "mask": {"size": fr.masks[k]["size"], "counts": fr.masks[k]["counts"].decode("ascii")}}
                       for name, fr in camera.by_class.items() for k in range(len(fr))]
            assert record["detections"] == written, (r, slot)
            seen += len(written)
    assert seen >= 6   # the scene's objects were found: the comparison compared something
