"""The tracker's association on the CPU twin, on hand-made cases: objects sharing a box, query
slots permuted, loss and return, objects partly hidden or leaving the frame, turning bars, the pool
(tests/test_track_math.py: the mask IoU and the assignment themselves)."""
import numpy as np
import pytest

import segpost
from segpost import TrackerConfig
from track_cases import FRAME, QUERIES, Rig, bar_mask, box_mask, disc_mask

FAST = TrackerConfig(min_hits=1)


# -- association on hand-made cases ---------------------------------------------------------------

def crossing_bars(t: int):
    """Two bars crossing as an X, sliding together: both always have the same box."""
    cx = 20 + 1.5 * t
    return {"a": (bar_mask(cx, 32, 40, 5, 45), 0.9), "b": (bar_mask(cx, 32, 40, 5, -45), 0.9)}


def ids_by_name(config, views, seed=1, **rig):
    """Each name's track id in every frame it was seen (one camera and class, slots shuffled every
    frame); `rig`: Rig's mask size and frame size."""
    rig, rng = Rig(config, **rig), np.random.default_rng(seed)
    seen = {}
    for t, view in enumerate(views):
        ids, *_ = rig.step([[view]], frame_ids=[t], rng=rng)
        for (_, _, name), track_id in ids.items():
            seen.setdefault(name, []).append(track_id)
    return seen


def identity_swaps(config, views, seed=1):
    """How often the names' track ids changed over the frames, and each name's last id."""
    seen = ids_by_name(config, views, seed)
    return sum(a != b for ids in seen.values() for a, b in zip(ids, ids[1:])), {n: ids[-1] for n, ids in seen.items()}


def tracked(ids):
    """The track ids an object had (-1, frames without a track, left out)."""
    return sorted({i for i in ids if i >= 0})


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


def test_skipped_frames_advance_the_prediction_by_the_frame_gap():
    """on_change shows the tracker a camera's frames with gaps (frame ids 6, then 10): its motion
    model steps once per camera frame, not once per call. Boxes alone (mask_weight 0): the object,
    4 px a frame, lost at frame 6, is found at frame 10 only where 5 frames of motion took it."""
    rig = Rig(TrackerConfig(min_hits=1, max_age=10, mask_weight=0.0))
    ids = [rig.step([[{"o": (disc_mask(6 + 4 * t, 32, 5), 0.9)}]], frame_ids=[t])[0][(0, 0, "o")] for t in range(6)]
    rig.step([[{}]], frame_ids=[6])
    found, *_ = rig.step([[{"o": (disc_mask(6 + 4 * 10, 32, 5), 0.9)}]], frame_ids=[10])
    assert set(ids) == {1} and found[(0, 0, "o")] == 1


def test_after_a_gap_a_standing_object_that_moved_keeps_its_id():
    """A standing object (no velocity) is next seen 4 frames later 12 px away: no box overlap, but
    within the reach of 4 frames (half its size a frame), so the same track, not a new one; a
    detection beyond that reach starts its own."""
    rig = Rig(TrackerConfig(min_hits=1, max_age=10))
    ids = [rig.step([[{"o": (disc_mask(12, 32, 5), 0.9)}]], frame_ids=[t])[0][(0, 0, "o")] for t in range(4)]
    found, *_ = rig.step([[{"o": (disc_mask(24, 32, 5), 0.9)}]], frame_ids=[7])
    assert set(ids) == {1} and found[(0, 0, "o")] == 1
    far, *_ = rig.step([[{"o": (disc_mask(60, 32, 5), 0.9)}]], frame_ids=[11])   # 36 px in 4 frames
    assert far[(0, 0, "o")] == 2


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


def test_low_scores_continue_confirmed_and_lost_tracks_only():
    rig = Rig(TrackerConfig(min_hits=1, high_score=0.5, new_track_score=0.6))
    obj = box_mask(10, 10, 30, 30)
    for t in range(3):
        rig.step([[{"o": (obj, 0.9)}]])
    ids, *_ = rig.step([[{"o": (obj, 0.3), "weak": (box_mask(40, 40, 60, 60), 0.3),
                          "middling": (box_mask(40, 5, 60, 20), 0.55)}]])
    assert ids[(0, 0, "o")] == 1              # stage two: a low score continues its track
    assert ids[(0, 0, "weak")] == -1          # ... but starts none
    assert ids[(0, 0, "middling")] == -1      # high, but below new_track_score
    rig.step([[{}]])                          # o is lost now
    ids, *_ = rig.step([[{"o": (obj, 0.3)}]])
    assert ids[(0, 0, "o")] == 1              # stage two offers low scores to lost tracks too
    rig = Rig(TrackerConfig(min_hits=3))
    rig.step([[{"t": (obj, 0.9)}]])           # tentative
    ids, *_ = rig.step([[{"t": (obj, 0.3)}]])
    assert ids[(0, 0, "t")] == -1             # ... but not to tentative ones


