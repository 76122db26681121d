"""segpost.schedule.TrackMotion: a predicted mask lands where the object really is (vertical,
horizontal, diagonal and fractional motion), against masks rendered independently at the
object's true position."""
import numpy as np
import pytest

from segpost.encodings import RunLengthMask
from segpost.schedule import TrackMotion

H, W = 120, 160


def disc(cx, cy, r=10.0):
    ys, xs = np.mgrid[0:H, 0:W]
    return (xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2 <= r * r


def box_of(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def iou(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a & b).sum() / max((a | b).sum(), 1)


def observe(motion, camera, frame, x, y, track_id=7):
    m = disc(x, y)
    motion.observe(camera, frame, [(track_id, "person", 0.9, box_of(m), m)])


@pytest.mark.parametrize("velocity", [(3, 0), (0, -2), (2, 1), (-1, 3)])
def test_predicted_mask_follows_integer_motion_exactly(velocity):
    vx, vy = velocity
    start = (60.5, 62.5)
    motion = TrackMotion()
    # The model saw the camera at frames 0 and 5 (the frames between were not observed).
    for frame in (0, 5):
        observe(motion, 0, frame, start[0] + vx * frame, start[1] + vy * frame)
    for frame in range(6, 13):
        [p] = motion.predict(0, frame)
        truth = disc(start[0] + vx * frame, start[1] + vy * frame)
        np.testing.assert_array_equal(p["mask"], truth, err_msg=f"frame {frame}")
        np.testing.assert_allclose(p["box"], box_of(truth))
        assert p["predicted"] is True and p["observed_frame"] == 5 and p["track_id"] == 7


def test_predicted_mask_follows_fractional_motion():
    motion = TrackMotion()
    vx, vy = 1.4, -0.6
    for frame in (10, 13, 20):   # irregular gaps, as on_change observes
        observe(motion, 2, frame, 40 + vx * frame, 70 + vy * frame)
    for frame in (21, 25, 30):
        [p] = motion.predict(2, frame)
        assert iou(p["mask"], disc(40 + vx * frame, 70 + vy * frame)) > 0.85, frame
    # A mask kept in place would be far off by then: the prediction moved it.
    assert iou(disc(40 + vx * 20, 70 + vy * 20), disc(40 + vx * 30, 70 + vy * 30)) < 0.5


def test_no_change_holds_the_last_observation():
    """An object that stopped after moving: the gate saw no change, so it stays where it was seen."""
    motion = TrackMotion()
    observe(motion, 0, 0, 50, 50)
    observe(motion, 0, 4, 62, 50)   # 3 px a frame
    [p] = motion.predict(0, 20, moving=False)
    np.testing.assert_array_equal(p["mask"], disc(62, 50))
    [p] = motion.predict(0, 20, moving=True)
    np.testing.assert_array_equal(p["mask"], disc(62 + 3 * 16, 50))


def test_a_still_object_stays_and_a_lost_track_is_not_predicted():
    motion = TrackMotion()
    observe(motion, 0, 0, 50, 50)
    [p] = motion.predict(0, 30)
    np.testing.assert_array_equal(p["mask"], disc(50, 50))
    motion.observe(0, 40, [])   # the model's next look found nothing: the track is lost
    assert motion.predict(0, 41) == []
    assert motion.predict(3, 41) == []   # a camera without tracks: an empty record


def test_untracked_detections_are_not_predicted():
    motion = TrackMotion()
    m = disc(50, 50)
    motion.observe(1, 0, [(-1, "person", 0.4, box_of(m), m)])
    assert motion.predict(1, 3) == []


def test_moved_mask_leaves_the_frame():
    m = disc(150, 60)
    out = np.asarray(RunLengthMask.of_dense(m).moved(8, 0))
    np.testing.assert_array_equal(out[:, 8:], m[:, :-8])
    assert not out[:, :8].any()
    assert not np.asarray(RunLengthMask.of_dense(m).moved(W, 0)).any()


@pytest.mark.parametrize("edge, step", [("left", 4), ("left", -3), ("right", 4), ("right", -3)])
def test_an_object_cut_by_the_frame_edge_moves_at_its_own_speed(edge, step):
    """Arriving or leaving, an object's box is cut by the frame's edge: its centre moves at about
    half the object's speed. The prediction follows the object's own edge: a disc across the left
    edge (step > 0: coming in, < 0: going out), or across the right edge (mirrored)."""
    r = 12.0

    def at(frame):   # the disc's centre, half a radius inside the frame at frame 0
        x = -r / 2 + step * frame if step > 0 else r / 2 + step * frame
        return x if edge == "left" else W - x

    motion = TrackMotion()
    for frame in (0, 2):
        m = disc(at(frame), 60, r)
        motion.observe(0, frame, [(3, "cart", 0.9, box_of(m), m)])
    [p] = motion.predict(0, 4)
    got, want = box_of(np.asarray(p["mask"])), box_of(disc(at(4), 60, r))
    inner = 2 if edge == "left" else 0   # the box's edge inside the frame: the object's own
    assert abs(got[inner] - want[inner]) <= 1, (got, want)
