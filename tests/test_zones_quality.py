"""The synthetic zone world and its events: the truth itself, then a small scene (partly hidden,
diagonal, hovering) through the pipeline, the tracker and each rule (bench/zone_quality.py runs
the full table, supervision included)."""
from __future__ import annotations

import importlib.util

from segpost.synthetic import zones as world_module
from segpost.synthetic.zone_scoring import record, score
from segpost.synthetic.zones import ZoneWorld


def truth_of(world, kind, rounds=world_module.ROUNDS):
    cam = str(world.kinds.index(kind))
    return [(e.kind, e.body, e.direction) for e in world.truth_events(rounds) if e.camera == cam
            and e.kind != "zone_count"]


def test_truth_has_the_scripted_events():
    world = ZoneWorld(seed=3)
    assert truth_of(world, "hidden") == [("zone_entered", 0, None), ("zone_left", 0, None)]   # the wall: no events
    assert truth_of(world, "diagonal") == [("zone_entered", 1, None), ("zone_left", 1, None)]  # the sweep: none
    assert truth_of(world, "wedge") == [("zone_entered", 1, None), ("zone_left", 1, None)]     # the bar: none
    assert truth_of(world, "hover") == [("zone_entered", 0, None), ("zone_left", 0, None)]     # pokes: none
    assert truth_of(world, "dwell") == [("zone_entered", 0, None), ("zone_dwell", 0, None), ("zone_left", 0, None),
                                        ("zone_entered", 1, None), ("zone_left", 1, None)]
    lines = truth_of(world, "lines")
    assert sorted(lines) == sorted([("line_crossed", b, d) for b in (0, 1, 2) for d in ("in", "out")])


def test_small_scene_mask_rule_beats_the_bottom_centre():
    methods = ("mask", "bottom_centre") + (("supervision",) if importlib.util.find_spec("supervision") else ())
    rec = record(("hidden", "diagonal", "wedge", "hover"), seeds=[0], rounds=95, methods=methods)
    mask = score(rec, "mask")
    assert mask["f1"] >= 0.98, mask
    for kind in ("hidden", "diagonal", "wedge"):
        ours = score(rec, "mask", [kind])
        assert ours["false_changes"] == 0, (kind, ours)
        for peer in methods[1:]:
            theirs = score(rec, peer, [kind])
            assert theirs["false_changes"] > ours["false_changes"], (kind, peer, theirs)
    assert score(rec, "mask", ["hover"])["f1"] == 1.0    # pokes shorter than the inertia are no events
