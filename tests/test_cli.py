"""segpost demo and segpost run, on the CPU (the GPU demo runs in bench/run_gpu.sh)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from brokers import free_port
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


# -- what a new user meets first: each mistake one line on stderr, exit 2, before any work ---------

def segpost(*args, env=None, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "segpost", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kwargs)


def one_line_error(done, *expected):
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and all(e in error[0] for e in expected), done.stderr[-3000:]


def test_demo_refuses_a_save_file_it_cannot_write_before_the_run(tmp_path):
    done = segpost("demo", "--device", "cpu", "--frames", "8", "--cameras", "2", "--save", str(tmp_path / "x.txt"))
    one_line_error(done, "--save", "x.txt", ".png", ".mp4")
    assert "cameras x" not in done.stderr            # refused before the run started, not after it
    done = segpost("demo", "--device", "cpu", "--frames", "8", "--save", str(tmp_path / "missing" / "x.png"))
    one_line_error(done, "--save", f"the folder {tmp_path / 'missing'} does not exist")
    assert main(["demo", "--device", "cpu", "--json", str(tmp_path)]) == 2


def test_an_out_that_is_a_folder_is_named_by_its_flag(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"backend": "synthetic", "classes": ["red"]}))
    assert main(["run", "--device", "cpu", "--config", str(config), "--source", "x.avi", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: a folder" in capsys.readouterr().err
    assert main(["run", "--device", "cpu", "--config", str(config), "--source", "x.avi",
                 "--out", str(tmp_path / "no" / "d.jsonl")]) == 2
    assert "the folder" in capsys.readouterr().err
    pytest.importorskip("ray")
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"pipeline": {"backend": "synthetic", "classes": ["red"]}, "gpus_per_worker": 0,
                                 "cameras": [{"name": "a", "source": "a.avi"}]}))
    assert main(["fleet", "--config", str(fleet), "--out", str(config)]) == 2   # a file, where a folder goes
    assert f"--out {config}: a file" in capsys.readouterr().err


def test_inspect_without_the_onnx_package_says_so(tmp_path):
    (tmp_path / "ve.onnx").write_bytes(b"\x08\x07")   # never read: the package is missing first
    # sys.modules["onnx"] = None: `import onnx` raises ModuleNotFoundError, as on a machine without it
    code = ("import sys; sys.modules['onnx'] = None; from segpost.cli import main; "
            f"sys.exit(main(['inspect', {str(tmp_path / 've.onnx')!r}, {str(tmp_path / 've.onnx')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "needs the onnx package" in done.stderr


def test_inspect_an_empty_onnx_file_is_not_readable(tmp_path, capsys):
    pytest.importorskip("onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "empty.onnx"), str(tmp_path / "empty.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err


def _ray_may_see_a_gpu():
    from segpost.postprocess import cuda_available

    return cuda_available() or shutil.which("nvidia-smi") is not None


@pytest.mark.skipif(_ray_may_see_a_gpu(), reason="a CUDA device is present: Ray can place what the defaults "
                    "ask for")
@pytest.mark.parametrize("command", ["fleet", "serve"])
def test_fleet_and_serve_asking_for_a_gpu_that_cannot_exist_stop_at_once(tmp_path, command):
    pytest.importorskip("ray")
    pytest.importorskip("pydantic")
    pipeline = {"backend": "synthetic", "classes": ["red"]}
    config = {"pipeline": pipeline, "cameras": [{"name": "a", "source": "a.avi"}]} if command == "fleet" else \
        {"pipeline": pipeline}
    (tmp_path / "c.json").write_text(json.dumps(config))
    extra = ["--out", str(tmp_path / "out")] if command == "fleet" else []
    # RAY_ADDRESS=local: what the commands start without --address; with the old code they would
    # wait there forever (this timeout ends them)
    done = segpost(command, "--config", str(tmp_path / "c.json"), "--max-seconds", "60", *extra,
                   env={"RAY_ADDRESS": "local"}, timeout=100)
    key = "gpus_per_worker" if command == "fleet" else "gpus_per_replica"
    one_line_error(done, "1 GPU", "has none", f'"{key}": 0')
    # the same config on a cluster named with --address is not judged here (a cluster can grow)
    from segpost.cli.ray_resources import check_local_resources

    check_local_resources("10.0.0.1:6379", {"GPU": 1}, who="w", fixes={"GPU": ""})


def test_fleet_status_without_a_fleet_is_one_line(tmp_path):
    pytest.importorskip("ray")
    # an address nobody listens on (Ray itself would retry the connection for minutes)
    done = segpost("fleet", "status", "--address", f"127.0.0.1:{free_port()}", timeout=60)
    one_line_error(done, "no Ray cluster answers at 127.0.0.1:")
    done = segpost("fleet", "status", "--status-file", str(tmp_path / "fleet-status.json"), timeout=60)
    one_line_error(done, "--status-file", "No such file")


def test_fleet_status_with_no_ray_on_the_machine_is_one_line():
    """As the README shows it: no address, no Ray instance running here."""
    pytest.importorskip("ray")
    from ray._private.services import find_gcs_addresses

    if find_gcs_addresses():
        pytest.skip("a Ray instance runs on this machine (another test's): 'auto' would find it")
    done = segpost("fleet", "status", env={"RAY_ADDRESS": ""}, timeout=120)
    one_line_error(done, "no Ray instance runs on this machine")


def test_the_resources_foreseen_are_those_a_local_ray_instance_gets():
    """The pre-flight check reads Ray's own detection (a private API): compared here with what a
    local instance really offers, in a fresh process, so that a Ray release that moves it shows."""
    pytest.importorskip("ray")
    code = ("import json, ray; from segpost.cli.ray_resources import local_ray_resources; "
            "foreseen = local_ray_resources(); "
            "ray.init(address='local', include_dashboard=False, log_to_driver=False); "
            "have = ray.cluster_resources(); ray.shutdown(); "
            "print(json.dumps([foreseen, {'GPU': have.get('GPU', 0.0), 'CPU': have['CPU']}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    foreseen, have = json.loads(done.stdout.splitlines()[-1])
    assert foreseen == have
