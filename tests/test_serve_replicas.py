"""segpost serve's replicas on a real local Ray instance: when the engine hangs, the replica
answers /healthz with 503, fails Ray Serve's health check and Serve replaces it (the request waiting
on the hung round gets an error instead of hanging); with `autoscaling`, load adds a replica and
its end removes it."""
import json
import threading
import time

import numpy as np
import pytest

from local_ray import start_local_ray
from brokers import free_port, http_get

ray = pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")

from segpost.serve.client import SegpostClient, SegpostError  # noqa: E402
from segpost.serve.app import load_serve_config, start_serve, stop_serve  # noqa: E402

ROUND_TIMEOUT_S = 2
FRAME = np.zeros((64, 64, 3), np.uint8)


@pytest.fixture(scope="module")
def ray_instance():
    start_local_ray(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost-replicas")
    yield
    ray.shutdown()


def serve_config(folder, busy_ms, **serve):
    (folder / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red"], "max_frame_size": [64, 64], "max_cameras": 1,
                     "busy_ms": busy_ms},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "batch_wait_ms": 0,
        "http_port": free_port(), **serve}))
    return load_serve_config(str(folder / "serve.json"))


def running_replicas():
    from ray import serve

    return serve.status().applications["segpost"].deployments["segmentation"].replica_states.get("RUNNING", 0)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"after {seconds} s: {what}")


def test_a_hung_engine_fails_its_request_and_serve_replaces_the_replica(ray_instance, tmp_path):
    config = serve_config(tmp_path, [0, 3_600_000], round_timeout_s=ROUND_TIMEOUT_S)   # the decoder never returns
    try:
        endpoints = start_serve(config)
        base = endpoints["http"].rsplit("/", 1)[0]
        status, body = http_get(base + "/stats")
        assert status == 200, body
        first_replica = json.loads(body)["replica"]

        failure, finished = [], []

        def segment():
            started = time.monotonic()
            try:
                SegpostClient(http=endpoints["http"], timeout=120).segment([FRAME])
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


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(ray_instance, tmp_path):
    config = serve_config(tmp_path, [150, 0], autoscaling={
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "metrics_interval_s": 1,
        "look_back_period_s": 2, "upscale_delay_s": 1, "downscale_delay_s": 3})
    try:
        endpoints = start_serve(config)
        assert running_replicas() == 1
        stop, answers, errors = threading.Event(), [], []

        def client():
            segpost = SegpostClient(http=endpoints["http"], timeout=60)
            while not stop.is_set():
                try:
                    answers.extend(segpost.segment([FRAME]))
                except SegpostError as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(6)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: running_replicas() == 2, 90, "no second replica under 6 clients' load")
            served_by_one = len(answers)
            wait_for(lambda: len(answers) >= served_by_one + 10, 30, "no answers after the second replica came")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert not errors, errors[:3]
        assert all((a["height"], a["width"]) == (64, 64) and "detections" in a for a in answers)
        wait_for(lambda: running_replicas() == 1, 90, "the second replica stayed after the load ended")
        print(f"{len(answers)} answers; a second replica under load, back to one after it")
    finally:
        stop_serve()
