"""``segpost run --track`` on video files: a track_id in every detection, track_started and
track_ended lines, the tracks of a finished file ended, the config's "track" key."""
import json
import os
import shutil
import subprocess

import pytest

from segpost.cli import main
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    scene = Scene([(240, 320)], num_classes=2, seed=5)
    frames = [scene.render(r)[0][0] for r in range(12)]
    # Lossless (FFV1): H.264's chroma blur would make the small synthetic decoder see extra shades.
    path = str(tmp_path_factory.mktemp("track") / "scene.mkv")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-r",
                    "10", "-i", "-", "-c:v", "ffv1", path], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def run(tmp_path, video, *extra, track=None):
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640]}
    if track is not None:
        config["track"] = track
    path, out = tmp_path / "segpost.json", tmp_path / f"out{len(list(tmp_path.glob('out*')))}.jsonl"
    path.write_text(json.dumps(config))
    code = main(["run", "--device", "cpu", "--decode", "cpu", "--config", str(path), "--source", video, "--source",
                 video, "--out", str(out), "--masks", "none", *extra])
    assert code == 0
    with open(out) as f:
        return [json.loads(line) for line in f]


def test_run_track_writes_ids_and_events(tmp_path, video):
    lines = run(tmp_path, video, "--track")
    frames = [r for r in lines if "detections" in r]
    events = [r for r in lines if r.get("event", "").startswith("track_")]
    assert len(frames) == 24 and all(isinstance(d["track_id"], int) for r in frames for d in r["detections"])
    for camera in (0, 1):
        mine = [r for r in frames if r["camera"] == camera]
        ids = [sorted(d["track_id"] for d in r["detections"]) for r in mine]
        assert all(i == [1, 2, 3, 4] for i in ids), ids   # 4 objects, one id each, for the whole file
        started = [e for e in events if e["camera"] == camera and e["event"] == "track_started"]
        ended = [e for e in events if e["camera"] == camera and e["event"] == "track_ended"]
        assert sorted(e["track_id"] for e in started) == sorted(e["track_id"] for e in ended) == [1, 2, 3, 4]
        assert all(e["first_frame"] == 0 and e["last_frame"] == 2 and e["frames_seen"] == 3 for e in started)
        assert all(e["last_frame"] == 11 and e["frames_seen"] == 12 and e["class"] in ("red", "green") for e in ended)
        # The file's tracks end when it does, just before its "finished" line, the camera's last.
        finished = next(i for i, r in enumerate(lines) if r.get("event") == "finished" and r["camera"] == camera)
        assert all(lines.index(e) < finished for e in ended)
        assert not [r for r in lines[finished + 1:] if r.get("camera") == camera]
        assert {"source", "time"} <= set(started[0])


def test_config_track_key_and_no_tracking(tmp_path, video):
    lines = run(tmp_path, video, track={"min_hits": 1})
    started = [r for r in lines if r.get("event") == "track_started"]
    assert len(started) == 8 and all(e["last_frame"] == 0 for e in started)
    plain = run(tmp_path, video)
    assert not [r for r in plain if r.get("event", "").startswith("track_")]
    assert all("track_id" not in d for r in plain if "detections" in r for d in r["detections"])


def test_bad_track_key_is_a_clear_error(tmp_path, video, capsys):
    path = tmp_path / "segpost.json"
    path.write_text(json.dumps({"backend": "synthetic", "classes": ["red"], "track": {"max_age": -1}}))
    assert main(["run", "--device", "cpu", "--config", str(path), "--source", video, "--out", os.devnull]) == 2
    assert "TrackerConfig.max_age" in capsys.readouterr().err


def test_demo_track_counts_one_track_per_object_and_draws_ids(tmp_path, capsys):
    summary, png = tmp_path / "summary.json", tmp_path / "mosaic.png"
    assert main(["demo", "--device", "cpu", "--cameras", "2", "--classes", "2", "--frames", "10", "--track",
                 "--json", str(summary), "--save", str(png)]) == 0
    tracks = json.loads(summary.read_text())["tracks"]
    assert tracks == {"track_started": 8, "track_ended": 8, "objects": 8}
    assert "tracking: 8 tracks confirmed for 8 objects" in capsys.readouterr().out and png.stat().st_size > 0


def test_demo_without_opencv_names_the_extra(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)   # import cv2 raises ImportError
    assert main(["demo", "--device", "cpu", "--frames", "1"]) == 2
    assert 'pip install "segpost[video]"' in capsys.readouterr().err
