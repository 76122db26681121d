"""``segpost run --schedule on_change`` on video files: a config of max_cameras 2 serves 6
cameras; the still ones get predicted records (their masks where the model last saw them), the
moving one the model; every frame of every camera gets a record."""
import json

import numpy as np
import pytest

from schedule_videos import still_and_moving
from segpost import decode_coco_rle
from segpost.cli import main
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")
FRAMES = 12



@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return still_and_moving(tmp_path_factory.mktemp("schedule"), FRAMES)


def test_on_change_serves_more_cameras_than_max_cameras(tmp_path, videos, capsys):
    still, moving = videos
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], "max_cameras": 2,
              "track": {"min_hits": 1}, "schedule": {"mode": "on_change", "output_fps": 1e6, "max_interval": 60,
                                                     "predict_limit": 60}}
    path, out = tmp_path / "segpost.json", tmp_path / "out.jsonl"
    path.write_text(json.dumps(config))
    sources = [still] * 5 + [moving]
    args = ["run", "--device", "cpu", "--decode", "cpu", "--config", str(path), "--out", str(out)]
    sources = sum((["--source", s] for s in sources), [])
    assert main(args + ["--schedule", "every_frame"] + sources) == 2   # 6 sources > max_cameras
    assert main(args + sources) == 0   # the config's on_change
    assert "segpost run: on_change: " in capsys.readouterr().err
    with open(out) as f:
        records = [json.loads(line) for line in f]
    frames = [r for r in records if "detections" in r]
    for camera in range(6):   # every frame of every camera has its record
        assert sorted(r["frame_index"] for r in frames if r["camera"] == camera) == list(range(FRAMES)), camera
    by_round = {}
    for r in frames:
        by_round.setdefault(r["round"], []).append(r)
    assert all(sum(not r.get("predicted") for r in rs) <= 2 for rs in by_round.values())   # the engine batch
    observed = [r for r in frames if not r.get("predicted")]
    predicted = [r for r in frames if r.get("predicted")]
    # The still cameras are seen once (nothing changes; max_interval and predict_limit are long), the
    # moving one in most rounds.
    for camera in range(5):
        assert sum(r["camera"] == camera for r in observed) == 1
    assert sum(r["camera"] == 5 for r in observed) >= FRAMES - 3
    first = {r["camera"]: r for r in observed if r["camera"] < 5}
    for r in predicted:
        if r["camera"] == 5 or r["round"] < first[r["camera"]]["round"]:
            assert r["camera"] == 5 or r["detections"] == []   # not seen yet: nothing to predict
            continue
        seen = {d["track_id"]: d for d in first[r["camera"]]["detections"]}
        assert len(r["detections"]) == 4
        for d in r["detections"]:
            assert d["predicted"] is True and d["observed_frame"] == first[r["camera"]]["frame_index"]
            assert np.array_equal(decode_coco_rle(d["mask"]), decode_coco_rle(seen[d["track_id"]]["mask"]))
            assert d["box"] == seen[d["track_id"]]["box"] and d["class"] == seen[d["track_id"]]["class"]


def test_bad_schedule_key_is_a_clear_error(tmp_path, videos, capsys):
    path = tmp_path / "segpost.json"
    for schedule, words in (({"mode": "on_change", "interval": 1}, "unknown key(s) ['interval']"),
                            ("sometimes", "schedule.mode (ScheduleConfig.mode): Input should be 'every_frame' or"),
                            ({"mode": "on_change", "max_interval": 0},
                             "schedule.max_interval (ScheduleConfig.max_interval): Input should be greater than 0")):
        path.write_text(json.dumps({"backend": "synthetic", "classes": ["red"], "schedule": schedule}))
        assert main(["run", "--device", "cpu", "--config", str(path), "--source", videos[0], "--out", "-"]) == 2
        err = capsys.readouterr().err
        assert words in err and "schedule" in err, err


def test_on_change_refuses_more_than_four_times_max_cameras(tmp_path, videos, capsys):
    config = {"backend": "synthetic", "classes": ["red"], "max_frame_size": [480, 640], "max_cameras": 2,
              "schedule": {"mode": "on_change"}}
    path = tmp_path / "segpost.json"
    path.write_text(json.dumps(config))
    sources = sum((["--source", videos[0]] for _ in range(9)), [])   # 9 > 4 x 2
    assert main(["run", "--device", "cpu", "--config", str(path), "--out", str(tmp_path / "o.jsonl")] + sources) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "9 sources but on_change serves at most 4 x the config's max_cameras=2 = 8" in err[0], err
    assert not (tmp_path / "o.jsonl").exists()


