"""``segpost run --schedule on_change --metrics-port``: /metrics, scraped over HTTP while the run
goes on, says per camera the model and predicted frames (totals and per second), the share the
model skipped, and the staleness p50/p95 of the records written."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from brokers import free_port, http_get
from schedule_videos import still_and_moving

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")
pytest.importorskip("prometheus_client", reason="metrics need prometheus_client: pip install 'segpost[metrics]'")
FRAMES = 400



def value(body, name, **labels):
    """The sample `name{labels}` of a Prometheus text body (None: absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", body, re.M)
    return None if match is None else float(match.group(1))


def test_metrics_scrape_says_model_and_predicted_frames_skipped_share_and_staleness(tmp_path):
    still, moving = still_and_moving(tmp_path, FRAMES, period=40)
    # One engine slot for three cameras; 20 ms rounds keep the run going while it is scraped.
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], "max_cameras": 1,
              "busy_ms": [20, 0], "track": {"min_hits": 1},
              "schedule": {"mode": "on_change", "output_fps": 1e6, "max_interval": 60, "predict_limit": 60}}
    (tmp_path / "segpost.json").write_text(json.dumps(config))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "segpost", "run", "--device", "cpu", "--decode", "cpu",
                                "--config", str(tmp_path / "segpost.json"), "--out", str(tmp_path / "out.jsonl"),
                                "--source", still, "--source", still, "--source", moving, "--metrics-port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    body = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status, text = http_get(f"http://127.0.0.1:{port}/metrics")
            except OSError:   # not listening yet
                time.sleep(0.2)
                continue
            assert status == 200
            if (value(text, "segpost_schedule_predicted_frames_total", camera="0") or 0) >= 50 and \
                    (value(text, "segpost_schedule_model_frames_total", camera="2") or 0) >= 20:
                body = text
                break
            time.sleep(0.2)
    finally:
        process.kill()
        err = process.communicate(timeout=30)[1]
    assert body is not None, f"no scrape with 50 predicted frames of camera 0 and 20 model frames of camera 2: {err[-2000:]}"
    # The still cameras: seen once, then predicted; the moving one: the model on most of its frames.
    for camera in ("0", "1"):
        assert value(body, "segpost_schedule_model_frames_total", camera=camera) == 1.0, camera
        assert value(body, "segpost_schedule_skipped_share", camera=camera) > 0.9, camera
        assert value(body, "segpost_schedule_fps", camera=camera, kind="predicted") > \
            value(body, "segpost_schedule_fps", camera=camera, kind="model"), camera
    model, predicted = (value(body, f"segpost_schedule_{k}_frames_total", camera="2") for k in ("model", "predicted"))
    assert model > predicted and value(body, "segpost_schedule_skipped_share", camera="2") < 0.5
    assert value(body, "segpost_schedule_fps", camera="2", kind="model") > 0
    # Staleness: the still cameras' records are as old as the run; the p95 is above the p50.
    p50, p95 = (value(body, "segpost_schedule_staleness_seconds", quantile=q) for q in ("0.5", "0.95"))
    assert p50 is not None and p95 is not None and 0 <= p50 <= p95 and p95 > 0.1, (p50, p95)
