"""The tracker's C++ core on the CPU twin: packed, shifted mask IoU against numpy; the association
on hand-made cases (objects sharing a box, query slots permuted, loss and return, the pool)."""
import math

import numpy as np
import pytest

import segpost
from segpost import TrackerConfig
from track_cases import FRAME, QUERIES, Rig, bar_mask, blob_rounds, box_mask, disc_mask, run_round, tracked_side

FAST = TrackerConfig(min_hits=1)


# -- mask IoU: the twin against numpy ---------------------------------------------------------------

def shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """mask moved by (dx, dy) pixels, zeros coming in, pixels going off the map lost."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def numpy_iou(a: np.ndarray, b: np.ndarray) -> np.float32:
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a) + np.count_nonzero(b) - inter
    return np.float32(inter) / np.float32(union) if union else np.float32(0)


def reference_run(size, dtype, mode, threshold, rounds=14, cameras=2, classes=2, seed=0):
    """Rounds of moving blobs through Postprocessors and a Tracker; every round's IoU matrix must
    equal numpy's on the thresholded maps, each track's last mask moved by the shift the tracker
    planned for it."""
    logit_threshold = threshold if mode is segpost.MaskMode.LOGIT else math.log(threshold / (1 - threshold))
    posts, tracker = tracked_side(size, cameras, classes, "cpu", TrackerConfig(min_hits=1, max_age=4, match_threshold=0.05),
                                  mask_mode=mode, mask_threshold=threshold)
    pool, plan = {}, tracker._core.slot_plan().copy()
    stats = {"shifted": 0, "partial": 0, "clipped": 0}
    for r, outputs in enumerate(blob_rounds(size, dtype, rounds, cameras, classes, seed)):
        results, _, _ = run_round(posts, tracker, outputs, r)
        got = tracker.mask_iou()
        max_tracks = got.shape[2]
        det_masks = []
        for c, ((_, _, maps), result) in enumerate(zip(outputs, results)):
            thresholded = maps.astype(np.float32) > logit_threshold
            records = [(f, int(q)) for f, frame in enumerate(result) for q in frame.query_ids]
            det_masks.append([thresholded[f, q] for f, q in records])
            for k, (f, _) in enumerate(records):
                for s in range(max_tracks):
                    slot = f * max_tracks + s
                    owner, _, _, dx, dy = plan[slot]
                    expected = numpy_iou(det_masks[c][k], shifted(pool[slot], dx, dy)) if owner == c else np.float32(0)
                    assert got[c, k, s] == expected, (r, c, k, s, got[c, k, s], expected)
                    if owner == c:
                        moved = shifted(pool[slot], dx, dy)
                        stats["shifted"] += (dx, dy) != (0, 0)
                        stats["partial"] += 0 < expected < 1
                        stats["clipped"] += np.count_nonzero(moved) < np.count_nonzero(pool[slot])
        # The masks the tracker planned to keep (its slot plan), as the next round's reference.
        plan = tracker._core.slot_plan().copy()
        for slot, (_, source_class, source_k, _, _) in enumerate(plan):
            if source_class >= 0:
                pool[slot] = det_masks[source_class][source_k]
    return stats


@pytest.mark.parametrize("size,dtype,mode,threshold", [
    ((64, 64), np.float32, segpost.MaskMode.LOGIT, 0.0),
    ((37, 45), np.float16, segpost.MaskMode.LOGIT, 0.7),        # rows of 2 words, the last one ragged
    ((40, 100), np.float32, segpost.MaskMode.PROBABILITY, 0.3),  # threshold in logit space: -0.847
])
def test_twin_mask_iou_equals_numpy_with_shifted_tracks(size, dtype, mode, threshold):
    stats = reference_run(size, dtype, mode, threshold)
    # The run exercised what it is meant to: moved masks, partial overlaps, masks pushed off the map.
    assert stats["shifted"] > 20 and stats["partial"] > 20 and stats["clipped"] > 0, stats


# -- association on hand-made cases ---------------------------------------------------------------

def crossing_bars(t: int):
    """Two bars crossing as an X, sliding together: both always have the same box."""
    cx = 20 + 1.5 * t
    return {"a": (bar_mask(cx, 32, 40, 5, 45), 0.9), "b": (bar_mask(cx, 32, 40, 5, -45), 0.9)}


def identity_swaps(config, views, seed=1):
    """How often the names' track ids changed over the frames (slots shuffled every frame)."""
    rig, rng = Rig(config), np.random.default_rng(seed)
    seen, swaps = {}, 0
    for t, view in enumerate(views):
        ids, *_ = rig.step([[view]], frame_ids=[t], rng=rng)
        for (_, _, name), track_id in ids.items():
            swaps += name in seen and seen[name] != track_id
            seen[name] = track_id
    return swaps, seen


