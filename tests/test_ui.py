"""``segpost run --ui``: the live page in a real browser (Debian's chromium, headless, driven by
Playwright), on the synthetic scene with tracking. The canvas is read back and compared with
the records the run wrote and with the scene's own frames; the keys, the WebSocket and the
encoder are checked from outside, over HTTP."""
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from segpost.synthetic.scene import Scene

cv2 = pytest.importorskip("cv2")
pytest.importorskip("starlette", reason="the live page needs the ui extra (pip install segpost[ui])")
pytest.importorskip("uvicorn", reason="the live page needs the ui extra (pip install segpost[ui])")
mask_api = pytest.importorskip("pycocotools.mask")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_browser = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (apt-get install chromium; "
                                   ".ci/run does)")

SIZE = (240, 320)          # the video's frames (height, width)
SHOWN_WIDTH = 256          # --ui-width: the page's frames are downscaled to 256x192
BLANK = 60                 # frames with no object before the scene: tracks start after the page connects
SCENE_FRAMES = 80
KEY = "k3y-for-the-live-page-0123456789"


def scene_frame(index: int, scene: Scene) -> np.ndarray:
    if index < BLANK:
        return np.full(SIZE + (3,), 60, np.uint8)
    return scene.render(index)[0][0]


@pytest.fixture(scope="module")
def scene():
    return Scene([SIZE], num_classes=2, seed=5)


