"""The live page's pieces without a browser: the guard's decisions and the hub's promises
(nothing taken unwatched, a few frames a second, one message per frame with its own record)."""
import base64
import json
import threading
import time

import numpy as np
import pytest

from segpost.ui.guard import Guard, parse_listen, read_keys
from segpost.ui.hub import LiveHub

cv2 = pytest.importorskip("cv2")
KEY = "a-key-of-the-live-page-0123"


def test_listen_addresses():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8080", "host:", ":80", "host:99999", "host:eighty"):
        with pytest.raises(ValueError, match="--ui"):
            parse_listen(bad)


def test_key_files(tmp_path):
    good = tmp_path / "keys"
    good.write_text(f"# comment\n\n{KEY}\n")
    assert read_keys(str(good)) == (KEY,)
    short = tmp_path / "short"
    short.write_text("short-key\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        read_keys(str(short))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no key"):
        read_keys(str(empty))


def test_guard_refuses_other_interfaces_without_keys_and_checks_keys_sessions_hosts_origins():
    with pytest.raises(ValueError, match="refusing to start the live page on 0.0.0.0"):
        Guard("0.0.0.0")
    Guard("0.0.0.0", allow_unauthenticated=True)
    Guard("::1")
    now = [0.0]
    guard = Guard("10.0.0.5", [KEY], clock=lambda: now[0])
    assert guard.bearer_ok("Bearer " + KEY) and guard.bearer_ok("bearer " + KEY)
    for bad in (None, "", KEY, "Basic " + KEY, "Bearer " + KEY + "x", "Bearer " + KEY[:-1]):
        assert not guard.bearer_ok(bad), bad
    assert not guard.allowed({}, {})
    token = guard.new_session()
    assert guard.allowed({}, {"segpost_session": token}) and not guard.allowed({}, {"segpost_session": token + "x"})
    now[0] += 13 * 3600   # sessions last 12 h
    assert not guard.allowed({}, {"segpost_session": token})
    token = guard.new_session()
    guard.end_session(token)
    assert not guard.session_ok(token)
    # A loopback listener answers loopback names only; another interface any (keys guard it).
    local = Guard("127.0.0.1")
    assert local.allowed({}, {})
    assert all(local.host_ok({"host": h}) for h in ("127.0.0.1:8080", "localhost:1", "[::1]:8080"))
    assert not any(local.host_ok({"host": h}) for h in ("evil.example:8080", "127.0.0.1.evil.example", ""))
    assert guard.host_ok({"host": "camera-site.example"})
    assert local.same_origin({"origin": "http://127.0.0.1:8080", "host": "127.0.0.1:8080"}, "http")
    for origin in (None, "null", "http://evil.example", "https://127.0.0.1:8080", "http://127.0.0.1:8081"):
        assert not local.same_origin({"origin": origin, "host": "127.0.0.1:8080"}, "http"), origin


class Source:
    shown_url, stats = "cam.mp4", {"reconnects": 2, "dropped": 1, "errors": 1}


class Viewer:
    """What a WebSocket viewer is to the hub: what it watches, and what it was delivered."""

    def __init__(self):
        self.watching, self.got, self.arrived = set(), [], threading.Event()

    def deliver(self, kind, text, camera=None):
        self.got.append((kind, json.loads(text)))
        self.arrived.set()


def frame_record(index):
    return {"round": index, "camera": 0, "source": "cam.mp4", "frame_index": index, "frame_size": [240, 320],
            "detections": []}


