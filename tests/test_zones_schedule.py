"""``segpost run --schedule on_change --zones``: predicted frames count for the zones as the
tracker sees them. A still camera is seen by the model once; its objects stand in the zone on
the predicted frames after, so they enter it once the zone's inertia (3 frames) has passed: on
model frames alone they never would."""
import json

import pytest

from schedule_videos import still_and_moving
from segpost.cli import main

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")
FRAMES = 12
ALL = [[0, 0], [1, 0], [1, 1], [0, 1]]



@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return still_and_moving(tmp_path_factory.mktemp("zones_schedule"), FRAMES)


@pytest.mark.parametrize("rule", ["mask", "bottom_centre"])
def test_on_change_predicted_frames_make_zone_events(tmp_path, videos, rule):
    still, moving = videos
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], "max_cameras": 1,
              "track": {"min_hits": 1}, "zone_rule": rule,
              "schedule": {"mode": "on_change", "output_fps": 1e6, "max_interval": 60, "predict_limit": 60}}
    zones = {"0": [{"name": "all", "polygon": ALL, "inertia": 3}],
             "1": [{"name": "all", "polygon": ALL, "inertia": 3}]}
    (tmp_path / "segpost.json").write_text(json.dumps(config))
    (tmp_path / "zones.json").write_text(json.dumps(zones))
    out = tmp_path / "out.jsonl"
    assert main(["run", "--device", "cpu", "--decode", "cpu", "--config", str(tmp_path / "segpost.json"), "--out",
                 str(out), "--zones", str(tmp_path / "zones.json"), "--schedule", "on_change", "--masks", "none",
                 "--source", still, "--source", moving]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [r for r in records if "detections" in r and r["camera"] == 0]
    observed = [r for r in frames if not r.get("predicted")]
    assert len(observed) == 1 and len(frames) == FRAMES   # the still camera: one model frame, the rest predicted
    seen = {d["track_id"] for d in observed[0]["detections"]}
    classes = {d["track_id"]: d["class"] for d in observed[0]["detections"]}
    assert len(seen) == 4
    zone = [r for r in records if r.get("event", "").startswith("zone_") and r["camera"] == 0]
    entered = [r for r in zone if r["event"] == "zone_entered"]
    # Every object the model saw entered, stamped at the model's frame (the first of the 3).
    assert sorted(r["track_id"] for r in entered) == sorted(seen), zone
    assert all(r["frame"] == observed[0]["frame_index"] for r in entered)
    for name in ("red", "green"):   # occupancy per class: all of its objects in, then none (the file ended)
        counts = [r["count"] for r in zone if r["event"] == "zone_count" and r["class"] == name]
        assert counts and counts[0] == sum(c == name for c in classes.values()) and counts[-1] == 0, (name, counts)
    # ... and left when the file ended (its tracks end), once each.
    left = sorted(r["track_id"] for r in zone if r["event"] == "zone_left")
    assert left == sorted(seen)
