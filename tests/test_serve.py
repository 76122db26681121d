"""segpost serve on a real local Ray instance: 16 concurrent HTTP and gRPC clients get the
in-process pipeline's answers, frames of different clients sharing rounds; bad input gets 400 /
INVALID_ARGUMENT and the server keeps serving; without one of the API keys, sent with the Bearer
scheme, 401 / UNAUTHENTICATED. The pipeline's config asks for tracking, which serve ignores."""
import base64
import json
import os
import threading
import time

import numpy as np
import pytest

from local_ray import start_local_ray
from brokers import free_port, http_get
from segpost import decode_coco_rle
from segpost.cli import main
from segpost.config import load_config
from segpost.pipeline import MultiCameraPipeline
from segpost.postprocess import OutputKind
from segpost.synthetic.scene import Scene

pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
grpc = pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")
cv2 = pytest.importorskip("cv2")

from segpost.serve.client import SegpostClient, SegpostError  # noqa: E402
from segpost.serve import api  # noqa: E402
from segpost.serve.app import load_serve_config, start_serve, stop_serve  # noqa: E402

MAX_BATCH = 4
KEY = "test-key-" + "k" * 24
KEYS = (KEY, "second-key-" + "2" * 24, "file-key-" + "3" * 24)   # the third read from a file, newline and all


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ray

    folder = tmp_path_factory.mktemp("serve")
    # "track": serve's requests are independent frames, so it must not track (a tracker would hold
    # back every new object's first detections, and mix clients' frames into tracks).
    (folder / "segpost.json").write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green", "blue"],
                                                     "max_frame_size": [240, 320], "max_cameras": MAX_BATCH,
                                                     "track": True}))
    os.environ["SEGPOST_TEST_SERVE_KEY"], os.environ["SEGPOST_TEST_SERVE_KEY2"] = KEYS[:2]
    (folder / "third.key").write_text(KEYS[2] + "\n")   # as `echo KEY > third.key` writes it
    os.environ["SEGPOST_TEST_SERVE_FILE_KEY"] = (folder / "third.key").read_text()
    (folder / "serve.json").write_text(json.dumps({
        "pipeline": "segpost.json", "gpus_per_replica": 0, "cpus_per_replica": 0.5, "batch_wait_ms": 50,
        "http_port": free_port(), "grpc_port": free_port(),
        "api_keys": ["${SEGPOST_TEST_SERVE_KEY}", "${SEGPOST_TEST_SERVE_KEY2}", "${SEGPOST_TEST_SERVE_FILE_KEY}"]}))
    metrics_port = free_port()
    start_local_ray(num_cpus=8, include_dashboard=False, log_to_driver=False, namespace="segpost",
             _metrics_export_port=metrics_port)
    endpoints = start_serve(load_serve_config(str(folder / "serve.json")))
    assert endpoints["decode"] == "decode auto chose cpu (OpenCV): the pipeline runs on the CPU"
    endpoints["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    ve, dec, config = load_config(str(folder / "segpost.json"), device="cpu")
    assert config.track is not None   # the file asks for tracking; the reference, like serve, does not track
    reference = MultiCameraPipeline(ve, dec, config.__class__(**{**config.__dict__, "output": OutputKind.RLE,
                                                                 "track": None}))
    yield endpoints, reference
    stop_serve()
    ray.shutdown()


def frames_for(client_index, count):
    scene = Scene([(240, 320)], num_classes=3, seed=100 + client_index)
    return [scene.render(r)[0][0] for r in range(count)]


def expected(reference, frame, classes=None):
    camera = reference.process([frame]).cameras[0]
    detections = []
    for name, fr in camera.by_class.items():
        if classes and name not in classes:
            continue
        for k in range(len(fr)):
            detections.append((name, round(float(fr.scores[k]), 5), [round(float(v), 2) for v in fr.boxes[k]],
                               fr.masks[k]["counts"].decode()))
    return detections


def summary(frame):
    return [(d["class"], round(d["score"], 5), [round(v, 2) for v in d["box"]], d["mask"]["counts"])
            for d in frame["detections"]]


def connect(endpoints, **kwargs):
    return SegpostClient(http=endpoints["http"], grpc=endpoints.get("grpc"), api_key=KEY, **kwargs)


def get(endpoints, path, key=KEY):
    """(status, body) of a GET on the server, with the key."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(endpoints["http"].replace("/segment", path),
                                     headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_sixteen_concurrent_clients_get_the_pipelines_answers_in_shared_rounds(server):
    endpoints, reference = server
    results, errors = {}, []
    start = threading.Barrier(16)

    def client_thread(index):
        transport = "http" if index % 2 else "grpc"
        client = connect(endpoints)
        try:
            frames = frames_for(index, 3)
            answers = []
            start.wait(timeout=60)
            for batch in ([frames[0]], frames[1:3], [cv2.imencode(".png", frames[0])[1].tobytes()]):
                answers.extend(client.segment(batch, transport=transport))
            results[index] = (frames, answers)
        except Exception as exc:  # reported below with the client's index
            errors.append((index, repr(exc)))
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 16
    clients_of_round, sizes = {}, {}
    for index, (frames, answers) in results.items():
        for frame, answer in zip(frames + [frames[0]], answers):
            assert (answer["height"], answer["width"]) == (240, 320)
            assert summary(answer) == expected(reference, frame), f"client {index}"
            key = (answer["replica"], answer["round"])
            clients_of_round.setdefault(key, set()).add(index)
            sizes[key] = answer["round_frames"]
    # Each answer names its round: a round holds frames of several clients.
    shared = [clients for clients in clients_of_round.values() if len(clients) > 1]
    assert shared, clients_of_round
    assert max(sizes.values()) <= MAX_BATCH and sum(len(c) for c in shared) >= 8, clients_of_round
    status, stats = get(endpoints, "/stats")
    assert status == 200 and any(int(size) > 1 for size in json.loads(stats)["batch_sizes"])


def test_a_request_larger_than_the_batch_is_chunked(server):
    endpoints, reference = server
    frames = frames_for(50, 10)
    client = connect(endpoints)
    answers = client.segment(frames, classes=["green"])
    assert len(answers) == 10 and all(a["round_frames"] <= MAX_BATCH for a in answers)
    for frame, answer in zip(frames, answers):
        assert summary(answer) == expected(reference, frame, ["green"])
        assert {d["class"] for d in answer["detections"]} == {"green"}


def test_mask_encodings(server):
    import base64

    endpoints, reference = server
    frame = frames_for(60, 1)[0]
    client = connect(endpoints)
    rle = client.segment([frame])[0]["detections"]
    assert len(rle) >= 3 and all(decode_coco_rle(d["mask"]).any() for d in rle)
    for transport in ("http", "grpc"):
        packed = client.segment([frame], masks="packed", transport=transport)[0]["detections"]
        none = client.segment([frame], masks="none", transport=transport)[0]["detections"]
        assert len(packed) == len(none) == len(rle)
        assert all(d["mask"] is None for d in none)
        np.testing.assert_allclose([d["box"] for d in none], [d["box"] for d in rle], atol=1e-3)   # gRPC: float32
        for a, b in zip(rle, packed):
            bits = np.unpackbits(np.frombuffer(base64.b64decode(b["mask"]["packed"]), np.uint8), count=240 * 320)
            np.testing.assert_array_equal(bits.reshape(240, 320).astype(bool), decode_coco_rle(a["mask"]))


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_bad_input_is_a_client_error_and_the_server_keeps_serving(server, transport):
    endpoints, _ = server
    client = connect(endpoints)
    good = frames_for(70, 1)[0]
    png = cv2.imencode(".png", good)[1].tobytes()
    code = 400 if transport == "http" else grpc.StatusCode.INVALID_ARGUMENT
    for frames, kwargs, message in (
            ([b"not an image"], {}, "not a JPEG or PNG image"),
            ([png[:-20]], {}, r"frames\[0\]: PNG: truncated"),
            ([good, cv2.imencode(".jpg", good)[1].tobytes()[:-2]], {}, r"frames\[1\]: JPEG: truncated"),
            ([np.zeros((10, 10, 2), np.uint8)], {}, r"shape.*\[H, W, 3\]"),
            ([np.zeros((480, 640, 3), np.uint8)], {}, "larger than this server's max_frame_size"),
            ([cv2.imencode(".jpg", np.zeros((480, 64, 3), np.uint8))[1].tobytes()], {},
             r"the JPEG declares 64x480 pixels \(height 480\), larger than this server's max_frame_size"),
            ([good] * 33, {}, r"more than 32 frames \(this server's max_frames_per_request\)"),
            ([good], {"classes": ["unicorn"]}, r"unknown class\(es\) \['unicorn'\]"),
            ([good], {"masks": "png"}, "masks must be one of"),
            ([], {}, "no frames")):
        with pytest.raises(SegpostError, match=message) as error:
            client.segment(frames, transport=transport, **kwargs)
        assert error.value.status == code
    assert len(client.segment([good], transport=transport)[0]["detections"]) > 0
    assert http_get(endpoints["http"].replace("/segment", "/healthz"))[0] == 200


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_without_the_key_nothing_is_served(server, transport):
    endpoints, _ = server
    good = frames_for(71, 1)[0]
    code = 401 if transport == "http" else grpc.StatusCode.UNAUTHENTICATED
    for key in (None, "wrong-" + KEY, KEY[:-1], KEY + "x"):
        client = SegpostClient(http=endpoints["http"], grpc=endpoints["grpc"], api_key=key)
        with pytest.raises(SegpostError, match="a valid API key is required") as error:
            client.segment([good], transport=transport)
        assert error.value.status == code
        assert KEY not in str(error.value) and "***" in repr(SegpostClient(http="http://x", api_key=KEY))
    assert get(endpoints, "/stats", key=None)[0] == 401 and get(endpoints, "/stats", key="x" * 40)[0] == 401
    assert get(endpoints, "/healthz", key=None)[0] == 200   # open for load balancers; it tells nothing else


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_each_key_is_accepted_with_the_bearer_scheme_only(server, transport):
    """Every configured key is compared (not only the first), the one read from a file included;
    the right key under another scheme, or none, is refused."""
    import urllib.error
    import urllib.request

    endpoints, reference = server
    frame = frames_for(72, 1)[0]
    png = cv2.imencode(".png", frame)[1].tobytes()
    body = json.dumps({"frames": [{"image": base64.b64encode(png).decode()}]}).encode()
    wanted = expected(reference, frame)

    def send(authorization):
        """(status, frames) of one request with this Authorization value."""
        if transport == "http":
            headers = {"Authorization": authorization, "Content-Type": "application/json"}
            request = urllib.request.Request(endpoints["http"], data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())["frames"]
            except urllib.error.HTTPError as error:
                return error.code, None
        request = api.SegmentRequest()
        request.frames.add(image=png)
        with grpc.insecure_channel(endpoints["grpc"]) as channel:
            call = channel.unary_unary(api.FULL_METHOD, request_serializer=api.SegmentRequest.SerializeToString,
                                       response_deserializer=api.SegmentResponse.FromString)
            try:
                answer = call(request, timeout=60, metadata=(("authorization", authorization),))
                return 200, api.answer_from_proto(answer)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
                return 401, None

    for authorization in [f"Bearer {key}" for key in KEYS] + [f"bearer {KEYS[1]}"]:   # schemes ignore case
        status, frames = send(authorization)
        assert status == 200, authorization[:20]
        assert [(d["class"], d["mask"]["counts"]) for d in frames[0]["detections"]] == \
               [(name, counts) for name, _, _, counts in wanted]
    for authorization in (f"Basic {KEY}", KEYS[1], f"Token {KEYS[2]}", f"Bearer{KEY}", f"Bearer {KEY[:-1]}",
                          f"Bearer {KEYS[2]}x", "Bearer " + "x" * 40):
        assert send(authorization)[0] == 401, authorization[:16]


def test_serve_does_not_track_though_its_pipeline_config_does(server):
    """The pipeline file says "track": true; serve's requests are independent frames from any
    client, so its replicas build their pipeline without a tracker. Tracking would change no answer
    (it adds ids, which answers do not carry) but would spend each round's time on tracks mixing
    clients' frames: the replica's /stats says whether its pipeline tracks."""
    endpoints, reference = server
    frame = frames_for(73, 1)[0]
    client = connect(endpoints)
    for _ in range(3):
        answer = client.segment([frame])[0]
        assert summary(answer) == expected(reference, frame) and all("track_id" not in d for d in answer["detections"])
    status, stats = get(endpoints, "/stats")
    assert status == 200 and json.loads(stats)["tracking"] is False


def test_http_requests_that_are_not_segment_requests(server):
    import urllib.request

    endpoints, _ = server
    request = urllib.request.Request(endpoints["http"], data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with pytest.raises(Exception) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 400 and "not JSON" in error.value.read().decode()
    assert get(endpoints, "/nothing")[0] == 404


def test_the_client_example_prints_each_detection(server, tmp_path):
    import subprocess
    import sys

    endpoints, reference = server
    frame = frames_for(80, 1)[0]
    cv2.imwrite(str(tmp_path / "shot.png"), frame)
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "serve_client.py")
    env = {**os.environ, "SEGPOST_API_KEY": KEY}
    done = subprocess.run([sys.executable, example, "--grpc", endpoints["grpc"], "--class", "red", "--class", "blue",
                           "--save-masks", str(tmp_path / "masks"), str(tmp_path / "shot.png")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    wanted = [d for d in expected(reference, frame, ["red", "blue"])]
    lines = done.stdout.splitlines()
    assert lines[0].endswith(f"shot.png: 320x240, {len(wanted)} detections") and len(lines) == 1 + len(wanted)
    for line, (name, score, box, counts) in zip(lines[1:], wanted):
        assert line.split()[0] == name and f"score {score:.3f}" in line
    assert len(os.listdir(tmp_path / "masks")) == len(wanted) > 0
    refused = subprocess.run([sys.executable, example, "--http", endpoints["http"], "--class", "unicorn",
                              str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1 and "unknown class(es) ['unicorn']" in refused.stderr


def scraped(url, name):
    """{labels: value} of one metric in a Prometheus scrape."""
    status, body = http_get(url)
    assert status == 200
    samples = {}
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            samples[labels] = float(value)
    return samples


def test_metrics_count_what_was_served(server):
    """Runs after the tests above: Ray exports the replicas' metrics every few seconds."""
    endpoints, _ = server
    sizes = json.loads(get(endpoints, "/stats")[1])["batch_sizes"]
    served = sum(int(size) * count for size, count in sizes.items())
    deadline, frames = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        frames = sum(scraped(endpoints["metrics"], "ray_segpost_serve_frames_total").values())
        if frames == served:
            break
        time.sleep(2)
    assert frames == served > 16 * 4
    outcomes = scraped(endpoints["metrics"], "ray_segpost_serve_requests_total")
    assert sum(v for k, v in outcomes.items() if 'outcome="bad_request"' in k) >= 20   # the bad-input test's
    assert sum(v for k, v in outcomes.items() if 'outcome="unauthorized"' in k) >= 8
    assert sum(v for k, v in outcomes.items() if 'outcome="ok"' in k) >= 16 * 3
    rounds = scraped(endpoints["metrics"], "ray_segpost_serve_round_frames_count")
    assert sum(rounds.values()) == sum(sizes.values())
    classes = scraped(endpoints["metrics"], "ray_segpost_serve_detections_total")
    assert {c for c in ("red", "green", "blue") if any(f'class="{c}"' in k for k in classes)} == {"red", "green", "blue"}
    assert scraped(endpoints["metrics"], "ray_serve_num_http_requests_total")   # Ray Serve's own, same port


def test_proto_and_client_arguments(capsys):
    assert main(["serve", "--print-proto"]) == 0
    text = capsys.readouterr().out
    assert "service Segmentation" in text and "rpc Segment (SegmentRequest) returns (SegmentResponse);" in text
    assert "repeated Detection detections = 3;" in text
    with pytest.raises(ValueError, match="give the server's"):
        SegpostClient()
    request = api.SegmentRequest(classes=["a"], masks="rle")
    request.frames.add(raw=b"\x00" * 12, shape=[2, 2, 3])
    assert api.SegmentRequest.FromString(request.SerializeToString()) == request