def test_a_bar_of_an_x_missed_for_a_frame_keeps_its_id_when_it_comes_back_partly_visible():
    """Two bars sharing one box: a is missed for a frame (its track is lost), then comes back
    partly visible (a low score) while b is hidden. b's track must not take it: the low score goes
    to every track it may continue, and a's own one matches best."""
    views = [crossing_bars(t) for t in range(12)]
    views[5] = {"b": views[5]["b"]}
    views[6] = {"a": (views[6]["a"][0], 0.3)}
    ids = ids_by_name(TrackerConfig(min_hits=1), views)
    assert tracked(ids["a"]) == [1] and tracked(ids["b"]) == [2], ids


def test_an_object_that_left_the_frame_comes_back_by_the_edge_it_left():
    """Out of the frame for 5 frames, then back the way it went: its lost track waited at the edge
    (the predicted centre stays inside the frame) instead of moving on out of it."""
    views = []
    for t in range(20):
        mask = disc_mask(40 + 3 * min(t, 24 - t), 30, 6)   # out from x = 70 on (the map is 64 wide)
        views.append({"o": (mask, 0.9)} if mask.sum() >= 4 else {})
    assert sum(not v for v in views) == 5
    assert tracked(ids_by_name(TrackerConfig(min_hits=1), views)["o"]) == [1]


def passing_behind(speed, width, start, size, radius, y, frames):
    """A disc passing behind a band `width` low-res pixels wide in the middle of the map (of
    another class: not in the views), narrower than the disc; scored by its visible share, as a
    detector scores a partly hidden object."""
    views = []
    occluder = (np.abs(np.arange(size[1]) + 0.5 - size[1] / 2) < width / 2)[None, :]
    for t in range(frames):
        whole = disc_mask(start + speed * t, y, radius, size=size)
        seen = whole & ~occluder
        share = seen.sum() / whole.sum()
        views.append({"o": (seen, round(0.95 * share, 2))} if share > 0.05 else {})
    return views


@pytest.mark.parametrize("speed,start", [(2.0, 20.5), (2.4, 20), (2.4, 21)])
def test_partly_hidden_detections_do_not_shrink_a_track_to_a_sliver(speed, start):
    """A partly hidden object's box is its visible part: a low score barely moves the filter, so the
    track keeps the object's size and speed and finds it on the other side of the occluder (the
    tracking world's red ellipse behind the green box: 144x144 maps of a 360x240 frame)."""
    views = passing_behind(speed, 12, start, (144, 144), 6.8, 70, 40)
    ids = ids_by_name(TrackerConfig(min_hits=1), views, size=(144, 144), frame=(240, 360))
    assert tracked(ids["o"]) == [1]


def test_a_track_mask_moves_from_where_the_filter_put_it():
    """The mask is moved by the motion the filter predicts, from the filter's centre when the mask
    was taken: with low scores the filter and the measured box part ways, and measuring the shift
    from the box would send the mask the wrong way."""
    views = passing_behind(1.5, 10, 8, (64, 64), 6, 30, 30)
    assert tracked(ids_by_name(TrackerConfig(min_hits=1), views)["o"]) == [1]


@pytest.mark.parametrize("step,length", [(10, 40), (12, 30)])
def test_a_thin_bar_turning_upright_keeps_its_id(step, length):
    """Turning through upright, a bar's box width shrinks to its thickness and grows again; the
    filter's prediction stops at 0.7 of the last measured width instead of going to nothing."""
    views = [{"o": (bar_mask(32 + 0.3 * t, 32, length, 2, 30 + step * t), 0.9)} for t in range(24)]
    assert tracked(ids_by_name(TrackerConfig(min_hits=1), views)["o"]) == [1]


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
    with pytest.raises(ValueError, match="must be the array just given to class 1's Postprocessor"):
        tracker.enqueue(1, post[1], masks[:, :, :32, :32].copy(), [0, 1])   # its rows would be read out of bounds
    with pytest.raises(ValueError, match="one camera per frame"):
        tracker.enqueue(1, post[1], masks, [0])
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
