"""`segpost fleet --ui`: the fleet's page, on a real local Ray instance (the fleet starts its own, as
test_fleet.py's SIGTERM test) and in a real browser (Debian's chromium, headless, Playwright):
every worker and camera listed with its state, each camera's latest record as its output file
holds it, each camera's latest frame with that frame's masks (and no frame taken while nobody
watches); the same keys as `segpost run`'s page; beyond loopback without keys refused."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from fleet_cases import fleet_services, make_videos, read_out, wait_until, write_configs

fleet_services()
pytest.importorskip("starlette", reason="the page needs the ui extra (pip install segpost[ui])")
pytest.importorskip("uvicorn", reason="the page needs the ui extra (pip install segpost[ui])")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "the-fleet-page-key-0123456789"


def http(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (apt-get install chromium; .ci/run does)")
def test_the_fleet_page_lists_every_worker_and_camera_with_its_latest_record(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright drives the browser (the test extra)")
    (tmp_path / "videos").mkdir()
    _, _, longs = make_videos(tmp_path / "videos", short=0)
    names = [f"long{i}" for i in range(4)]
    # Two workers of two cameras; rounds of >= 100 ms: the fleet outlasts the test.
    config = write_configs(tmp_path, list(zip(names, longs)), per_worker=2, busy=(100, 0))
    key_file = tmp_path / "keys"
    key_file.write_text(KEY + "\n")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(out),
                                "--ui", "127.0.0.1:0", "--ui-key-file", str(key_file), "--status-every", "2"],
                               stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines, found = [], threading.Event()

    def read():
        for line in process.stderr:
            lines.append(line)
            if "the fleet's page on " in line:
                found.set()
        found.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(120) and any("page on " in line for line in lines), "".join(lines)[-3000:]
        url = [line for line in lines if "page on " in line][0].split("page on ")[1].strip()
        # The same guard as run's page: no key, a wrong key: refused.
        for headers in ({}, {"Authorization": "Bearer " + KEY[:-1] + "x"}):
            assert http(url + "api/fleet", headers)[0] == 401
        assert http(url + "api/fleet", {"Host": "rebound.example", "Authorization": "Bearer " + KEY})[0] == 421

        # Nobody watches yet: no worker has taken a frame for the page.
        status_file = out / "fleet-status.json"
        polled = wait_until(lambda: (lambda s: s if s and all(w.get("page_frames") for w in s["workers"]) else None)(
            json.loads(status_file.read_text()) if status_file.exists() else None), 120, "the workers' page stats")
        assert all(w["page_frames"]["taken"] == 0 and w["page_frames"]["watching"] == [] for w in polled["workers"])

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.fill("input[name=key]", KEY)
            page.click("button[type=submit]")
            page.wait_for_selector("body[data-ready='1']", timeout=60000)

            def shown():   # every camera with its latest record, its worker running
                rows = page.eval_on_selector_all(
                    "tr.camera-row", "rs => rs.map(r => [r.dataset.worker, r.dataset.camera, r.dataset.frameIndex, "
                    "r.dataset.detections])")
                workers = page.eval_on_selector_all("tr.worker-row", "rs => rs.map(r => [r.dataset.worker, "
                                                    "r.dataset.state])")
                if len(rows) == 4 and all(r[2] for r in rows) and all(s == "running" for _, s in workers):
                    return rows, workers
                return None
            wait_until(shown, 120, "every camera's latest record on the page")
            # The latest: at least the newest frame the files held before the page's last poll.
            before = {c: max([r["frame_index"] for r in rs if "detections" in r], default=-1)
                      for c, rs in read_out(out, running=True).items()}
            page.wait_for_timeout(2500)
            rows, workers = shown() or wait_until(shown, 30, "the page again")
            for _, camera, index, _ in rows:
                assert int(index) >= before[camera], (camera, index, before[camera])
            assert sorted(w for w, _ in workers) == ["worker-0", "worker-1"]
            assert sorted(r[1] for r in rows) == names
            status = json.loads((out / "fleet-status.json").read_text())
            owner = {c: w["worker"] for w in status["workers"] for c in w["cameras"]}
            assert {r[1]: r[0] for r in rows} == owner
            # Each count is the detections of that frame's record in the camera's output file.
            records = read_out(out, running=True)
            for _, camera, index, detections in rows:
                record, = [r for r in records[camera] if "detections" in r and r["frame_index"] == int(index)]
                assert len(record["detections"]) == int(detections), (camera, index)
            # Each camera's latest frame, drawn with that frame's own record: the frame index of
            # the pixels is the overlay's, and that record is the one the output file holds.
            def tiles():
                got = page.eval_on_selector_all(
                    ".frame-tile[data-frame-index]", "ts => ts.map(t => [t.dataset.camera, t.dataset.frameIndex, "
                    "t.dataset.overlayIndex, t.dataset.detections])")
                return got if len(got) == 4 else None
            shown_tiles = wait_until(tiles, 60, "every camera's frame on the page")
            assert sorted(t[0] for t in shown_tiles) == names
            records = read_out(out, running=True)
            for camera, index, overlay, detections in shown_tiles:
                assert index == overlay, (camera, index, overlay)
                record, = [r for r in records[camera] if "detections" in r and r["frame_index"] == int(index)]
                assert len(record["detections"]) == int(detections), (camera, index)
            assert page.evaluate("window.segpost.mismatched") == 0
            # Masks drawn where the record has detections (the scene's objects), over a real JPEG.
            busy = [t[0] for t in shown_tiles if int(t[3]) > 0]
            assert busy, shown_tiles
            alpha = page.eval_on_selector(f".frame-tile[data-camera='{busy[0]}'] canvas.masks", """c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return [n, c.width, c.height]; }""")
            assert alpha[0] > 0 and alpha[1] <= 480, alpha
            assert "once a second" in page.text_content("#frames-note")
            assert not errors, errors
            browser.close()
        # The page closed: after the lease (5 s) the workers watch nothing and take no more frames.
        def settled():
            s = json.loads(status_file.read_text())
            return s if all(w["page_frames"] and w["page_frames"]["watching"] == [] for w in s["workers"]) else None
        quiet = wait_until(settled, 30, "the workers to stop watching")
        taken = {w["worker"]: w["page_frames"]["taken"] for w in quiet["workers"]}
        assert all(n > 0 for n in taken.values()), taken
        time.sleep(5)
        later = {w["worker"]: w["page_frames"]["taken"] for w in json.loads(status_file.read_text())["workers"]}
        assert later == taken, (taken, later)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(lines)[-3000:]


def test_the_fleet_page_refuses_other_interfaces_without_keys(tmp_path):
    config = write_configs(tmp_path, [("cam", "x.mp4")], per_worker=1)
    done = subprocess.run([sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(tmp_path / "out"),
                           "--ui", "0.0.0.0:0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "refusing to start the live page on 0.0.0.0" in done.stderr, done.stderr[-1000:]


def test_the_workers_are_asked_for_frames_at_most_twice_a_second():
    """However many viewers poll /api/frames, the workers (Fleet.frames, through Ray) are asked at
    most every FRAMES_EVERY_S; the workers' JSON texts are joined into one valid answer."""
    from segpost.ui.fleet_page import FRAMES_EVERY_S, FleetPage

    asked = []

    def frames():
        asked.append(time.monotonic())
        return {"cam b": json.dumps({"type": "frame", "frame_index": len(asked)}), "a": "{\"frame_index\": 0}"}

    page = FleetPage("127.0.0.1", 0, status=lambda: None, files=dict, frames=frames)
    try:
        for _ in range(6):
            status, body = http(page.url + "api/frames")
            assert status == 200
            assert json.loads(body) == {"a": {"frame_index": 0}, "cam b": {"type": "frame", "frame_index": 1}}
        assert len(asked) == 1
        time.sleep(FRAMES_EVERY_S + 0.1)
        assert json.loads(http(page.url + "api/frames")[1])["cam b"]["frame_index"] == 2
    finally:
        page.close()