def test_objects_sharing_one_box_keep_their_ids_by_their_masks():
    views = [crossing_bars(t) for t in range(24)]
    swaps, ids = identity_swaps(TrackerConfig(min_hits=1), views)
    assert swaps == 0 and sorted(ids.values()) == [1, 2]
    # Negative control: boxes alone cannot tell the bars apart, so the shuffled slots swap them.
    swaps, _ = identity_swaps(TrackerConfig(min_hits=1, mask_weight=0.0), views)
    assert swaps > 0


def test_query_slot_permutation_keeps_ids():
    views = [{"left": (disc_mask(14 + t, 20, 7), 0.95), "right": (disc_mask(50 - t, 44, 7), 0.8)} for t in range(20)]
    for weight in (0.0, 0.5, 1.0):
        swaps, ids = identity_swaps(TrackerConfig(min_hits=1, mask_weight=weight), views)
        assert swaps == 0 and sorted(ids.values()) == [1, 2], weight


def test_lost_then_found_within_max_age_keeps_its_id_and_after_it_gets_a_new_one():
    for gap, same in ((5, True), (6, False)):
        rig = Rig(TrackerConfig(min_hits=1, max_age=5))
        obj = {"o": (box_mask(20, 20, 34, 30), 0.9)}
        events = []
        for t in range(5):
            ids, ev, *_ = rig.step([[obj]], frame_ids=[t])
            events += ev
        first = ids[(0, 0, "o")]
        for t in range(5, 5 + gap):
            _, ev, *_ = rig.step([[{}]], frame_ids=[t])
            events += ev
        ids, ev, *_ = rig.step([[obj]], frame_ids=[5 + gap])
        events += ev
        assert (ids[(0, 0, "o")] == first) is same, gap
        ended = [e for e in events if e.kind == "track_ended"]
        if same:
            assert not ended
        else:
            assert ids[(0, 0, "o")] == first + 1
            assert [(e.track_id, e.first_frame, e.last_frame, e.frames_seen) for e in ended] == [(first, 0, 4, 5)]


def test_a_lost_track_follows_its_motion():
    """An object moving steadily, unseen for 3 frames, is found where its velocity took it."""
    rig = Rig(TrackerConfig(min_hits=1, max_age=10, mask_weight=1.0))
    ids = [rig.step([[{"o": (disc_mask(8 + 3 * t, 32, 5), 0.9)}]], frame_ids=[t])[0][(0, 0, "o")]
           for t in range(6)]
    for t in range(6, 9):
        rig.step([[{}]], frame_ids=[t])
    found, *_ = rig.step([[{"o": (disc_mask(8 + 3 * 9, 32, 5), 0.9)}]], frame_ids=[9])
    assert set(ids) == {1} and found[(0, 0, "o")] == 1
    # Without motion the old mask (moved 12 px since) no longer overlaps: mask IoU alone loses it.
    plan = rig.tracker._core.slot_plan()
    assert plan[0, 3] > 0   # the shift planned for the next frame points the way it moves