def test_hub_takes_frames_only_while_watched_and_sends_each_with_its_own_record():
    now = [100.0]
    hub = LiveHub([(0, Source()), (1, Source())], fps=4.0, max_width=160, clock=lambda: now[0])
    try:
        image = np.zeros((240, 320, 3), np.uint8)
        for index in range(20):   # nobody watches: nothing taken
            hub.record(frame_record(index))
            assert not hub.wants_frame(0)
        viewer = Viewer()
        hub.add_viewer(viewer)
        hub.watch(viewer, [1, "unknown"])
        assert viewer.watching == {1} and not hub.wants_frame(0) and hub.wants_frame(1)
        hub.watch(viewer, [0])
        assert hub.wants_frame(0)
        image[:, :, 2] = 200
        hub.frame(0, image, frame_record(20))
        assert not hub.wants_frame(0)          # 4 a second: the next one in 0.25 s
        now[0] += 0.26
        assert hub.wants_frame(0)
        assert viewer.arrived.wait(10)
        kind, message = viewer.got[-1]
        assert kind == "frame" and message["frame_index"] == message["record"]["frame_index"] == 20
        assert (message["width"], message["height"]) == (160, 120)
        jpeg = cv2.imdecode(np.frombuffer(base64.b64decode(message["jpeg"]), np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (120, 160, 3) and abs(int(jpeg[:, :, 2].mean()) - 200) <= 3
        hub.record({"event": "skipped", "camera": 0, "message": "frame 21 dropped", "time": time.time()})
        assert viewer.got[-1] == ("event", {"type": "event", "event": hub.hello()["events"][-1]})
        health = hub.health()["0"]
        assert health["frames"] == 20 and health["skipped"] == 1 and health["skipped_share"] == round(1 / 21, 4)
        assert health["last_error"] == "frame 21 dropped" and health["reconnects"] == 2
        hub.remove_viewer(viewer)
        assert not hub.wants_frame(0) and hub.stats()["encodes"] == 1 and hub.stats()["taken"] == 1
    finally:
        hub.close()


def test_downscale_takes_bgr_and_yuv_frames():
    """NVDEC's frames are YuvFrames (nv12 on the GPU); here in host memory, the same conversion."""
    from segpost.preprocess import YuvFrame
    from segpost.ui.hub import downscale

    rng = np.random.default_rng(0)
    bgr = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST)
    expected = cv2.resize(bgr, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.array_equal(downscale(bgr, 160), expected)
    assert downscale(bgr, 640).shape == (240, 320, 3)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    h, w = 240, 320
    u, v = i420[h:h + h // 4].reshape(-1), i420[h + h // 4:].reshape(-1)
    nv12 = np.concatenate([i420[:h], np.stack([u, v], 1).reshape(h // 2, w)])
    for frame in (YuvFrame(i420, "i420"), YuvFrame(nv12, "nv12")):
        shown = downscale(frame, 160)
        assert shown.shape == (120, 160, 3)
        assert np.abs(shown.astype(int) - expected.astype(int)).mean() < 4, frame.layout


def test_frame_poll_watches_only_while_asked():
    """The fleet's page asks a worker for frames (FramePoll): nothing taken before it asks, each
    asked camera's latest frame with its own record, and after the lease nothing watched or kept."""
    from segpost.ui.frame_poll import FramePoll

    now = [50.0]
    poll = FramePoll([("a", Source()), ("b", Source())], lease_s=5.0, clock=lambda: now[0])
    image = np.zeros((240, 320, 3), np.uint8)
    try:
        assert not poll.wants_frame("a") and poll.stats()["taken"] == 0
        assert poll.ask(["a", "zzz"]) == {} and poll.stats()["watching"] == ["a"]   # unknown names ignored
        assert poll.wants_frame("a") and not poll.wants_frame("b")
        poll.frame("a", image, dict(frame_record(7), camera="a"))
        wait = time.monotonic() + 10
        while poll.stats()["encodes"] < 1 and time.monotonic() < wait:
            time.sleep(0.01)
        got = poll.ask(["a"])
        message = json.loads(got["a"])
        assert message["frame_index"] == message["record"]["frame_index"] == 7 and message["width"] == 320
        now[0] += 4.9
        assert poll.wants_frame("a")             # asked 4.9 s ago: still watched
        now[0] += 5.2
        assert not poll.wants_frame("a") and poll.stats()["watching"] == []
        assert poll.ask([]) == {}                # the kept frame went with the lease
        assert poll.ask(["a"]) == {}             # watched again: no stale frame from before
    finally:
        poll.close()
