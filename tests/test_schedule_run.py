"""``segpost run --schedule on_change`` on video files: a config of max_cameras 2 serves 6
cameras; the still ones get predicted records (their masks where the model last saw them), the
moving one the model; every frame of every camera gets a record."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from segpost import decode_coco_rle
from segpost.cli import main
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")
FRAMES = 12


def ffv1(path, frames):
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-r",
                    "10", "-i", "-", "-c:v", "ffv1", str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    folder = tmp_path_factory.mktemp("schedule")
    scene = Scene([(240, 320)], num_classes=2, seed=5)
    still = ffv1(folder / "still.mkv", [scene.render(0)[0][0]] * FRAMES)
    moving = ffv1(folder / "moving.mkv", [scene.render(8 * r)[0][0] for r in range(FRAMES)])
    return still, moving


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
                            ("sometimes", "schedule.mode must be one of"),
                            ({"mode": "on_change", "max_interval": 0}, "schedule.max_interval must be a number above 0")):
        path.write_text(json.dumps({"backend": "synthetic", "classes": ["red"], "schedule": schedule}))
        assert main(["run", "--device", "cpu", "--config", str(path), "--source", videos[0], "--out", "-"]) == 2
        err = capsys.readouterr().err
        assert words in err and "schedule" in err, err
