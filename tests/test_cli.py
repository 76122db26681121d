"""segpost demo and segpost run, on the CPU (the GPU demo runs in bench/run_gpu.sh)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from segpost.cli import main
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2")


def test_demo_scores_the_scene_and_writes_outputs(tmp_path, capsys):
    summary_file, png = tmp_path / "summary.json", tmp_path / "mosaic.png"
    code = main(["demo", "--device", "cpu", "--cameras", "3", "--frames", "12", "--min-iou", "0.9",
                 "--json", str(summary_file), "--save", str(png), "--output", "packed"])
    assert code == 0
    summary = json.loads(summary_file.read_text())
    assert summary["rounds"] == 4 and summary["objects_scored"] == 4 * 3 * 8
    assert summary["mean_iou"] >= 0.9 and summary["false_positives"] == 0
    assert summary["round_ms_p95"] >= summary["round_ms_p50"] > 0
    import cv2

    assert cv2.imread(str(png)).shape[2] == 3
    printed = capsys.readouterr().out
    assert "FPS per camera" in printed and "mask IoU vs ground truth" in printed


def test_demo_soak_mode_samples_memory(tmp_path):
    summary_file = tmp_path / "soak.json"
    assert main(["demo", "--device", "cpu", "--cameras", "2", "--classes", "1", "--frames", "2000", "--soak",
                 "--eval-every", "0", "--size", "64x48", "--json", str(summary_file)]) == 0
    soak = json.loads(summary_file.read_text())["soak"]
    assert soak["samples"] == 3 and soak["rss_delta_mb"] < 20


def test_demo_bad_arguments(capsys):
    assert main(["demo", "--device", "cpu", "--size", "big"]) == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err
    assert main(["demo", "--device", "cpu", "--busy-ms", "5"]) == 2
    assert main(["demo", "--device", "cpu", "--classes", "7"]) == 2
    assert main(["demo", "--device", "cpu", "--frames", "0"]) == 2


def _video(path, frames):
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (w, h))  # lossless
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_run_writes_json_lines_and_skips_a_dead_source(tmp_path):
    from pycocotools import mask as mask_utils

    scene = Scene([(240, 320)], num_classes=2, seed=5)
    rendered = [scene.render(r) for r in range(3)]
    _video(tmp_path / "cam0.avi", [frames[0] for frames, _ in rendered])
    config = tmp_path / "segpost.json"
    config.write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640]}))
    out = tmp_path / "detections.jsonl"
    code = main(["run", "--device", "cpu", "--config", str(config), "--source", str(tmp_path / "cam0.avi"),
                 "--source", str(tmp_path / "missing.mp4"), "--out", str(out)])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    errors = [r for r in records if r.get("event") == "error"]
    assert len(errors) == 1 and errors[0]["camera"] == 1 and "cannot open" in errors[0]["message"]
    frames = [r for r in records if "detections" in r]
    assert [r["frame_index"] for r in frames] == [0, 1, 2] and all(r["camera"] == 0 for r in frames)
    for record, (_, truths) in zip(frames, rendered):
        truth = truths[0]
        assert len(record["detections"]) == len(truth.objects) == 4
        for detection in record["detections"]:
            mask = mask_utils.decode({"size": detection["mask"]["size"], "counts": detection["mask"]["counts"].encode()})
            best = max(np.count_nonzero(mask & truth.mask(k)) / np.count_nonzero(mask | truth.mask(k))
                       for k in range(len(truth.objects)))
            assert best > 0.9


def test_run_png_masks_and_errors(tmp_path, capsys):
    scene = Scene([(120, 160)], num_classes=1, seed=2)
    _video(tmp_path / "cam.avi", [scene.render(0)[0][0]])
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"backend": "synthetic", "classes": ["red"], "max_frame_size": [120, 160]}))
    out = tmp_path / "d.jsonl"
    assert main(["run", "--device", "cpu", "--config", str(config), "--source", str(tmp_path / "cam.avi"),
                 "--out", str(out), "--masks", "png", "--mask-dir", str(tmp_path / "masks")]) == 0
    record = json.loads(out.read_text().splitlines()[0])
    import cv2

    assert all(cv2.imread(d["mask"], cv2.IMREAD_GRAYSCALE).shape == (120, 160) for d in record["detections"])
    assert main(["run", "--device", "cpu", "--config", str(config), "--source", str(tmp_path / "none.avi"),
                 "--out", str(out)]) == 2
    assert "no source could be read" in capsys.readouterr().err
    assert main(["run", "--device", "cpu", "--config", str(tmp_path / "nope.json"), "--source", "x"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "segpost", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "demo" in done.stdout and "run" in done.stdout