def test_ids_increase_per_camera_and_are_never_reused():
    rig, rng = Rig(TrackerConfig(min_hits=2, max_age=2), cameras=2), np.random.default_rng(4)
    spawn = lambda: (rng.uniform(8, 56), rng.uniform(8, 56))  # noqa: E731
    alive = [{}, {}]
    issued = [[], []]
    ended = set()
    for t in range(60):
        for cam in (0, 1):
            for name in list(alive[cam]):
                if rng.random() < 0.1:
                    del alive[cam][name]
            if rng.random() < 0.3:
                alive[cam][f"o{t}"] = spawn()
        views = [[{n: (disc_mask(x, y, 5), 0.9) for n, (x, y) in alive[cam].items()}] for cam in (0, 1)]
        ids, events, *_ = rig.step(views, frame_ids=[t, t])
        for (cam, _, name), track_id in ids.items():
            assert (cam, track_id) not in ended
            if track_id not in issued[cam]:
                assert not issued[cam] or track_id > max(issued[cam])
                issued[cam].append(track_id)
        ended |= {(e.camera, e.track_id) for e in events if e.kind == "track_ended"}
    assert len(issued[0]) > 10 and len(ended) > 5
    assert rig.tracker.next_id(0) > max(issued[0])
    with pytest.raises(ValueError, match="would reuse"):
        rig.tracker.set_next_id(0, 1)
    rig.tracker.set_next_id(1, 1000)   # a restarted worker resuming camera 1
    ids, *_ = rig.step([[{}], [{"new": (disc_mask(30, 30, 6), 0.9)}]])
    assert ids[(1, 0, "new")] == 1000


def test_min_hits_confirms_and_tentative_tracks_vanish_silently():
    rig = Rig(TrackerConfig(min_hits=3))
    steady = (box_mask(5, 5, 20, 20), 0.9)
    flicker = (box_mask(40, 40, 55, 55), 0.9)
    ids0, ev0, *_ = rig.step([[{"s": steady, "f": flicker}]], frame_ids=[10])
    ids1, ev1, *_ = rig.step([[{"s": steady}]], frame_ids=[11])
    ids2, ev2, *_ = rig.step([[{"s": steady, "g": flicker}]], frame_ids=[12])
    assert ids0[(0, 0, "s")] == ids1[(0, 0, "s")] == ids2[(0, 0, "s")] == 1
    assert ids0[(0, 0, "f")] == 2 and ids2[(0, 0, "g")] == 3   # the tentative's id is not reused
    assert not ev0 and not ev1
    assert [(e.kind, e.track_id, e.first_frame, e.last_frame, e.frames_seen) for e in ev2] == [
        ("track_started", 1, 10, 12, 3)]
    ended = rig.tracker.finish()
    assert [(e.kind, e.track_id) for e in ended] == [("track_ended", 1)]   # the tentative 3 gives no event
    assert rig.tracker.live_tracks(0) == 0


def test_low_scores_only_continue_confirmed_tracks():
    rig = Rig(TrackerConfig(min_hits=1, high_score=0.5, new_track_score=0.6))
    obj = box_mask(10, 10, 30, 30)
    for t in range(3):
        rig.step([[{"o": (obj, 0.9)}]])
    ids, *_ = rig.step([[{"o": (obj, 0.3), "weak": (box_mask(40, 40, 60, 60), 0.3),
                          "middling": (box_mask(40, 5, 60, 20), 0.55)}]])
    assert ids[(0, 0, "o")] == 1              # stage two: a low score continues its track
    assert ids[(0, 0, "weak")] == -1          # ... but starts none
    assert ids[(0, 0, "middling")] == -1      # high, but below new_track_score


def test_a_full_pool_gives_up_its_oldest_lost_track_then_refuses():
    rig = Rig(TrackerConfig(min_hits=1, max_tracks=2, max_age=30))
    a, b, c = (box_mask(x, 10, x + 10, 20) for x in (2, 25, 48))
    ids, *_ = rig.step([[{"a": (a, 0.9), "b": (b, 0.9), "c": (c, 0.9)}]])
    assert sorted(ids.values()) == [-1, 1, 2] and rig.tracker.refused(0) == 1
    rig.step([[{"a": (a, 0.9)}]])             # b is lost now
    ids, events, *_ = rig.step([[{"a": (a, 0.9), "c": (c, 0.9)}]])
    assert ids[(0, 0, "c")] == 3
    assert [(e.kind, e.track_id) for e in events] == [("track_ended", 2), ("track_started", 3)]
    assert rig.tracker.refused(0) == 1


