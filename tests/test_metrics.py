"""The metrics registry and its HTTP endpoint (/metrics, /healthz), scraped for real."""
import sys

import pytest

from brokers import http_get

pytest.importorskip("prometheus_client")

from segpost.service.metrics import Metrics, MetricsServer  # noqa: E402


def test_scrape_health_and_counters():
    now = [1000.0]
    metrics = Metrics(stale_seconds=5, clock=lambda: now[0])
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert http_get(base + "/healthz")[0] == 200          # starting up: not stale yet
        now[0] += 6
        status, body = http_get(base + "/healthz")
        assert status == 503 and "no round has finished" in body
        for _ in range(3):
            now[0] += 0.5
            metrics.observe_round(0.12, {"preprocess": 1.0, "decoder": 80.0}, ["dock", "gate"], {"person": 2})
        metrics.observe_camera("dock", {"dropped": 4, "reconnects": 1, "errors": 2})
        metrics.observe_camera("dock", {"dropped": 6, "reconnects": 1, "errors": 2})   # totals, not increments
        metrics.observe_memory({"engines": 123, "device_used": 456})
        metrics.describe_camera("dock", "rtsp://admin:***@cam/1", "NVDEC (GPU) h264")
        assert http_get(base + "/healthz") == (200, "ok\n")
        status, body = http_get(base + "/metrics")
        assert status == 200
        for line in ('segpost_frames_total{camera="dock"} 3.0', 'segpost_dropped_frames_total{camera="dock"} 6.0',
                     'segpost_reconnects_total{camera="dock"} 1.0', 'segpost_detections_total{class_name="person"} 6.0',
                     'segpost_camera_fps{camera="gate"} 2.0', 'segpost_memory_bytes{owner="engines"} 123.0',
                     'segpost_stage_seconds_count{stage="decoder"} 3.0', "segpost_round_seconds_count 3.0",
                     'segpost_camera_info{camera="dock",decoder="NVDEC (GPU) h264",source="rtsp://admin:***@cam/1"} 1.0'):
            assert line in body, line
        now[0] += 10
        status, body = http_get(base + "/healthz")
        assert status == 503 and "the last round finished 10.0 s ago" in body
        assert http_get(base + "/")[0] == 404
    finally:
        server.close()


def test_missing_prometheus_client_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ValueError, match=r"pip install segpost\[metrics\]"):
        Metrics()


def test_port_in_use_is_a_clear_error():
    metrics = Metrics()
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    try:
        with pytest.raises(ValueError, match="cannot listen"):
            MetricsServer(metrics, server.port, host="127.0.0.1")
    finally:
        server.close()
