"""Zones and lines: config validation (one-line errors naming the zone) and the per-track rules
of ZoneMonitor on hand-made shares (inertia, dwell, counts and overcrowding, line crossings)."""
import numpy as np
import pytest

from segpost.zones import LineConfig, ZoneConfig, ZoneMonitor, ZoneSet

SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def one_line_error(value, **known):
    with pytest.raises(ValueError) as info:
        ZoneSet.from_value(value, **known)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("entry, words", [
    ({"name": "bay", "polygon": [[0.1, 0.1], [0.5, 0.5]]}, ["'bay'", "at least 3"]),
    ({"name": "bow", "polygon": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}, ["'bow'", "self-intersecting"]),
    ({"name": "spike", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.3, 0.1]]}, ["'spike'", "fold back"]),
    ({"name": "flat", "polygon": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}, ["'flat'"]),
    ({"name": "out", "polygon": [[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]}, ["'out'", "outside [0, 1]"]),
    ({"name": "nan", "polygon": [[0.1, 0.1], [float("nan"), 0.1], [0.5, 0.5]]}, ["'nan'"]),
    ({"name": "zero", "polygon": SQUARE, "min_overlap": 0}, ["'zero'", "min_overlap"]),
    ({"name": "big", "polygon": SQUARE, "min_overlap": 1.5}, ["'big'", "min_overlap"]),
    ({"name": "lazy", "polygon": SQUARE, "inertia": 0}, ["'lazy'", "inertia"]),
    ({"name": "dwell", "polygon": SQUARE, "dwell_seconds": -1}, ["'dwell'", "dwell_seconds"]),
    ({"name": "crowd", "polygon": SQUARE, "max_count": 1.5}, ["'crowd'", "max_count"]),
    ({"name": "typo", "polygon": SQUARE, "min_overlp": 0.3}, ["'typo'", "min_overlp"]),
    ({"name": "both", "polygon": SQUARE, "line": [[0, 0], [1, 1]]}, ["'both'", "exactly one"]),
    ({"name": "door", "line": [[0.1, 0.5], [0.9, 0.5]], "inward": "left"}, ["'door'", "along the line"]),
    ({"name": "door", "line": [[0.1, 0.5], [0.1, 0.5]]}, ["'door'", "same"]),
    ({"name": "door", "line": [[0.1, 0.5], [0.9, 0.5]], "inward": "north"}, ["'door'", "inward"]),
    ({"name": "door", "line": [[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]]}, ["'door'", "exactly 2"]),
])
def test_bad_zone_is_a_one_line_error_naming_it(entry, words):
    message = one_line_error({"0": [entry]})
    assert "zones['0']" in message
    for word in words:
        assert word in message, message


def test_unknown_camera_and_class_and_twice_named():
    assert "no camera 'lobby'" in one_line_error({"lobby": [{"name": "a", "polygon": SQUARE}]}, cameras=["0", "1"])
    message = one_line_error({"0": [{"name": "a", "polygon": SQUARE, "classes": ["dog"]}]}, class_names=["person"])
    assert "'a'" in message and "dog" in message
    assert "named twice" in one_line_error({"0": [{"name": "a", "polygon": SQUARE}, {"name": "a", "polygon": SQUARE}]})


def test_good_config_parses_and_lines_give_two_regions():
    zones = ZoneSet.from_value({"0": [{"name": "a", "polygon": SQUARE, "classes": ["person"]},
                                      {"name": "door", "line": [[0.5, 0.1], [0.5, 0.9]], "inward": [0.9, 0.5]}]},
                               cameras=["0"], class_names=["person", "cart"])
    a, door = zones.cameras["0"]
    assert isinstance(a, ZoneConfig) and isinstance(door, LineConfig)
    assert a.polygon == tuple(map(tuple, SQUARE)) and a.classes == ("person",)
    assert len(zones.regions("0")) == 3 and zones.max_regions == 3
    assert door.inward_normal() == (1.0, 0.0)    # towards the point [0.9, 0.5]: right


def zone_set(**zone):
    return ZoneSet.from_value({"0": [{"name": "z", "polygon": SQUARE, **zone},
                                     {"name": "door", "line": [[0.5, 0.1], [0.5, 0.9]], "inward": "right"}]})


def feed(monitor, frames, fps=10.0):
    """frames: per frame a list of (class, track_id, zone share, inward share, outward share)."""
    events = []
    for f, detections in enumerate(frames):
        classes = [d[0] for d in detections]
        ids = [d[1] for d in detections]
        shares = np.array([d[2:] for d in detections], np.float32).reshape(len(detections), 3)
        events += monitor.update("0", f, f / fps, classes, ids, shares)
    return events


def kinds(events, kind):
    return [e for e in events if e.kind == kind]