def test_on_change_predicted_masks_as_png_files(tmp_path, videos):
    """--masks png: a predicted record names a file per detection, written; a still camera's
    predicted mask is the mask the model last saw (the same pixels as the observed record's file)."""
    cv2 = pytest.importorskip("cv2")
    still, moving = videos
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], "max_cameras": 1,
              "track": {"min_hits": 1}, "schedule": {"mode": "on_change", "output_fps": 1e6, "max_interval": 60,
                                                     "predict_limit": 60}}
    path, out, masks = tmp_path / "segpost.json", tmp_path / "out.jsonl", tmp_path / "masks"
    path.write_text(json.dumps(config))
    assert main(["run", "--device", "cpu", "--decode", "cpu", "--config", str(path), "--out", str(out), "--masks", "png",
                 "--mask-dir", str(masks), "--source", still, "--source", moving]) == 0
    with open(out) as f:
        frames = [r for r in map(json.loads, f) if "detections" in r and r["camera"] == 0]
    observed = [r for r in frames if not r.get("predicted")]
    assert len(observed) == 1 and len(observed[0]["detections"]) == 4
    seen = {d["track_id"]: cv2.imread(d["mask"], cv2.IMREAD_GRAYSCALE) for d in observed[0]["detections"]}
    predicted = [r for r in frames if r.get("predicted") and r["frame_index"] > observed[0]["frame_index"]]
    assert len(predicted) >= FRAMES - 3
    files = set()
    for r in predicted:
        assert len(r["detections"]) == 4
        for d in r["detections"]:
            image = cv2.imread(d["mask"], cv2.IMREAD_GRAYSCALE)
            assert image is not None and image.shape == (240, 320), d["mask"]
            assert np.array_equal(image, seen[d["track_id"]]) and image.any()
            files.add(d["mask"])
    assert len(files) == 4 * len(predicted)   # no file written over by another frame's


def test_on_change_live_page_shows_predicted_frames(tmp_path):
    """--ui: a camera the model does not see still reaches the page, each frame with its predicted
    record (the one written to --out)."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("starlette", reason="the live page needs the ui extra (pip install segpost[ui])")
    pytest.importorskip("uvicorn", reason="the live page needs the ui extra (pip install segpost[ui])")
    websockets = pytest.importorskip("websockets.sync.client", reason="the websockets client (uvicorn's)")
    import subprocess as sp
    import sys
    import threading
    import time

    scene = Scene([(240, 320)], num_classes=2, seed=5)
    paths = {}
    for name, frames in (("still", [scene.render(0)[0][0]] * 400), ("moving", [scene.render(r % 40)[0][0] for r in range(400)])):
        paths[name] = str(tmp_path / f"{name}.avi")
        writer = cv2.VideoWriter(paths[name], cv2.VideoWriter_fourcc(*"FFV1"), 10, (320, 240))
        for frame in frames:
            writer.write(frame)
        writer.release()
    # The moving camera takes the model every round (>= 50 ms each): the still one is predicted for ~20 s.
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], "max_cameras": 1,
              "busy_ms": [50, 0], "track": {"min_hits": 1},
              "schedule": {"mode": "on_change", "output_fps": 1e6, "max_interval": 600, "predict_limit": 600}}
    (tmp_path / "segpost.json").write_text(json.dumps(config))
    out = tmp_path / "out.jsonl"
    process = sp.Popen([sys.executable, "-m", "segpost", "run", "--device", "cpu", "--decode", "cpu", "--config",
                        str(tmp_path / "segpost.json"), "--out", str(out), "--source", paths["moving"], "--source",
                        paths["still"], "--ui", "127.0.0.1:0", "--ui-fps", "30"],
                       stdout=sp.DEVNULL, stderr=sp.PIPE, text=True, env=dict(__import__("os").environ, PYTHONUNBUFFERED="1"))
    lines, ready = [], threading.Event()

    def read():
        for line in process.stderr:
            lines.append(line)
            if "live page on " in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(120) and any("live page on " in line for line in lines), "".join(lines)[-2000:]
        url = [line for line in lines if "live page on " in line][0].split("live page on ")[1].strip()
        got = None
        with websockets.connect(url.replace("http://", "ws://") + "ws", open_timeout=10, max_size=2**24) as feed:
            deadline = time.monotonic() + 60
            while got is None and time.monotonic() < deadline:
                try:
                    message = json.loads(feed.recv(timeout=max(0.1, deadline - time.monotonic())))
                except TimeoutError:
                    break
                if message["type"] == "frame" and message["camera"] == 1 and message["record"].get("predicted") \
                        and message["record"]["detections"]:
                    got = message
        assert got is not None, "no predicted frame reached the page"
        record = got["record"]
        assert got["frame_index"] == record["frame_index"]
        assert all(d["predicted"] is True and "counts" in d["mask"] for d in record["detections"])
        # The page's record is the one written for that frame.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(out) as f:
                written = [r for r in map(json.loads, (line for line in f if line.endswith("\n")))
                           if r.get("camera") == 1 and r.get("frame_index") == record["frame_index"] and "detections" in r]
            if written:
                break
            time.sleep(0.2)
        assert written == [record]
    finally:
        process.terminate()
        try:
            process.wait(20)
        except sp.TimeoutExpired:
            process.kill()
            process.wait()
