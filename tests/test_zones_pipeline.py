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
