"""The README's first run, command by command, as a new user types it on a CPU machine: each
command below must appear in README.md word for word, runs as a real process in a fresh folder
holding a copy of examples/, bounded (--max-rounds, --max-seconds), and must write records."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from brokers import free_port
from export_cases import skip_without_export_packages

pytest.importorskip("cv2", reason="the examples' video is written and read with OpenCV: pip install 'segpost[video]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as _f:
    README = _f.read()

MAKE_VIDEO = "python examples/make_video.py scene.avi"
MAKE_FRAME = "python examples/make_video.py frame.png"
RUN = "segpost run --config examples/run.json --source scene.avi --out detections.jsonl"
RUN_TRACK = "segpost run --config examples/run-track.json --source scene.avi --source scene.avi --out tracks.jsonl"
FLEET = "segpost fleet --config examples/fleet.json --out detections/"
SERVE = "segpost serve --config examples/serve.json"
CLIENT = "python examples/serve_client.py --http http://127.0.0.1:8000/segment frame.png"
EXPORT_TINY = "python engines/export_onnx.py --tiny --out tiny/ --classes red green"
INSPECT_TINY = "segpost inspect tiny/vision-encoder.onnx tiny/decoder.onnx"
RUN_TINY = "segpost run --config tiny/pipeline-onnx.json --source scene.avi --out tiny.jsonl"


def argv(command, *extra):
    """A README command as this interpreter runs it: `segpost` is `python -m segpost`."""
    words = shlex.split(command) + list(extra)
    if words[0] == "segpost":
        return [sys.executable, "-m", "segpost", *words[1:]]
    assert words[0] == "python"
    return [sys.executable, *words[1:]]


def run(folder, command, *extra, timeout=300, env=None):
    done = subprocess.run(argv(command, *extra), cwd=folder, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def folder(tmp_path):
    """A user's folder: examples/ (and engines/, for the export) beside them, the scene video made."""
    shutil.copytree(os.path.join(ROOT, "examples"), tmp_path / "examples")
    shutil.copytree(os.path.join(ROOT, "engines"), tmp_path / "engines")
    run(tmp_path, MAKE_VIDEO)
    return tmp_path


def test_every_command_here_is_in_the_readme():
    missing = [c for c in (MAKE_VIDEO, MAKE_FRAME, RUN, RUN_TRACK, FLEET, SERVE, CLIENT, EXPORT_TINY, INSPECT_TINY,
                           RUN_TINY) if c not in README]
    assert not missing, missing


def test_run_example_writes_detections(folder):
    run(folder, RUN, "--max-rounds", "5")
    frames = [r for r in records(folder / "detections.jsonl") if "detections" in r]
    assert [r["frame_index"] for r in frames] == list(range(5))
    # the scene: 2 classes x 2 objects, each found (the synthetic engines on the lossless video)
    assert all(sorted(d["class"] for d in r["detections"]) == ["green", "green", "red", "red"] for r in frames)


def test_run_with_tracking_example_writes_track_ids_and_events(folder):
    run(folder, RUN_TRACK, "--max-rounds", "8")
    lines = records(folder / "tracks.jsonl")
    frames = [r for r in lines if "detections" in r]
    assert {r["camera"] for r in frames} == {0, 1} and len(frames) == 16
    started = [r for r in lines if r.get("event") == "track_started"]
    assert len(started) == 8, started   # 4 objects in each of the two cameras, confirmed after min_hits
    last = [r for r in frames if r["frame_index"] == 7]
    assert all(d["track_id"] >= 1 for r in last for d in r["detections"])


def needs_ray():
    pytest.importorskip("ray", reason="segpost fleet and serve run on Ray: pip install 'segpost[fleet]' (.ci/run does)")


def test_fleet_example_writes_each_cameras_file(folder):
    needs_ray()
    # RAY_ADDRESS=local: a Ray instance of its own, never one another test left on the machine
    run(folder, FLEET, "--max-seconds", "240", env={"RAY_ADDRESS": "local"}, timeout=400)
    for camera in ("cam-1", "cam-2"):
        frames = [r for r in records(folder / "detections" / f"{camera}.jsonl") if "detections" in r]
        assert [r["frame_index"] for r in frames] == list(range(50)), camera   # the whole video, once
        assert all(len(r["detections"]) == 4 for r in frames)


def test_serve_example_answers_the_example_client(folder):
    needs_ray()
    run(folder, MAKE_FRAME)
    # Port 8000 may be taken on a shared test machine: the example's config with only its port changed.
    port = free_port()
    config = json.loads((folder / "examples" / "serve.json").read_text())
    assert config["http_port"] == 8000
    (folder / "examples" / "serve.json").write_text(json.dumps({**config, "http_port": port}))
    process = subprocess.Popen(argv(SERVE, "--max-seconds", "400"), cwd=folder, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_ADDRESS": "local"})
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("Ctrl-C or SIGTERM stops" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        answer = run(folder, CLIENT.replace(":8000/", f":{port}/"), timeout=120)
        assert "frame.png: 320x240, 4 detections" in answer.stdout, answer.stdout
        assert answer.stdout.count(" red ") == 2 and answer.stdout.count(" green ") == 2
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_tiny_export_inspects_and_runs(folder):
    skip_without_export_packages()   # torch, transformers, onnx, onnxruntime (a failure under SEGPOST_EXPECT_EXPORT=1)
    run(folder, EXPORT_TINY, timeout=600)
    assert "fits the contract" in run(folder, INSPECT_TINY).stdout
    run(folder, RUN_TINY, "--max-rounds", "3")
    frames = [r for r in records(folder / "tiny.jsonl") if "detections" in r]
    assert [r["frame_index"] for r in frames] == [0, 1, 2]   # random weights: detections or not, every frame
