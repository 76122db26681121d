"""The tracker's arithmetic on the CPU twin: packed, shifted mask IoU against numpy, each track's
mask moved by its object's true motion, and the assignment against brute force
(tests/test_track.py: the association on hand-made cases)."""
import math

import numpy as np
import pytest

import segpost
from segpost import TrackerConfig
from track_cases import Rig, blob_rounds, box_mask, run_round, tracked_side

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
    planned for it (the arithmetic; whether the planned shift follows the object is
    test_track_masks_move_with_the_objects_true_motion's)."""
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


# -- the shift itself: against the objects' true motion ---------------------------------------------

# (dy, dx) low-res pixels a frame. The map is not square and the frame's scale differs per axis
# (240 / 80 = 3 rows, 320 / 128 = 2.5 columns a pixel), so a sign or an axis mixed up shows.
MOTIONS = {"still": (0, 0), "down": (2, 0), "up": (-3, 0), "right": (0, 2), "left": (0, -3),
           "down-right": (2, 2), "up-left": (-2, -1), "down-left": (1, -3), "up-right": (-3, 2)}
MOTION_MAP, MOTION_FRAME = (80, 128), (240, 320)
SETTLED, UNSEEN, FRAMES = 8, (12, 13), 22   # the filter has the velocity by SETTLED; the object hides in UNSEEN


def moving_box(frame: int, dy: int, dx: int) -> np.ndarray:
    """A 9 x 11 box passing the map's centre halfway through, moving (dy, dx) a frame."""
    cy, cx = 40 + dy * (frame - FRAMES // 2), 64 + dx * (frame - FRAMES // 2)
    return box_mask(cx - 5, cy - 4, cx + 6, cy + 5, size=MOTION_MAP)


@pytest.mark.parametrize("motion", MOTIONS)
def test_track_masks_move_with_the_objects_true_motion(motion):
    """Once the filter has the velocity, each detection's mask IoU with its track equals numpy's IoU
    of the detection with the track's last mask moved by the object's true motion: (dy, dx) for a
    frame, 3 (dy, dx) after two frames unseen. The reference comes from the motion drawn here,
    never from the tracker's planned shift, so a shift the wrong way or along the wrong axis fails."""
    dy, dx = MOTIONS[motion]
    rig = Rig(TrackerConfig(min_hits=1, max_age=4), size=MOTION_MAP, frame=MOTION_FRAME)
    last, checked = None, 0
    for f in range(FRAMES):
        if f in UNSEEN:
            rig.step([[{}]], frame_ids=[f])
            continue
        mask = moving_box(f, dy, dx)
        ids, *_ = rig.step([[{"o": (mask, 0.9)}]], frame_ids=[f])
        assert ids == {(0, 0, "o"): 1}, (f, ids)
        row = rig.tracker.mask_iou()[0, 0]   # this detection against every slot of camera 0
        assert rig.tracker.live_tracks(0) == 1 and np.count_nonzero(row) <= 1, (f, row)
        if f >= SETTLED:
            moved = f - last[0]
            expected = numpy_iou(mask, shifted(last[1], dx * moved, dy * moved))
            assert expected == 1, (f, expected)   # the box stays inside the map: the reference is exact
            assert row.max() == expected, (motion, f, moved, row.max(), expected)
            checked += 1
        last = (f, mask)
    assert checked == FRAMES - SETTLED - len(UNSEEN), checked


# -- the assignment: against brute force ----------------------------------------------------------

def best_total(cost, limit):
    """The least total over every partial matching of feasible pairs (cost <= limit), each row or
    column left out costing limit / 2: lapjv's cost_limit, as ByteTrack uses it."""
    rows, cols = cost.shape

    def search(i, used):
        if i == rows:
            return (cols - len(used)) * limit / 2
        best = limit / 2 + search(i + 1, used)
        for j in range(cols):
            if j not in used and cost[i, j] <= limit:
                best = min(best, cost[i, j] + search(i + 1, used | {j}))
        return best

    return search(0, frozenset())


def test_assignment_is_optimal_with_the_cost_limit():
    rng = np.random.default_rng(7)
    for trial in range(300):
        rows, cols = rng.integers(0, 6, 2)
        cost = rng.uniform(0, 1.2, (rows, cols))
        cost[rng.random((rows, cols)) < 0.4] = 5.0   # infeasible pairs
        limit = float(rng.choice([0.5, 0.8, 0.9]))
        got = segpost._ext.solve_assignment(cost, limit)
        pairs = [(i, j) for i, j in enumerate(got) if j >= 0]
        assert len({j for _, j in pairs}) == len(pairs) and all(cost[i, j] <= limit for i, j in pairs)
        total = sum(cost[i, j] for i, j in pairs) + (rows + cols - 2 * len(pairs)) * limit / 2
        assert total == pytest.approx(best_total(cost, limit), abs=1e-9), (trial, cost, limit, got)