def test_classes_and_cameras_never_share_tracks():
    rig = Rig(TrackerConfig(min_hits=1), classes=2, cameras=2)
    same = (disc_mask(30, 30, 8), 0.9)
    for _ in range(3):
        ids, *_ = rig.step([[{"x": same}, {"x": same}], [{"x": same}, {"x": same}]])
    assert ids == {(0, 0, "x"): 1, (0, 1, "x"): 2, (1, 0, "x"): 1, (1, 1, "x"): 2}
    iou = rig.tracker.mask_iou()
    assert iou[0, :2].max() == 1.0   # each detection sees its own class's track only (one 1.0 per row)
    assert (iou[0, :2] == 1.0).sum() == 2 and (iou[1, :2] == 1.0).sum() == 2


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_tracks=0), "max_tracks"), (dict(max_tracks=5000), "max_tracks"), (dict(max_age=-1), "max_age"),
    (dict(min_hits=0), "min_hits"), (dict(min_hits=2.5), "min_hits"), (dict(high_score=float("nan")), "high_score"),
    (dict(mask_weight=1.5), "mask_weight"), (dict(match_threshold=0), "match_threshold"),
    (dict(new_track_score=-0.1), "new_track_score"), (dict(max_age=True), "max_age"),
])
def test_bad_config_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"TrackerConfig.{message}"):
        TrackerConfig(**kwargs)


def test_config_from_file_values():
    assert TrackerConfig.from_value(True) == TrackerConfig() and TrackerConfig.from_value(False) is None
    assert TrackerConfig.from_value({"max_age": 5}).max_age == 5
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_ages'\]"):
        TrackerConfig.from_value({"max_ages": 5})
    with pytest.raises(ValueError, match="must be true, false or an object"):
        TrackerConfig.from_value("yes")


def test_protocol_errors_are_clear():
    rig = Rig(FAST, classes=2, cameras=2)
    post, tracker = rig.posts, rig.tracker
    with pytest.raises(ValueError, match="class 0 was not enqueued"):
        tracker.update(post, [0, 0], [FRAME] * 2)
    rig.step([[{}, {}], [{}, {}]])
    logits, boxes, masks = (np.full((2, QUERIES), -9.0, np.float32), np.zeros((2, QUERIES, 4), np.float32),
                            np.zeros((2, QUERIES, 64, 64), np.float32))
    post[0].enqueue(logits, None, boxes, masks, [FRAME] * 2)
    tracker.enqueue(0, post[0], masks, [0, 1])
    with pytest.raises(ValueError, match="already enqueued"):
        tracker.enqueue(0, post[0], masks, [0, 1])
    post[1].enqueue(logits, None, boxes, masks, [FRAME] * 2)
    with pytest.raises(ValueError, match="same cameras"):
        tracker.enqueue(1, post[1], masks, [1, 0])
    with pytest.raises(ValueError, match="camera 5 outside"):
        tracker.enqueue(1, post[1], masks, [0, 5])
    with pytest.raises(ValueError, match="class 2 outside"):
        tracker.enqueue(2, post[1], masks, [0, 1])
    with pytest.raises(ValueError, match="camera must be an int"):
        tracker.finish(2)
    other = segpost.Postprocessor(max_frames=2, num_queries=QUERIES, mask_size=(32, 32), device="cpu")
    with pytest.raises(ValueError, match="mask size differs"):
        tracker.enqueue(1, other, masks, [0, 1])
    tracker.enqueue(1, post[1], masks, [0, 1])
    for p in post:
        p.result()
    with pytest.raises(ValueError, match="one frame id and size per frame"):
        tracker.update(post, [0], [FRAME])
    tracker.update(post, [0, 0], [FRAME] * 2)   # still usable