def test_inertia_ignores_short_pokes_and_stamps_the_first_frame():
    monitor = ZoneMonitor(zone_set(inertia=3, min_overlap=0.3))
    shares = [0.0] * 3 + [0.9] * 2 + [0.1] * 3 + [0.3] * 6 + [0.0] * 2 + [0.5] + [0.0] * 5
    events = feed(monitor, [[("p", 7, s, 0, 0)] for s in shares])
    entered, left = kinds(events, "zone_entered"), kinds(events, "zone_left")
    assert [(e.frame, e.track_id, e.zone) for e in entered] == [(8, 7, "z")]   # 0.3 >= min_overlap counts
    assert [e.frame for e in left] == [17]    # the two-frame dip at 14 and the one-frame poke are no exit
    assert entered[0].time == pytest.approx(0.8)


def test_dwell_once_per_stay_and_only_when_long_enough():
    monitor = ZoneMonitor(zone_set(inertia=1, dwell_seconds=2.0))
    shares = [0.0] * 2 + [1.0] * 25 + [0.0] * 3 + [1.0] * 15 + [0.0] * 2
    events = feed(monitor, [[("p", 1, s, 0, 0)] for s in shares])
    dwell = kinds(events, "zone_dwell")
    assert [(e.frame, e.seconds) for e in dwell] == [(22, pytest.approx(2.0))]


def test_no_dwell_while_an_exit_is_pending():
    """A stay of 1.9 s whose exit is confirmed only inertia frames later: no dwell of 2 s."""
    monitor = ZoneMonitor(zone_set(inertia=3, dwell_seconds=2.0))
    shares = [0.0] * 2 + [1.0] * 19 + [0.0] * 6
    events = feed(monitor, [[("p", 1, s, 0, 0)] for s in shares])
    assert not kinds(events, "zone_dwell")
    assert [e.frame for e in kinds(events, "zone_left")] == [21]


def test_counts_and_overcrowding_per_class():
    monitor = ZoneMonitor(zone_set(inertia=1, max_count=1))
    frames = [[("p", 1, 1, 0, 0), ("p", 2, 0, 0, 0), ("cart", 3, 1, 0, 0)],
              [("p", 1, 1, 0, 0), ("p", 2, 1, 0, 0), ("cart", 3, 1, 0, 0)],
              [("p", 1, 0, 0, 0), ("p", 2, 1, 0, 0), ("cart", 3, 1, 0, 0)]]
    counts = [(e.frame, e.class_name, e.count, e.overcrowded) for e in kinds(feed(monitor, frames), "zone_count")]
    assert counts == [(0, "cart", 1, False), (0, "p", 1, False), (1, "p", 2, True), (2, "p", 1, False)]
    assert monitor.occupancy("0") == {("z", "p"): 1, ("z", "cart"): 1}
    ended = monitor.end_track("0", 2)
    assert [(e.kind, e.track_id, e.frame) for e in ended][:1] == [("zone_left", 2, 2)]
    assert monitor.occupancy("0")[("z", "p")] == 0


def test_classes_filter():
    monitor = ZoneMonitor(zone_set(inertia=1, classes=["p"]))
    events = feed(monitor, [[("cart", 1, 1, 0, 0)]] * 3)
    assert not kinds(events, "zone_entered")


def test_line_crossings_both_ways_with_inertia():
    monitor = ZoneMonitor(zone_set())
    # Out side first (no event), a 2-frame flicker in (no crossing), in for good, then out again;
    # frames without enough of the mask in the span (sum < 0.3) are no evidence.
    sides = [(0, 0.8)] * 3 + [(0.7, 0.3)] * 2 + [(0.2, 0.8)] * 2 + [(0.6, 0.4)] * 2 + [(0.1, 0.1)] + [(0.9, 0.1)] * 3 \
        + [(0.3, 0.7)] * 4
    events = feed(monitor, [[("p", 4, 0, i, o)] for i, o in sides])
    crossed = [(e.frame, e.direction, e.zone) for e in kinds(events, "line_crossed")]
    assert crossed == [(7, "in", "door"), (13, "out", "door")]


def test_zone_event_record():
    from segpost.io.records import zone_event_record

    monitor = ZoneMonitor(zone_set(inertia=1, max_count=0))
    events = feed(monitor, [[("p", 5, 1.0, 0, 0)]])
    entered, count = zone_event_record(events[0], 0, "cam.mp4"), zone_event_record(events[1], 0, "cam.mp4")
    assert {k: entered[k] for k in ("event", "camera", "zone", "class", "track_id", "frame", "frame_time")} == \
        {"event": "zone_entered", "camera": 0, "zone": "z", "class": "p", "track_id": 5, "frame": 0, "frame_time": 0.0}
    assert (count["event"], count["count"], count["overcrowded"], count["track_id"]) == ("zone_count", 1, True, -1)
    assert "direction" not in count and "seconds" not in entered
