"""PipelineConfig(zones=...): the pipeline computes the zones in its round and returns the events
(RoundResult.zone_events), the same as PipelineZones driven from outside; finish_zones closes
the tracks finish_tracks ended."""
import pytest

from segpost.synthetic.zone_scoring import build_pipeline
from segpost.synthetic.zones import ZoneWorld
from segpost.zones import PipelineZones


def test_pipeline_zone_events_match_the_outside_hook_and_the_truth():
    world = ZoneWorld(("hidden", "diagonal"), seed=0)
    inside, _ = build_pipeline(world, seed=0, zones=world.zones)
    outside, _ = build_pipeline(world, seed=0)
    hook = PipelineZones(world.zones, outside)
    got, expected = [], []
    for r in range(60):
        frames, _ = world.render(r)
        result = inside.process(frames)
        got += [(e.kind, e.camera, e.zone, e.track_id, e.frame) for e in result.zone_events]
        other = outside.process(frames)
        hook.enqueue(sorted(other.cameras))
        expected += [(e.kind, e.camera, e.zone, e.track_id, e.frame)
                     for e in hook.events(other, {c: r for c in other.cameras}, {c: 0.0 for c in other.cameras})]
    assert got == expected
    truth = [(e.kind, e.camera, e.frame) for e in world.truth_events(60) if e.kind == "zone_entered"]
    entered = [(k, c, f) for k, c, _, _, f in got if k == "zone_entered"]
    assert len(entered) == len(truth) == 2
    assert all(abs(f - t[2]) <= 2 and k == t[0] and c == t[1] for (k, c, f), t in zip(sorted(entered), sorted(truth)))
    ended = inside.finish_tracks()
    left = inside.finish_zones(ended)
    assert {(e.kind, e.camera) for e in left} == {("zone_left", "0"), ("zone_left", "1"), ("zone_count", "0"),
                                                   ("zone_count", "1")}   # both still inside at frame 59


def test_zones_need_tracking_and_known_classes():
    world = ZoneWorld(("hidden",), seed=0)
    pipeline, _ = build_pipeline(world, seed=0)
    with pytest.raises(ValueError, match="unknown class"):
        PipelineZones({"0": [{"name": "a", "polygon": [[0, 0], [1, 0], [1, 1]], "classes": ["dog"]}]}, pipeline)
    pipeline.tracker = None
    with pytest.raises(ValueError, match="tracking"):
        PipelineZones(world.zones, pipeline)


def test_new_zones_count_the_tracks_already_confirmed():
    """Zones replaced between two rounds (the live page's editor): the tracks inside the old zones
    leave them, and tracks confirmed before the swap enter a new zone around them at once (not
    only tracks born after it)."""
    from segpost.zones import ZoneSet
    from segpost.synthetic.zone_scoring import CLASS_NAMES

    world = ZoneWorld(("hidden", "diagonal"), seed=0)
    pipeline, _ = build_pipeline(world, seed=0, zones=world.zones)
    started = set()
    for r in range(60):
        frames, _ = world.render(r)
        result = pipeline.process(frames)
        started |= {(e.camera, e.track_id) for e in result.track_events if e.kind == "track_started"}
    everywhere = [{"name": "everywhere", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia": 1}]
    pipeline.zones.request(ZoneSet.from_value({"0": everywhere, "1": everywhere}, class_names=CLASS_NAMES))
    swapped = pipeline.zones.apply_requested()
    assert {(e.kind, e.camera) for e in swapped} == {("zone_left", "0"), ("zone_left", "1"), ("zone_count", "0"),
                                                     ("zone_count", "1")}   # both were inside at frame 59
    frames, _ = world.render(60)
    result = pipeline.process(frames)
    entered = {(int(e.camera), e.track_id) for e in result.zone_events if e.kind == "zone_entered"}
    assert entered and entered <= started, (entered, started)
    assert {c for c, _ in entered} == {0, 1}