@pytest.fixture(scope="module")
def video(tmp_path_factory, scene):
    """Lossless (FFV1): the decoded frames equal the scene's, so the page's pixels can be checked."""
    path = str(tmp_path_factory.mktemp("ui") / "scene.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (SIZE[1], SIZE[0]))
    assert writer.isOpened()
    for index in range(BLANK + SCENE_FRAMES):
        writer.write(scene_frame(index, scene))
    writer.release()
    return path


def write_config(folder, busy_ms=100):
    # busy_ms paces the rounds (>= 100 ms each, sleeping): the blank start lasts >= 6 s.
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640],
              "track": {"max_age": 30, "min_hits": 3}, "busy_ms": [busy_ms, 0]}
    path = os.path.join(folder, "segpost.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


class Run:
    """`segpost run --ui 127.0.0.1:0 ...` in a subprocess; `url` once it listens."""

    def __init__(self, tmp_path, video, *args, busy_ms=100):
        self.out = str(tmp_path / "out.jsonl")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segpost", "run", "--device", "cpu",
             "--config", write_config(str(tmp_path), busy_ms), "--source", video, "--source", video, "--track",
             "--out", self.out, "--ui-width", str(SHOWN_WIDTH), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.stderr, self.url = [], None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            self.stderr.append(line)
            if "live page on " in line:
                self.url = line.split("live page on ")[1].strip()
                self._ready.set()
        self._ready.set()

    def wait_url(self, timeout=60):
        self._ready.wait(timeout)
        assert self.url, "no live page: " + "".join(self.stderr)[-2000:]
        return self.url

    def records(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def frame_record(self, camera, index):
        return wait_until(lambda: [r for r in self.records() if r.get("camera") == camera and "detections" in r
                                   and r["frame_index"] == index], 30, f"camera {camera} frame {index}'s record")[0]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def http(url, headers=None, data=None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("no chromium (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright drives the browser (the test extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


READBACK = """(camera) => {
  const tile = document.querySelector(`.tile[data-camera="${camera}"]`);
  if (!tile || tile.dataset.frameIndex === undefined) return null;
  const [frame, masks] = tile.querySelectorAll("canvas");
  const w = masks.width, h = masks.height;
  const b64 = (data) => { let s = ""; for (let i = 0; i < data.length; i += 8192)
    s += String.fromCharCode.apply(null, data.subarray(i, i + 8192)); return btoa(s); };
  // Read in one task: what is on the canvases now is what the stamps say.
  return {frame_index: Number(tile.dataset.frameIndex), w, h,
          masks: b64(masks.getContext("2d").getImageData(0, 0, w, h).data),
          frame: b64(frame.getContext("2d").getImageData(0, 0, w, h).data)};
}"""


def rgba(text, h, w):
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(h, w, 4)


def shown_mask(record, h, w):
    """The record's masks (union) sampled at the canvas size by the page's pixel-centre rule."""
    height, width = record["frame_size"]
    union = np.zeros((height, width), bool)
    for detection in record["detections"]:
        rle = detection["mask"]
        union |= mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    ys = np.minimum(height - 1, ((np.arange(h) + 0.5) * height / h).astype(int))
    xs = np.minimum(width - 1, ((np.arange(w) + 0.5) * width / w).astype(int))
    return union[np.ix_(ys, xs)]


def frame_error(shown_rgb, index, scene, w, h):
    """Mean absolute difference between the page's frame and the scene's frame `index`."""
    expected = cv2.resize(scene_frame(index, scene), (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    return float(np.abs(shown_rgb.astype(np.int16) - expected.astype(np.int16)).mean())


@needs_browser
def test_page_lists_cameras_and_draws_each_frame_with_its_own_masks(tmp_path, video, scene, browser):
    run = Run(tmp_path, video, "--ui", "127.0.0.1:0")
    try:
        url = run.wait_url()
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        assert page.locator(".tile").count() == 2
        assert page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.camera)") == ["0", "1"]
        assert not [r for r in run.records() if r.get("event") == "track_started"], \
            "the tracks started before the page connected: the event timing below would test nothing"

        # Events: a track_started row, received live, within a second of being written.
        row = page.wait_for_selector("#timeline li[data-event='track_started'][data-live='1']", timeout=120000)
        written, received = float(row.get_attribute("data-time")), float(row.get_attribute("data-received"))
        assert received - written < 1.0, f"the event reached the timeline {received - written:.2f} s after written"
        # The camera filter hides the other camera's rows.
        page.select_option("#filter-camera", "1")
        assert page.locator("#timeline li[data-camera='0']:not([hidden])").count() == 0
        assert page.locator("#timeline li[data-camera='1']:not([hidden])").count() >= 1
        page.select_option("#filter-camera", "")
        page.select_option("#filter-class", "red")
        assert page.locator("#timeline li[data-class='green']:not([hidden])").count() == 0
        assert page.locator("#timeline li[data-class='red']:not([hidden])").count() >= 1
        page.select_option("#filter-class", "")

        # The overlay: the mask pixels drawn are the record's masks of the frame whose pixels are shown.
        checked = set()
        deadline = time.monotonic() + 120
        while len(checked) < 3 and time.monotonic() < deadline:
            got = page.evaluate(READBACK, 0)
            if (got is None or not BLANK + 3 <= got["frame_index"] < BLANK + SCENE_FRAMES - 1
                    or got["frame_index"] in checked):
                time.sleep(0.2)
                continue
            index, w, h = got["frame_index"], got["w"], got["h"]
            assert (w, h) == (SHOWN_WIDTH, SHOWN_WIDTH * SIZE[0] // SIZE[1])
            drawn = rgba(got["masks"], h, w)[:, :, 3] > 0
            ious = {}
            for i in (index - 1, index, index + 1):
                expected = shown_mask(run.frame_record(0, i), h, w)
                ious[i] = (drawn & expected).sum() / max(1, (drawn | expected).sum())
            assert shown_mask(run.frame_record(0, index), h, w).sum() > 1000
            assert ious[index] >= 0.95, f"frame {index}: the masks drawn match its record with IoU {ious[index]:.3f}"
            # Objects move little from one frame to the next: the drawn masks must be this frame's,
            # closer to its record than to its neighbours'.
            assert ious[index] == max(ious.values()), f"frame {index}: IoU with it and its neighbours: {ious}"
            # ... and the pixels under them are frame `index`'s, not a neighbour's.
            shown = rgba(got["frame"], h, w)[:, :, :3]
            errors_by_frame = {i: frame_error(shown, i, scene, w, h) for i in (index - 1, index, index + 1)}
            assert errors_by_frame[index] == min(errors_by_frame.values()), errors_by_frame
            checked.add(index)
        assert len(checked) >= 2, f"only frames {sorted(checked)} were seen with objects"

        # The page never had to show a frame bare (a record of another frame).
        assert page.evaluate("() => window.segpost.mismatched") == 0
        # Health: the same counters as /metrics, shown per camera.
        assert page.locator("#health tbody tr").count() == 2
        os.makedirs(tmp_path / "shots", exist_ok=True)
        page.screenshot(path=str(tmp_path / "shots" / "grid.png"))
        page.click(".tile[data-camera='1']")
        page.wait_for_selector("#large:not([hidden])")
        page.wait_for_selector("#large[data-frame-index]", state="attached", timeout=30000)
        page.screenshot(path=str(tmp_path / "shots" / "large.png"))
        assert not errors, errors
        page.close()
    finally:
        run.stop()


@needs_browser
def test_frame_and_overlay_in_sync_as_the_browser_shows_them(tmp_path, video, browser):
    """Measured in the page (window.__segpostSync): after every paint and at every animation
    frame, the frame index of the pixels on each canvas minus the frame index of the overlay
    drawn over them. p95 0 frames, never more than one apart."""
    run = Run(tmp_path, video, "--ui", "127.0.0.1:0", "--ui-fps", "10", busy_ms=50)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(run.wait_url())
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        wait_until(lambda: page.evaluate("() => window.segpost.drawn") >= 40, 120, "40 frames drawn")
        page.click(".tile[data-camera='1']")   # the large view too (with its trails)
        drawn = page.evaluate("() => window.segpost.drawn")
        wait_until(lambda: page.evaluate("() => window.segpost.drawn") >= drawn + 10, 60, "10 frames drawn large")
        sync = page.evaluate("() => window.__segpostSync.summary()")
        assert sync["samples"] >= 200 and sync["kept"] >= 200, sync
        assert sync["p95"] == 0, sync
        assert sync["max"] <= 1, sync
        page.close()
    finally:
        run.stop()


@needs_browser
def test_keys_sessions_and_no_encoding_without_a_viewer(tmp_path, video, browser):
    websockets = pytest.importorskip("websockets.sync.client", reason="the websockets client (uvicorn's)")
    from websockets.exceptions import InvalidStatus
    key_file = tmp_path / "keys"
    key_file.write_text(f"# the live page's keys\n{KEY}\n")
    # Slower rounds (>= 0.4 s): the run outlasts the test.
    run = Run(tmp_path, video, "--ui", "127.0.0.1:0", "--ui-key-file", str(key_file), busy_ms=400)
    try:
        url = run.wait_url()
        state = url + "api/state"
        good = {"Authorization": "Bearer " + KEY}
        for headers in ({}, {"Authorization": "Bearer " + KEY[:-1] + "x"}, {"Authorization": KEY}):
            status, body, _ = http(state, headers)
            assert status == 401, (headers, status, body[:200])
        status, body, _ = http(url)
        assert status == 401 and b"name=\"key\"" in body and KEY.encode() not in body
        # A site that rebinds its name to 127.0.0.1 reaches the port but not the page.
        assert http(state, {"Host": "rebound.example:80", **good})[0] == 421
        # Frames flow and nobody watches: nothing is encoded.
        wait_until(lambda: json.loads(http(state, good)[1])["health"]["0"]["frames"] >= 5, 120, "five rounds")
        ui = json.loads(http(state, good)[1])["ui"]
        assert ui["taken"] == 0 and ui["encodes"] == 0, ui

        ws_url = url.replace("http://", "ws://") + "ws"
        for headers in ({}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}):
            with pytest.raises(InvalidStatus) as refused:
                websockets.connect(ws_url, additional_headers=headers, open_timeout=10)
            assert refused.value.response.status_code == 403
        # A page of another site may not open the feed, even with a valid key.
        with pytest.raises(InvalidStatus):
            websockets.connect(ws_url, additional_headers=good, origin="http://evil.example", open_timeout=10)
        with websockets.connect(ws_url, additional_headers=good, open_timeout=10, max_size=2**24) as feed:
            hello = json.loads(feed.recv(timeout=10))
            assert hello["type"] == "hello" and [c["id"] for c in hello["cameras"]] == [0, 1]
            deadline = time.monotonic() + 60
            while True:
                message = json.loads(feed.recv(timeout=max(0.1, deadline - time.monotonic())))
                if message["type"] == "frame":
                    break
            assert message["frame_index"] == message["record"]["frame_index"]
            assert base64.b64decode(message["jpeg"])[:2] == b"\xff\xd8"
        assert json.loads(http(state, good)[1])["ui"]["encodes"] >= 1

        # The browser: a wrong key is refused, a cross-site login too; the right one gives a
        # session cookie the page's scripts cannot read.
        status, _, _ = http(url + "login", {"Origin": "http://evil.example", "Content-Type":
                                            "application/x-www-form-urlencoded"}, f"key={KEY}".encode())
        assert status == 403
        context = browser.new_context()
        page = context.new_page()
        response = page.goto(url)
        assert response.status == 401
        page.fill("input[name=key]", "not-the-key-not-the-key")
        with page.expect_navigation() as navigation:
            page.click("button[type=submit]")
        assert navigation.value.status == 401
        assert page.locator(".error").count() == 1 and page.locator(".tile").count() == 0
        page.fill("input[name=key]", KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        assert page.locator(".tile").count() == 2
        assert page.evaluate("document.cookie") == ""
        cookie, = [c for c in context.cookies() if c["name"] == "segpost_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert KEY not in page.content()
        context.close()
    finally:
        run.stop()


def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path, video):
    done = subprocess.run([sys.executable, "-m", "segpost", "run", "--device", "cpu", "--config",
                           write_config(str(tmp_path)), "--source", video, "--ui", "0.0.0.0:0", "--max-rounds", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "refusing to start the live page on 0.0.0.0" in done.stderr, done.stderr[-1000:]


def self_signed(folder):
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert, key_path = os.path.join(folder, "ui.pem"), os.path.join(folder, "ui.key")
    with open(cert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert, key_path


@needs_browser
def test_tls_page_and_a_secure_session_cookie(tmp_path, video, browser):
    import ssl

    pytest.importorskip("cryptography", reason="the test certificate is made with cryptography (the test extra)")
    cert, key = self_signed(str(tmp_path))
    key_file = tmp_path / "keys"
    key_file.write_text(KEY + "\n")
    run = Run(tmp_path, video, "--ui", "127.0.0.1:0", "--ui-key-file", str(key_file), "--ui-certfile", cert,
              "--ui-keyfile", key, busy_ms=400)
    try:
        url = run.wait_url()
        assert url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=cert)
        request = urllib.request.Request(url + "api/state", headers={"Authorization": "Bearer " + KEY})
        with urllib.request.urlopen(request, timeout=10, context=trusted) as response:
            assert response.status == 200 and len(json.load(response)["cameras"]) == 2
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):   # plain HTTP is not served
            urllib.request.urlopen(url.replace("https://", "http://") + "api/state", timeout=10)
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(url)
        page.fill("input[name=key]", KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-ready='1']", timeout=20000)
        cookie, = [c for c in context.cookies() if c["name"] == "segpost_session"]
        assert cookie["secure"] and cookie["httpOnly"]
        context.close()
    finally:
        run.stop()


ZONES_READBACK = """(selector) => {
  const canvas = document.querySelector(selector);
  const w = canvas.width, h = canvas.height, data = canvas.getContext("2d").getImageData(0, 0, w, h).data;
  const alpha = []; for (let i = 3; i < data.length; i += 4) alpha.push(data[i]);
  return {w, h, alpha};
}"""


def zones_alpha(page, selector):
    got = page.evaluate(ZONES_READBACK, selector)
    return np.asarray(got["alpha"], np.uint8).reshape(got["h"], got["w"])


def post_zones(url, body, headers):
    data = json.dumps(body).encode()
    return http(url + "api/zones", {"Content-Type": "application/json", **headers}, data)


@needs_browser
def test_zone_editor_saves_validates_and_the_run_applies_it(tmp_path, video, browser):
    spot = [[0.05, 0.05], [0.3, 0.05], [0.3, 0.3], [0.05, 0.3]]
    zones_path = tmp_path / "zones.json"
    zones_path.write_text(json.dumps({"0": [{"name": "spot", "polygon": spot, "inertia": 2}]}))
    run = Run(tmp_path, video, "--ui", "127.0.0.1:0", "--zones", str(zones_path), busy_ms=200)
    try:
        url = run.wait_url()
        origin = url.rstrip("/")
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1'][data-zones-editable='1']", timeout=20000)
        page.wait_for_selector(".tile[data-camera='0'][data-frame-index]", state="attached", timeout=60000)

        # The zone is drawn over camera 0's frame, where its outline is, and nowhere near the middle.
        alpha = zones_alpha(page, ".tile[data-camera='0'] canvas.zones")
        h, w = alpha.shape
        assert alpha[int(0.05 * h) - 2:int(0.05 * h) + 3, int(0.1 * w):int(0.25 * w)].any(), "no outline of 'spot'"
        assert not alpha[int(0.5 * h):, int(0.5 * w):].any()
        assert not alpha[int(0.05 * h):int(0.05 * h) + 1, int(0.5 * w):].any()

        # Changes only from the page itself: another origin, a cross-site fetch, no Origin: refused.
        before = zones_path.read_bytes()
        everywhere = {"camera": "0", "zones": [{"name": "x", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}
        for headers in ({"Origin": "http://evil.example"}, {"Origin": origin, "Sec-Fetch-Site": "cross-site"}, {}):
            status, body, _ = post_zones(url, everywhere, headers)
            assert status == 403, (headers, status, body)
        assert zones_path.read_bytes() == before

        # The editor on the large view: moving a vertex of 'spot' past its neighbour folds it
        # into a bow tie; the save is refused with the run's own one-line error, shown.
        page.click(".tile[data-camera='0']")
        page.wait_for_selector("#large[data-frame-index]", state="attached", timeout=30000)
        page.click("#zone-edit")
        box = page.locator("#large-stack canvas.zones").bounding_box()
        at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])  # noqa: E731
        page.mouse.move(*at(0.05, 0.05))
        page.mouse.down()
        page.mouse.move(*at(0.4, 0.05), steps=5)
        page.mouse.up()
        page.click("#zone-save")
        wait_until(lambda: page.text_content("#zone-error"), 10, "the editor's error")
        message = page.text_content("#zone-error")
        assert "self-intersecting" in message and "spot" in message, message
        assert zones_path.read_bytes() == before

        # Drawn anew: a polygon over the whole frame, saved; the running `segpost run` (the same
        # process, no restart) uses it from its next rounds: objects in the scene enter it.
        page.click("#zone-cancel")
        page.click("#zone-edit")
        page.click("#zone-new-polygon")
        box = page.locator("#large-stack canvas.zones").bounding_box()
        for x, y in ((0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99)):
            page.mouse.click(*at(x, y))
        page.fill("#zone-name", "everywhere")
        page.click("#zone-finish")
        page.click("#zone-save")
        wait_until(lambda: page.text_content("#zone-saved").startswith("saved"), 10, "the editor's save")
        saved = json.loads(zones_path.read_text())
        assert [z["name"] for z in saved["0"]] == ["spot", "everywhere"], saved
        assert saved["0"][1]["polygon"] == [[0.01, 0.01], [0.99, 0.01], [0.99, 0.99], [0.01, 0.99]]
        assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
        entered = wait_until(lambda: [r for r in run.records() if r.get("event") == "zone_entered"
                                      and r.get("zone") == "everywhere" and r["camera"] == 0], 90,
                             "a zone_entered of the zone saved in the editor")
        assert run.process.poll() is None
        assert any("new zones applied" in line for line in run.stderr)
        # Occupied (the records' zone_count > 0): the zone is lit, filled, on the tile.
        wait_until(lambda: [r for r in run.records() if r.get("event") == "zone_count"
                            and r.get("zone") == "everywhere" and r.get("count", 0) > 0], 30, "a zone_count > 0")
        page.click("#large-close")
        wait_until(lambda: zones_alpha(page, ".tile[data-camera='0'] canvas.zones")[h // 2, w // 2] > 0, 30,
                   "the occupied zone lit on the tile")
        assert entered[0]["frame"] >= 0
        assert not errors, errors
        page.close()
    finally:
        run.stop()
