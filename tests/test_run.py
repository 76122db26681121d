"""``segpost run`` end to end, unattended: live RTSP cameras whose server restarts, MQTT and JSON
Lines out, the metrics endpoint scraped over HTTP, SIGTERM, a hung engine, a failing engine."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from brokers import Mosquitto, RtspServer, free_port, http_get, make_h264, mosquitto_path, rtsp_server_python
from segpost.cli import main
from segpost.synthetic.scene import Scene

cv2 = pytest.importorskip("cv2")
pytest.importorskip("prometheus_client")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program makes the test videos "
                                  "(apt-get install ffmpeg; .ci/run does)")
needs_rtsp = pytest.mark.skipif(rtsp_server_python() is None, reason="no GStreamer RTSP server (apt-get install "
                                "python3-gi gir1.2-gst-rtsp-server-1.0; .ci/run does)")
needs_mosquitto = pytest.mark.skipif(mosquitto_path() is None, reason="no mosquitto broker (apt-get install "
                                     "mosquitto; .ci/run does)")


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    scene = Scene([(240, 320)], num_classes=2, seed=5)
    frames = [scene.render(r)[0][0] for r in range(1000)]
    return make_h264(str(tmp_path_factory.mktemp("run") / "scene.mp4"), frames, fps=25)


def write_config(folder, **extra):
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], **extra}
    path = os.path.join(folder, "segpost.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def segpost_run(*args, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "segpost", "run", "--device", "cpu", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@needs_ffmpeg
@needs_rtsp
def test_live_cameras_reconnect_metrics_scrape_and_sigterm(tmp_path, scene_video):
    first, second = RtspServer({"cam": scene_video}).start(), RtspServer({"cam": scene_video}).start()
    out, port = str(tmp_path / "out.jsonl"), free_port()
    secret_url = first.url("cam").replace("rtsp://", "rtsp://admin:s3cret@")
    process = segpost_run("--config", write_config(str(tmp_path)), "--source", secret_url, "--source",
                          second.url("cam"), "--out", out, "--metrics-port", str(port), "--stall-seconds", "3",
                          "--decode", "auto")
    try:
        frames = lambda camera: [r for r in lines(out) if r.get("camera") == camera and "detections" in r]  # noqa: E731
        wait_until(lambda: len(frames(0)) >= 10 and len(frames(1)) >= 10, 60, "frames from both cameras")
        # A live stream joined mid-GOP decodes to smeared frames until its next keyframe, and a loaded
        # machine can fill the first ten with them: wait for a clean frame, not the first ten.
        wait_until(lambda: any(len(r["detections"]) == 4 for r in frames(0)), 60,
                   "a frame of camera 0 with all 4 objects (the synthetic engines saw nothing)")
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and 'segpost_frames_total{camera="0"}' in metrics
        assert "segpost_round_seconds_bucket" in metrics and 'segpost_detections_total{class_name="red"}' in metrics
        assert 'segpost_camera_info{camera="0",decoder="OpenCV (CPU)' in metrics and "admin:***@" in metrics
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        first.stop()                                   # camera 0's server goes away
        wait_until(lambda: any(r.get("event") == "disconnected" and r["camera"] == 0 for r in lines(out)), 30,
                   "camera 0's disconnection")
        seen = len(frames(1))
        wait_until(lambda: len(frames(1)) >= seen + 20, 30, "camera 1 going on alone")
        first.start()
        reconnected = wait_until(lambda: [r for r in lines(out) if r.get("event") == "reconnected"], 60,
                                 "camera 0's reconnection")
        assert reconnected[0]["camera"] == 0 and reconnected[0]["gap_seconds"] > 0
        after = len(frames(0))
        wait_until(lambda: len(frames(0)) >= after + 5, 30, "camera 0's frames after the reconnection")
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert 'segpost_reconnects_total{camera="0"} 1.0' in metrics and "s3cret" not in metrics

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr[-2000:]
        assert time.monotonic() - started < 10
        with open(out) as f:
            text = f.read()
        assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())   # no half line
        assert "stopped by signal" in stderr and "s3cret" not in stderr and "s3cret" not in text
        indices = [r["frame_index"] for r in frames(0)]
        assert indices == sorted(indices)
    finally:
        if process.poll() is None:
            process.kill()
        first.stop()
        second.stop()


@needs_ffmpeg
@needs_mosquitto
def test_mqtt_and_json_lines_get_the_same_records(tmp_path, scene_video):
    from test_sinks import Subscriber

    broker = Mosquitto(str(tmp_path)).start()
    subscriber = Subscriber(broker.port)
    try:
        time.sleep(0.3)
        out = str(tmp_path / "out.jsonl")
        code = main(["run", "--device", "cpu", "--config", write_config(str(tmp_path)), "--source", scene_video,
                     "--out", out, "--mqtt", f"mqtt://127.0.0.1:{broker.port}/segpost/{{camera}}", "--max-rounds", "30"])
        assert code == 0
        records = [r for r in lines(out) if "detections" in r]
        assert len(records) == 30
        assert subscriber.wait_for(30)
        published = [m for _, m in subscriber.messages if "detections" in m]
        assert published == records
    finally:
        subscriber.close()
        broker.stop()


@needs_ffmpeg
def test_sigterm_on_file_sources_exits_zero_and_flushes(tmp_path, scene_video):
    out = str(tmp_path / "out.jsonl")
    config = write_config(str(tmp_path), busy_ms=[20, 5])   # slow enough to be stopped mid-file
    process = segpost_run("--config", config, "--source", scene_video, "--source", scene_video, "--out", out)
    wait_until(lambda: len([r for r in lines(out) if "detections" in r]) >= 20, 60, "the first records")
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0 and time.monotonic() - started < 10, stderr[-2000:]
    records = lines(out)
    with open(out) as f:
        assert f.read().endswith("\n")
    for camera in (0, 1):
        indices = [r["frame_index"] for r in records if r.get("camera") == camera and "detections" in r]
        assert indices == list(range(len(indices))) and 10 <= len(indices) < 1000


def test_a_hung_engine_ends_the_process_with_a_message_not_a_hang(tmp_path):
    video = str(tmp_path / "v.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"FFV1"), 10, (320, 240))
    for frame in Scene([(240, 320)], num_classes=2, seed=1).render(0)[0] * 3:
        writer.write(frame)
    writer.release()
    config = write_config(str(tmp_path), busy_ms=[0, 3_600_000])   # the decoder never returns
    started = time.monotonic()
    process = segpost_run("--config", config, "--source", video, "--out", str(tmp_path / "o.jsonl"),
                          "--watchdog-seconds", "2")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr[-2000:]
    assert "watchdog" in stderr and "hung" in stderr and time.monotonic() - started < 30


def test_an_engine_failure_is_a_clear_error_and_a_nonzero_exit(tmp_path, monkeypatch, capsys):
    from segpost.synthetic import engines

    def broken(self, tensors):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engines.SyntheticDecoder, "compute", broken)
    video = str(tmp_path / "v.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"FFV1"), 10, (320, 240))
    for _ in range(5):
        writer.write(np.zeros((240, 320, 3), np.uint8))
    writer.release()
    out = str(tmp_path / "o.jsonl")
    # Every round fails: each is written off, and the third in a row ends the run.
    assert main(["run", "--device", "cpu", "--config", write_config(str(tmp_path)), "--source", video,
                 "--out", out, "--max-failed-rounds", "3"]) == 1
    err = capsys.readouterr().err
    assert "the pipeline failed in round 3" in err and "3 rounds failed in a row" in err
    assert "illegal memory access" in err
    with open(out) as f:
        records = [json.loads(line) for line in f]
    assert [(r["event"], r["frame_index"]) for r in records] == [("skipped", 0), ("skipped", 1), ("skipped", 2)]


def test_config_values_from_the_environment(tmp_path, monkeypatch, capsys):
    config = write_config(str(tmp_path), score_threshold="${SEGPOST_TEST_UNSET}")
    assert main(["run", "--device", "cpu", "--config", config, "--source", "x.mp4"]) == 2
    assert "SEGPOST_TEST_UNSET is not set" in capsys.readouterr().err


def test_bad_run_arguments(tmp_path, capsys):
    config = write_config(str(tmp_path))
    assert main(["run", "--device", "cpu", "--config", config, "--source", "x.mp4", "--decode", "gpu"]) == 2
    assert "--decode gpu needs --device cuda" in capsys.readouterr().err
    assert main(["run", "--device", "cpu", "--config", config, "--source", "x.mp4", "--out", "-",
                 "--rotate-mb", "1"]) == 2
    assert "stdout cannot be rotated" in capsys.readouterr().err
    assert main(["run", "--device", "cpu", "--config", config, "--source", "rtsp://u:hunter2@127.0.0.1:1/x",
                 "--mqtt", "mqtt:///nohost"]) == 2
    err = capsys.readouterr().err
    assert "mqtt://" in err and "hunter2" not in err
