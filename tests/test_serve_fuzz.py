"""segpost serve under hostile input, on a real local Ray instance, both transports: generated
bodies (random JSON, wrong types, huge counts, truncated and corrupt JPEG/PNG, decompression bombs,
oversized declared dimensions, missing and wrong keys) are answered 4xx / INVALID_ARGUMENT (or
401 / UNAUTHENTICATED) with a message, never a 5xx or a hang; bodies are limited before they are
read; the replica's peak memory stays bounded and a good request afterwards is answered correctly."""
import base64
import json
import os
import socket
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_ray import start_local_ray
from brokers import free_port, http_get

pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
grpc = pytest.importorskip("grpc", reason="gRPC needs grpcio: pip install 'segpost[fleet]' (.ci/run does)")
cv2 = pytest.importorskip("cv2", reason="OpenCV encodes the test images: pip install 'segpost[test]' (.ci/run does)")

from segpost.serve import api  # noqa: E402
from segpost.serve.client import SegpostClient  # noqa: E402
from segpost.serve.app import load_serve_config, start_serve, stop_serve  # noqa: E402
from segpost.synthetic.scene import Scene  # noqa: E402

KEY = "fuzz-key-" + "f" * 24
MAX_BODY = 2 << 20
FUZZ = settings(max_examples=int(os.environ.get("SEGPOST_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import ray

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red", "green", "blue"], "max_frame_size": [240, 320],
                     "max_cameras": 4},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "batch_wait_ms": 5, "http_port": free_port(),
        "grpc_port": free_port(), "api_keys": [KEY], "max_body_bytes": MAX_BODY, "max_frames_per_request": 8,
        "body_timeout_s": 3}))
    start_local_ray(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost-fuzz")
    endpoints = start_serve(load_serve_config(str(folder / "serve.json")))
    client = SegpostClient(http=endpoints["http"], grpc=endpoints["grpc"], api_key=KEY)
    good = Scene([(240, 320)], num_classes=3, seed=5).render(0)[0][0]
    baseline = client.segment([good])[0]
    stats = replica_stats(endpoints)
    yield endpoints, client, good, baseline, stats
    stop_serve()
    ray.shutdown()


def replica_stats(endpoints):
    host, port = endpoints["http"].split("//")[1].split("/")[0].split(":")
    status, body = raw_http(int(port), f"GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
    assert status == 200, body
    return json.loads(body)


def raw_http(port, request: bytes, timeout=30.0, body_after=b""):
    """(status, body) of a hand-written HTTP/1.1 request; `body_after` is sent once the headers are."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if body_after:
            sock.sendall(body_after)
        response = b""
        while b"\r\n\r\n" not in response or len(response) < _expected_length(response):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(errors="replace")


def _expected_length(response: bytes) -> int:
    head, _, _ = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 62


def port_of(endpoints):
    return int(endpoints["http"].split("//")[1].split("/")[0].split(":")[1])


def post(port, body: bytes, key=KEY, extra=""):
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return raw_http(port, f"POST /segment HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)


def assert_refused(status, body, statuses=(400,)):
    assert status in statuses, (status, body[:300])
    assert json.loads(body)["error"], body


def png_declaring(width, height, payload=1 << 20):
    """A ~1 MB PNG that declares width x height (the issue's 30000 x 30000 bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))

    idat = zlib.compress(os.urandom(payload), 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def image_request(*images, **extra):
    return json.dumps({"frames": [{"image": base64.b64encode(i).decode()} for i in images], **extra}).encode()


def test_bodies_are_limited_before_they_are_read(server):
    endpoints, *_ = server
    port = port_of(endpoints)
    head = f"POST /segment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
    # Declared too large: refused from the headers alone (no body is ever sent).
    status, body = raw_http(port, f"{head}Content-Length: {1 << 40}\r\n\r\n".encode(), timeout=10)
    assert status == 413 and "max_body_bytes" in body
    # Without a key, nothing else is looked at.
    status, body = raw_http(port, f"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 40}\r\n\r\n".encode())
    assert status == 401 and "API key" in body
    # No Content-Length (chunked): refused, so Serve's server always bounds the body by the declared length.
    status, body = raw_http(port, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), body_after=b"5\r\nhello\r\n")
    assert status == 411
    # A body that never arrives in full: answered once body_timeout_s (3 s) has passed, not a hang.
    started = time.monotonic()
    status, body = raw_http(port, f"{head}Content-Length: 1000\r\n\r\n".encode(), body_after=b"{" * 10)
    assert status == 408 and "body_timeout_s" in body and time.monotonic() - started < 20
    status, body = raw_http(port, f"{head}Content-Length: abc\r\n\r\n".encode())
    assert status in (400, 413), body   # Serve's server may refuse the header itself


def test_images_declaring_30000_by_30000_are_refused_in_milliseconds(server):
    """The issue's case: four ~1 MB PNGs declaring 30000 x 30000, sent at once, were each answered
    after 35 s, 2.7 GB decoded apiece. Now their headers refuse them: faster than a normal
    request's round, and the replica's peak memory does not move."""
    import concurrent.futures

    endpoints, client, good, _, stats = server
    port = port_of(endpoints)
    bomb = image_request(png_declaring(30000, 30000))
    normal = image_request(cv2.imencode(".png", good)[1].tobytes())

    def timed(body):
        started = time.perf_counter()
        status, text = post(port, body)
        return status, text, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bombs = list(pool.map(timed, [bomb] * 4))
    normals = [timed(normal) for _ in range(3)]
    for status, text, _ in bombs:
        assert_refused(status, text)
        assert "declares 30000x30000 pixels" in text
    assert all(status == 200 for status, _, _ in normals)
    slowest_bomb, typical = max(b[2] for b in bombs), float(np.median([n[2] for n in normals]))
    print(f"4 bombs at once: slowest answered in {slowest_bomb * 1e3:.0f} ms; a normal request {typical * 1e3:.0f} ms")
    assert slowest_bomb < max(2 * typical, 0.5)
    assert replica_stats(endpoints)["peak_rss_bytes"] < stats["peak_rss_bytes"] + (200 << 20)


def test_value_counts_and_message_sizes_are_refused_before_parsing(server):
    """Each message is refused by its count or size although it is also unparseable: the answer
    names the count or the size, so the check ran before the parser did (the parser would have
    said "not JSON" / "not a segpost.v1.SegmentRequest")."""
    endpoints, *_ = server
    # JSON: thousands of values (8 frames need a few dozen), and not JSON at all (unclosed, a trailing comma).
    status, text = post(port_of(endpoints), b'{"frames": [' + b"0," * 5000)
    assert_refused(status, text)
    assert "JSON values, far more than 8 frames need" in text, text
    with grpc.insecure_channel(endpoints["grpc"], options=[("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary(api.FULL_METHOD)   # raw bytes both ways

        def refusal(message):
            with pytest.raises(grpc.RpcError) as error:
                call(message, timeout=60, metadata=(("authorization", f"Bearer {KEY}"),))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return error.value.details()

        # Over max_body_bytes: 9 frames (more than 8) and a broken end (wire type 7), refused for its size.
        image = b"\x0a" + _varint(MAX_BODY // 8) + b"x" * (MAX_BODY // 8)   # Frame.image
        big = (b"\x0a" + _varint(len(image)) + image) * 9 + b"\x0f"
        assert len(big) > MAX_BODY
        assert f"the message is {len(big)} bytes; this server takes at most {MAX_BODY} (max_body_bytes)" in refusal(big)
        # Under the size: its frames are counted on the wire, the 9th refused before the broken end is reached.
        assert "more than 8 frames" in refusal(b"\x0a\x00" * 9 + b"\x0f")
        assert "not a segpost.v1.SegmentRequest" in refusal(b"\x0a\x00" * 8 + b"\x0f")   # what parsing it says


def _varint(value):
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


# -- generated requests --------------------------------------------------------------------------

SMALL = Scene([(48, 64)], num_classes=3, seed=9).render(0)[0][0]
GOOD_IMAGES = [cv2.imencode(".jpg", SMALL)[1].tobytes(), cv2.imencode(".png", SMALL)[1].tobytes()]
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
                           max_leaves=30)


@st.composite
def broken_images(draw):
    data = bytearray(draw(st.sampled_from(GOOD_IMAGES)))
    kind = draw(st.sampled_from(["flip", "truncate", "bomb", "huge", "garbage"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "bomb":
        data = bytearray(png_declaring(draw(st.integers(1, 60000)), draw(st.integers(1, 60000)), payload=4096))
    elif kind == "huge":   # a JPEG whose start-of-frame declares another size
        sof = data.find(b"\xff\xc0")
        if sof > 0:
            data[sof + 5:sof + 9] = struct.pack(">HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    else:
        data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


@st.composite
def http_bodies(draw):
    kind = draw(st.sampled_from(["json", "request", "images", "count", "raw", "bytes"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "count":   # huge counts: many frames, or many tiny values
        n = draw(st.integers(9, 200_000))
        return json.dumps({"frames": [{}] * n if draw(st.booleans()) else [0] * n}).encode()
    if kind == "raw":
        shape = draw(st.lists(st.one_of(st.integers(-5, 10 ** 12), st.floats(), st.text(max_size=3)), max_size=4))
        return json.dumps({"frames": [{"raw": base64.b64encode(b"\x00" * draw(st.integers(0, 600))).decode(),
                                       "shape": shape}]}).encode()
    if kind == "images":
        images = draw(st.lists(broken_images(), min_size=1, max_size=3))
        return image_request(*images, classes=draw(st.lists(st.sampled_from(["red", "unicorn", ""]), max_size=2)))
    frame = draw(st.dictionaries(st.sampled_from(["image", "raw", "shape", "x"]), json_values, max_size=3))
    return json.dumps({draw(st.sampled_from(["frames", "frame", "classes"])): [frame],
                       **draw(st.dictionaries(st.sampled_from(["classes", "masks", "extra"]), json_values, max_size=2))}).encode()


# -- what a 200 / OK must be: the answer to the request that was sent ------------------------------
# A server that answered refused requests with an empty 200 ({"frames": []}) passed when any 200
# was taken; every accepted request is now checked against what it asked for.

CLASSES = {"red", "green", "blue"}
MAX_FRAME = (240, 320)


def frame_size(image=None, raw=None, shape=None):
    """(height, width) that a frame must be answered with; AssertionError where no server may
    accept it (OpenCV, which decodes the server's images, cannot; raw pixels that do not fit)."""
    if image is not None:
        frame = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert frame is not None, "accepted an image that does not decode"
        size = frame.shape[:2]
    else:
        assert (isinstance(shape, list) and len(shape) == 3 and shape[2] == 3 and min(shape) >= 1
                and all(type(v) is int for v in shape) and len(raw) == shape[0] * shape[1] * 3), \
            f"accepted raw pixels of shape {str(shape)[:60]} in {len(raw)} bytes"
        size = tuple(shape[:2])
    assert size[0] <= MAX_FRAME[0] and size[1] <= MAX_FRAME[1], f"accepted a {size} frame"
    return tuple(size)


def assert_answers(frames, classes, masks, answers):
    """`answers` (the JSON form) answer `frames` ({"image"} / {"raw", "shape"}) with `classes`, `masks`."""
    assert 1 <= len(frames) <= 8, f"accepted a request of {len(frames)} frames"
    assert set(classes) <= CLASSES, f"accepted unknown classes {classes}"
    assert masks in api.MASK_ENCODINGS, f"accepted masks {masks!r}"
    assert len(answers) == len(frames), f"{len(answers)} answers to {len(frames)} frames"
    for frame, answer in zip(frames, answers):
        height, width = frame_size(**frame)
        assert (answer["height"], answer["width"]) == (height, width)
        for detection in answer["detections"]:
            assert detection["class"] in (set(classes) or CLASSES)
            mask = detection["mask"]
            if masks == "none":
                assert mask is None
            else:
                assert list(mask["size"]) == [height, width] and (("counts" in mask) == (masks == "rle"))


def assert_answers_http_request(body, answer):
    request = json.loads(body)   # a body that is not JSON must not be answered
    assert isinstance(request, dict) and set(request) <= {"frames", "classes", "masks"}, str(request)[:200]
    frames = []
    for frame in request["frames"]:
        assert isinstance(frame, dict) and len(frame.keys() & {"image", "raw"}) == 1, str(frame)[:200]
        data = base64.b64decode(frame.get("image", frame.get("raw")), validate=True)
        frames.append({"image": data} if "image" in frame else {"raw": data, "shape": frame.get("shape")})
    assert_answers(frames, request.get("classes", []), request.get("masks", "rle"), answer["frames"])


def assert_answers_grpc_request(message, response):
    request = api.SegmentRequest.FromString(message)   # a message that does not parse must not be answered
    frames = [{"image": f.image} if f.image else {"raw": f.raw, "shape": list(f.shape)} for f in request.frames]
    assert_answers(frames, list(request.classes), request.masks or "rle", api.answer_from_proto(response))


@FUZZ
@given(body=http_bodies(), key=st.sampled_from([KEY, KEY, KEY, None, "wrong-" + KEY]))
def test_fuzzed_http_requests_get_4xx_with_a_message(server, body, key):
    endpoints, *_ = server
    status, text = post(port_of(endpoints), body, key=key)
    if key != KEY:
        assert status == 401 and json.loads(text)["error"], (status, text[:200])
    elif status != 200:
        assert_refused(status, text, (400, 413))
    else:   # a flipped byte may leave an image that decodes: then the answer must be the request's
        assert_answers_http_request(body, json.loads(text))


@st.composite
def grpc_messages(draw):
    kind = draw(st.sampled_from(["bytes", "request", "count"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    request = api.SegmentRequest(classes=draw(st.lists(st.sampled_from(["red", "unicorn"]), max_size=2)),
                                 masks=draw(st.sampled_from(["rle", "packed", "none", "png"])))
    if kind == "count":
        for _ in range(draw(st.integers(9, 20_000))):
            request.frames.add()
        return request.SerializeToString()
    for image in draw(st.lists(broken_images(), min_size=1, max_size=3)):
        request.frames.add(image=image)
    if draw(st.booleans()):
        request.frames.add(raw=b"\x01" * draw(st.integers(0, 300)),
                           shape=draw(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=5)))
    return request.SerializeToString()


@FUZZ
@given(message=grpc_messages(), key=st.sampled_from([KEY, KEY, KEY, None, "wrong-" + KEY]))
def test_fuzzed_grpc_requests_get_invalid_argument_with_a_message(server, message, key):
    endpoints, *_ = server
    with grpc.insecure_channel(endpoints["grpc"]) as channel:
        call = channel.unary_unary(api.FULL_METHOD)   # raw bytes both ways
        metadata = (("authorization", f"Bearer {key}"),) if key else None
        try:
            answer = call(message, timeout=30, metadata=metadata)
            assert key == KEY
            assert_answers_grpc_request(message, api.SegmentResponse.FromString(answer))
        except grpc.RpcError as error:
            expected = grpc.StatusCode.UNAUTHENTICATED if key != KEY else grpc.StatusCode.INVALID_ARGUMENT
            assert error.code() == expected and error.details(), (error.code(), error.details())


def test_after_the_fuzzing_the_replica_is_healthy_bounded_and_right(server):
    """Runs last: the same good request gets the same answer as before, on both transports."""
    endpoints, client, good, baseline, stats = server
    assert http_get(endpoints["http"].replace("/segment", "/healthz"))[0] == 200
    for transport in ("http", "grpc"):
        answer = client.segment([good], transport=transport)[0]
        assert [(d["class"], d["mask"]["counts"]) for d in answer["detections"]] == \
               [(d["class"], d["mask"]["counts"]) for d in baseline["detections"]]
    now = replica_stats(endpoints)
    assert now["replica"] == stats["replica"]   # the same replica served everything: it never died
    grew = now["peak_rss_bytes"] - stats["peak_rss_bytes"]
    print(f"replica peak RSS {stats['peak_rss_bytes'] >> 20} MiB before the fuzzing, {now['peak_rss_bytes'] >> 20} MiB after")
    assert grew < 25 * MAX_BODY + (100 << 20), grew
