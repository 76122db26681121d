"""`segpost serve --config ... --metrics-port ...` run as a command, the way users start it: a real
process with its own Ray instance answers HTTP and gRPC clients, its metrics port is scraped, and
SIGTERM stops it cleanly; a config that would listen beyond loopback without keys is refused."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from brokers import free_port, http_get

pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")

from segpost.serve.client import SegpostClient  # noqa: E402
from segpost.synthetic.scene import Scene  # noqa: E402

KEY = "command-key-" + "q" * 20


def command(config_path, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "segpost", "serve", "--config", str(config_path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_the_command_serves_exports_metrics_and_stops_on_sigterm(tmp_path):
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    metrics_port = free_port()
    (tmp_path / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [64, 96], "max_cameras": 2},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "api_keys": ["${SEGPOST_COMMAND_KEY}"], **ports}))
    process = command(tmp_path / "serve.json", "--metrics-port", str(metrics_port), env={"SEGPOST_COMMAND_KEY": KEY})
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("Ctrl-C or SIGTERM stops" in line for line in lines):
            assert process.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.5)
        banner = "".join(lines)
        assert f"HTTP POST http://127.0.0.1:{ports['http_port']}/segment (JSON)" in banner, banner[-3000:]
        assert f"gRPC 127.0.0.1:{ports['grpc_port']}" in banner and "1 API key(s)" in banner
        assert "decode auto chose cpu (OpenCV)" in banner
        client = SegpostClient(http=f"http://127.0.0.1:{ports['http_port']}/segment",
                               grpc=f"127.0.0.1:{ports['grpc_port']}", api_key=KEY)
        frame = Scene([(64, 96)], num_classes=2, seed=3).render(0)[0][0]
        for transport in ("http", "grpc"):
            answer = client.segment([frame], transport=transport)[0]
            assert (answer["height"], answer["width"]) == (64, 96) and answer["detections"]
        deadline, frames = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline and frames < 2:   # Ray exports the replica's metrics every few seconds
            status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            frames = sum(float(line.rpartition(" ")[2]) for line in body.splitlines()
                         if line.startswith("ray_segpost_serve_frames_total"))
            time.sleep(1)
        assert frames == 2, frames
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    output = "".join(lines)
    assert "segpost serve: stopped" in output and KEY not in output


def test_the_command_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    (tmp_path / "serve.json").write_text(json.dumps({"pipeline": {"backend": "synthetic", "classes": ["red"]},
                                                     "host": "0.0.0.0", "http_port": free_port()}))
    done = subprocess.run([sys.executable, "-m", "segpost", "serve", "--config", str(tmp_path / "serve.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "refusing to start: HTTP on 0.0.0.0" in done.stderr and "allow_unauthenticated" in done.stderr
