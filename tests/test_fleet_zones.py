"""Zone events through the fleet (issue 33): the pipeline's "zones" block, keyed by camera NAME,
gives zone lines in the fleet's per-camera output, each written once even when the worker is
SIGKILLed mid-run and replaced: the lines before the kill are the uninterrupted run's, the
tracks the dead worker left inside a zone leave it by the sink (reason "worker lost"), and the
occupancy counts stay right across the restart. Real Ray (local), the synthetic backend."""
import json
import os
import signal

import pytest

from local_ray import start_local_ray
from fleet_cases import assert_exactly_once, committed, fleet_services, make_videos, resumed_at, run_fleet, \
    wait_until, write_configs

ray = fleet_services()

# "all": the whole frame (every track is inside, so a kill always leaves some inside);
# "left": the left half (tracks come and go).
ZONES = {"long0": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia": 1},
                   {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "inertia": 2}]}


@pytest.fixture(scope="module")
def ray_local():
    start_local_ray(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("fleet_zones"), short=0)


def configure(folder, videos):
    config = write_configs(folder, [("long0", videos[2][0])], per_worker=1, busy=(20, 5), track=True)
    pipeline = json.loads((folder / "segpost.json").read_text())
    (folder / "segpost.json").write_text(json.dumps({**pipeline, "zones": ZONES}))
    return config


def zone_lines(records):
    return [r for r in records if str(r.get("event", "")).startswith("zone_")]


def key(r):
    return (r["event"], r["zone"], r["class"], r["track_id"], r["frame"], r.get("count"))


def assert_zone_lines_consistent(lines):
    """Each (track, zone, class) alternates entered / left, starting with an entry and ending with
    its exit; each zone_count is the number inside then (entries minus exits so far), 0 at the end."""
    inside, count = {}, {}
    for r in lines:
        where = (r["zone"], r["class"])
        if r["event"] in ("zone_entered", "zone_left"):
            state = inside.get((r["track_id"],) + where, False)
            assert state == (r["event"] == "zone_left"), ("entered twice or left before entering", r)
            inside[(r["track_id"],) + where] = not state
            count[where] = count.get(where, 0) + (1 if r["event"] == "zone_entered" else -1)
        elif r["event"] == "zone_count":
            assert r["count"] == count.get(where, 0), (r, count)
    assert not any(inside.values()), [k for k, v in inside.items() if v]
    assert set(count.values()) <= {0}, count


def test_fleet_zone_events_once_across_a_worker_sigkill(ray_local, videos, tmp_path):
    _, whole_stats = run_fleet(configure(tmp_path / "whole", videos), tmp_path / "whole" / "out")
    whole = assert_exactly_once(tmp_path / "whole" / "out", ["long0"])["long0"]
    reference = zone_lines(whole)
    assert {r["event"] for r in reference} >= {"zone_entered", "zone_left", "zone_count"}, reference[:5]
    assert {r["zone"] for r in reference} == {"all", "left"} and all(r["camera"] == "long0" for r in reference)
    assert_zone_lines_consistent(reference)

    seen = {}

    def kill(fleet, stop):
        slot = fleet.slots[0]
        wait_until(lambda: committed(fleet, "long0") >= 40 and "pid" in slot.stats, 90, "40 frames of long0")
        seen["last"] = committed(fleet, "long0")
        os.kill(slot.stats["pid"], signal.SIGKILL)

    folder = tmp_path / "killed"
    fleet, _ = run_fleet(configure(folder, videos), folder / "out", during=kill)
    assert fleet.slots[0].restarts == 1
    records = assert_exactly_once(folder / "out", ["long0"])["long0"]
    lines = zone_lines(records)
    assert len({json.dumps(r, sort_keys=True) for r in lines}) == len(lines), "a zone line written twice"
    assert_zone_lines_consistent(lines)
    # The dead worker's tracks were inside "all": the sink took them out, before the replacement's frames.
    lost = [r for r in lines if r.get("reason") == "worker lost"]
    assert {r["event"] for r in lost} == {"zone_left", "zone_count"} and "all" in {r["zone"] for r in lost}, lost
    first = resumed_at(records)
    assert len(first) == 1 and seen["last"] < first[0]
    lost_at = records.index(lost[0])
    assert lost_at < next(i for i, r in enumerate(records) if r.get("frame_index") == first[0])
    # Before the kill the lines are the uninterrupted run's, in the same order.
    before = [key(r) for r in lines[:lines.index(lost[0])]]
    assert before and before == [key(r) for r in reference[:len(before)]]
    # After it, the replacement's tracks (new ids) enter the zones again.
    after = [r for r in lines[lines.index(lost[-1]) + 1:] if r["event"] == "zone_entered"]
    assert after and min(r["track_id"] for r in after) > max(r["track_id"] for r in lost if r["track_id"] >= 0)


def test_fleet_zones_naming_no_camera_is_a_one_line_error(tmp_path, videos):
    from segpost.fleet.config import load_fleet_config

    config = configure(tmp_path, videos)
    pipeline = json.loads((tmp_path / "segpost.json").read_text())
    pipeline["zones"] = {"dock-9": ZONES["long0"]}
    (tmp_path / "segpost.json").write_text(json.dumps(pipeline))
    with pytest.raises(ValueError) as info:
        load_fleet_config(config)
    assert "\n" not in str(info.value) and "'dock-9'" in str(info.value) and "no camera" in str(info.value)
