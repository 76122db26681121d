"""segpost serve when the engine hangs, on a real local Ray instance: the replica answers
/healthz with 503, fails Ray Serve's health check, and Serve replaces it; the request waiting on
the hung round gets an error instead of hanging."""
import json
import threading
import time

import numpy as np
import pytest

from brokers import free_port, http_get

ray = pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")

from segpost.client import SegpostClient, SegpostError  # noqa: E402
from segpost.fleet.serve import load_serve_config, start_serve, stop_serve  # noqa: E402

ROUND_TIMEOUT_S = 2


def test_a_hung_engine_fails_its_request_and_serve_replaces_the_replica(tmp_path):
    (tmp_path / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red"], "max_frame_size": [64, 64], "max_cameras": 1,
                     "busy_ms": [0, 3_600_000]},   # the decoder never returns
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "batch_wait_ms": 0, "round_timeout_s": ROUND_TIMEOUT_S,
        "http_port": free_port(), "grpc_port": free_port()}))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost-hang")
    try:
        endpoints = start_serve(load_serve_config(str(tmp_path / "serve.json")))
        base = endpoints["http"].rsplit("/", 1)[0]
        status, body = http_get(base + "/stats")
        assert status == 200, body
        first_replica = json.loads(body)["replica"]

        failure, finished = [], []

        def segment():
            started = time.monotonic()
            try:
                SegpostClient(http=endpoints["http"], timeout=120).segment([np.zeros((64, 64, 3), np.uint8)])
            except SegpostError as exc:
                failure.append(exc)
            finished.append(time.monotonic() - started)

        request = threading.Thread(target=segment, daemon=True)
        request.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:   # the replica says it is hung once the round outlives the timeout
            status, body = http_get(base + "/healthz")
            if status == 503:
                break
            time.sleep(0.2)
        assert status == 503 and "round_timeout_s 2" in body and "the engine is hung" in body, (status, body)

        request.join(timeout=90)
        assert finished, "the request on the hung replica never returned"
        assert failure, "the request on the hung replica did not fail"
        assert finished[0] < 60, finished
        print(f"the request on the hung replica failed after {finished[0]:.1f} s: {failure[0]}")

        deadline, replica = time.monotonic() + 60, first_replica
        while time.monotonic() < deadline and replica == first_replica:
            try:
                status, body = http_get(base + "/stats")
                replica = json.loads(body)["replica"] if status == 200 else replica
            except OSError:
                pass
            time.sleep(0.5)
        assert replica != first_replica, "Serve did not replace the hung replica"
        print(f"replica {first_replica} replaced by {replica}")
        status, body = http_get(base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        stop_serve()
        ray.shutdown()
