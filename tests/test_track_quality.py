"""The synthetic tracking world, the MOT scoring, and segpost's tracker against the peers on it
(bench/track_quality.py runs the full table)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from segpost.synthetic.tracking import FPS, SIZE, TrackingScene
from track_harness import NAMES, SEGPOST, Frame, build_pipeline, mask_iou, record, score, table, truth_frame
from track_peers import trackers_peers

requires_trackeval = pytest.mark.skipif(
    importlib.util.find_spec("trackeval") is None or importlib.util.find_spec("trackers") is None,
    reason="scoring and the peers need TrackEval and Roboflow's trackers: pip install '.[track-eval]' (the test extra "
           "has it; .ci/run does)")


def _detections(result, camera, name):
    found = result.cameras[camera].by_class[name]
    return found.boxes.copy(), found.query_ids.copy(), np.asarray(found.masks).copy(), found.scores.copy()


def test_slot_permutation_moves_instances_between_query_slots_and_replays():
    world = TrackingScene(["slots"], seed=1)
    frames, _ = world.render(0)
    runs = []
    for _ in range(2):   # two pipelines with the same seed replay the same slots
        pipeline = build_pipeline(world, seed=5)
        runs.append([_detections(pipeline.process(frames), 0, "red") for _ in range(4)])
    for a, b in zip(*runs):
        assert np.array_equal(a[1], b[1])
    calls = runs[0]
    order = [np.argsort(c[0][:, 0]) for c in calls]     # the same objects, by position
    boxes = [c[0][o] for c, o in zip(calls, order)]
    slots = np.stack([c[1][o] for c, o in zip(calls, order)])   # [call, object]
    assert all(np.allclose(b, boxes[0]) for b in boxes), "the same frame gave other boxes"
    assert len(boxes[0]) == 2
    assert (slots != slots[0]).any(axis=0).all(), f"an object kept its query slot in every call: {slots.tolist()}"
    fixed = build_pipeline(world, seed=5, permute_slots=False)
    for _ in range(2):
        assert sorted(_detections(fixed.process(frames), 0, "red")[1]) == sorted(a.instance for a in world.actors[0]
                                                                               if a.class_index == 0)


def _alone(actor, round_index):
    canvas = np.zeros(SIZE, np.uint8)
    actor.draw(canvas, round_index, 1)
    return canvas.astype(bool)


def test_truth_is_the_visible_pixels_and_the_decoder_sees_those():
    world = TrackingScene(["crossing"], seed=0)
    pipeline = build_pipeline(world, seed=0)
    hidden = []
    for r in range(200):
        frames, (truth,) = world.render(r)
        back = [k for k in range(len(truth.objects)) if 0.2 < truth.visibility(k) < 0.8]
        if back:
            hidden.append((r, back[0]))
    assert hidden, "no object was ever partly hidden in the crossing scene"
    r, k = hidden[0]
    frames, (truth,) = world.render(r)
    actors = truth.objects
    drawn_later = np.zeros(SIZE, bool)
    for j in range(len(actors) - 1, -1, -1):
        whole = _alone(actors[j], r)
        assert np.array_equal(truth.mask(j), whole & ~drawn_later), f"object {j}: truth is not its visible pixels"
        drawn_later |= whole
    assert truth.visible[k] < 0.8 * _alone(actors[k], r).sum()
    boxes, _, masks, scores = _detections(pipeline.process(frames), 0, NAMES[actors[k].class_index])
    visible = mask_iou(truth.mask(k)[None], masks)[0]
    whole = mask_iou(_alone(actors[k], r)[None], masks)[0]
    best = int(np.argmax(visible))
    assert visible[best] > 0.75 and whole[best] < visible[best] - 0.1, (visible, whole)
    assert scores[best] < 0.9 * scores.max(), "a partly hidden object should score lower than a whole one"


def test_objects_leave_the_frame_and_come_back():
    world = TrackingScene(["leave_return"], seed=2)
    visibility = np.array([[t.visibility(k) for k in range(len(t.objects))] for t in
                           (world.render(r)[1][0] for r in range(200))])
    for k in range(visibility.shape[1]):
        v = visibility[:, k]
        edges = np.diff(np.r_[0, (v == 0).astype(int), 0])
        gaps = [(start, end) for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))
                if (v[:start] > 0.9).any() and (v[end:] > 0.9).any()]
        assert gaps, f"object {k} never left the frame whole and came back whole"


def test_bars_share_one_box_but_not_their_pixels():
    world = TrackingScene(["shared_box"], seed=3)
    pipeline = build_pipeline(world, seed=3)
    for r in range(0, 40, 7):
        frames, (truth,) = world.render(r)
        for pair in ((0, 1), (2, 3)):
            a, b = (np.array(truth.box(k)) for k in pair)
            assert np.abs(a - b).max() <= 2, f"round {r}: the bars of an X have boxes {a} and {b}"
            assert mask_iou(truth.mask(pair[0])[None], truth.mask(pair[1])[None])[0, 0] == 0
        boxes, _, masks, _ = _detections(pipeline.process(frames), 0, "blue")
        frame = truth_frame(truth, 2, masks)
        assert frame.sim.shape == (4, 4)
        # the mask IoU tells each bar from its partner; a box IoU could not
        assert (frame.sim.max(axis=1) > 0.6).all() and (np.sort(frame.sim, axis=1)[:, -2] < 0.2).all(), frame.sim


def _oracle_ids(frames):
    """Each detection gets the identity of the object it overlaps most (ids stable by design)."""
    keys = {}
    for f in frames:
        best = f.sim.argmax(axis=0) if len(f.gt) else np.zeros(f.sim.shape[1], int)
        ok = f.sim.max(axis=0) > 0.5 if len(f.gt) else np.zeros(f.sim.shape[1], bool)
        f.ids["oracle"] = np.array([keys.setdefault(f.gt[g], len(keys)) if o else -1 for g, o in zip(best, ok)])


@requires_trackeval
def test_mask_iou_scoring_counts_a_swap_of_two_bars():
    rec = record(["shared_box"], seeds=[0], rounds=30, peers={})
    rec.sequences = {key: f for key, f in rec.sequences.items() if key[2] == 2}   # the blue bars
    (frames,) = rec.sequences.values()
    _oracle_ids(frames)
    perfect = score(rec, "oracle")
    assert perfect["IDSW"] == 0 and perfect["HOTA"] > 0.85 and perfect["IDF1"] > 0.95, perfect
    for f in frames[15:]:   # from round 15 on, the two bars of the first X swap ids
        ids, pair = f.ids["oracle"], [f.sim[:, d].argmax() for d in range(f.sim.shape[1])]
        swapped = ids.copy()
        first = [d for d, g in enumerate(pair) if f.gt[g][2] in (2, 3)]
        swapped[first] = ids[first[::-1]]
        f.ids["oracle"] = swapped
    broken = score(rec, "oracle")
    assert broken["IDSW"] == 2 and broken["IDF1"] < perfect["IDF1"] - 0.1, broken


def test_dont_care_objects_are_neither_missed_nor_false_positives():
    world = TrackingScene(["occlusion"], seed=0)
    for r in range(200):
        _, (truth,) = world.render(r)
        faint = [k for k in range(len(truth.objects)) if 0 < truth.visibility(k) < 0.1]
        if faint:
            break
    else:
        pytest.fail("no object was ever almost hidden in the occlusion scene")
    k = faint[0]
    cls = truth.objects[k].class_index
    frame = truth_frame(truth, cls, truth.mask(k)[None])
    assert truth.identity(k) not in frame.gt and frame.ignored.tolist() == [True]
    assert isinstance(frame, Frame)


@requires_trackeval
def test_segpost_tracks_at_least_as_well_as_the_peers_and_keeps_crossing_bars_apart():
    """The issue's goal on a small world (2 cameras, 60 frames): HOTA at least the best peer's,
    fewer id switches where objects cross or share a box."""
    from segpost.track import TrackerConfig

    peers = trackers_peers()
    kinds = ["crossing", "shared_box"]
    rec = record(kinds, seeds=[0], rounds=60, peers=peers, track=TrackerConfig(max_age=FPS))
    results = table(rec, [SEGPOST, *peers], kinds)
    report = {t: {k: (round(r["HOTA"], 3), r["IDSW"]) for k, r in rows.items()} for t, rows in results.items()}
    best_peer = max(results[p]["overall"]["HOTA"] for p in peers)
    assert results[SEGPOST]["overall"]["HOTA"] >= best_peer, report
    switches = {t: sum(results[t][k]["IDSW"] for k in kinds) for t in results}
    assert switches[SEGPOST] < min(switches[p] for p in peers), report
    # The masks keep the bars of an X apart: by its boxes alone segpost would only about tie there.
    shared = {t: results[t]["shared_box"]["IDSW"] for t in results}
    assert shared[SEGPOST] <= min(shared[p] for p in peers) / 10, report
