"""segpost.schedule: the order of the tiers, fairness among equals, max_interval, and a changed
camera served within one round; driven on a fake clock."""
import numpy as np
import pytest

from segpost.schedule import ScheduleConfig, Scheduler

ROUND_S = 0.2   # a round of the compiled model, 8 cameras x 4 classes on an H100 (issue 32)


def flags(n, on=()):
    f = np.zeros(n, bool)
    f[list(on)] = True
    return f


def seen_all(s: Scheduler, now=0.0):
    s.mark_seen(range(s.cameras), now)


def test_tiers_overdue_then_changed_then_tracks():
    s = Scheduler(cameras=8, batch=3, max_interval=2.0)
    seen_all(s)
    s.mark_seen([7], -5.0)   # camera 7 last seen 5 s ago: overdue
    picked = s.pick(1.0, flags(8, range(8)), changed=flags(8, [1, 4]), tracks=flags(8, [2, 4, 6]))
    assert picked == [7, 1, 4], picked
    assert s.last_tiers == ["overdue", "changed", "changed"]
    s.mark_seen(picked, 1.0)
    picked = s.pick(1.0, flags(8, range(8)), changed=flags(8, [4]), tracks=flags(8, [2, 6]))
    assert picked[0] == 4 and sorted(picked[1:]) == [2, 6], picked
    assert s.last_tiers == ["changed", "tracks", "tracks"]


def test_within_a_tier_the_camera_seen_longest_ago_goes_first():
    s = Scheduler(cameras=6, batch=1, max_interval=10.0)
    s.mark_seen([3], 0.0)
    s.pick(0.1, flags(6), changed=flags(6))   # an empty round: camera 3's observation is a round older
    s.mark_seen([0, 1, 2, 4, 5], 0.1)
    for pair in ([2, 3], [3, 4]):
        assert s.pick(0.2, flags(6, range(6)), changed=flags(6, pair)) == [3], pair


def test_idle_cameras_wait_unless_fill():
    s = Scheduler(cameras=6, batch=4, max_interval=2.0)
    seen_all(s)
    assert s.pick(0.5, flags(6, range(6)), changed=flags(6, [3]), tracks=flags(6)) == [3]
    f = Scheduler(cameras=6, batch=4, max_interval=2.0, fill=True)
    seen_all(f)
    picked = f.pick(0.5, flags(6, range(6)), changed=flags(6, [3]), tracks=flags(6))
    assert picked[0] == 3 and len(picked) == 4 and f.last_tiers[1:] == ["fill"] * 3


def test_a_camera_without_a_new_frame_is_not_picked():
    s = Scheduler(cameras=4, batch=4, max_interval=2.0)
    picked = s.pick(0.0, flags(4, [0, 2]), changed=flags(4, range(4)), tracks=flags(4, range(4)))
    assert picked == [0, 2]


def test_equals_take_turns():
    """12 busy cameras (all changed every round) on a batch of 4: each is served every third round."""
    s = Scheduler(cameras=12, batch=4, max_interval=100.0)
    last = {}
    gaps = []
    for r in range(60):
        picked = s.pick(r * ROUND_S, flags(12, range(12)), changed=flags(12, range(12)))
        assert len(picked) == 4
        for c in picked:
            if c in last:
                gaps.append(r - last[c])
            last[c] = r
        s.mark_seen(picked, r * ROUND_S)
    assert len(last) == 12 and set(gaps) == {3}, sorted(set(gaps))


def test_never_seen_cameras_take_turns_too():
    s = Scheduler(cameras=10, batch=3, max_interval=100.0)
    served = []
    for r in range(4):   # never seen: all overdue, none marked seen (the rounds failed)
        served.append(s.pick(r * ROUND_S, flags(10, range(10)), changed=flags(10)))
    assert len(set(sum(served, []))) == 10, served   # the rotation reached every camera


@pytest.mark.parametrize("busy", [4, 10])
def test_every_camera_seen_within_max_interval(busy):
    """24 cameras on a batch of 8, `busy` of them changing every frame (10: more than a batch):
    the static ones are still seen at least every max_interval (plus the round that serves them)."""
    rng = np.random.default_rng(0)
    cameras, batch, max_interval = 24, 8, 2.0
    s = Scheduler(cameras=cameras, batch=batch, max_interval=max_interval)
    seen = np.zeros(cameras)
    worst = 0.0
    for r in range(300):
        now = r * ROUND_S
        changed = flags(cameras, range(busy)) | (rng.random(cameras) < 0.02)
        picked = s.pick(now, flags(cameras, range(cameras)), changed=changed)
        s.mark_seen(picked, now)
        seen[picked] = now
        worst = max(worst, float((now - seen).max()))
    assert worst <= max_interval + ROUND_S, worst


def test_a_changed_camera_is_served_in_the_round_it_changed():
    """Whenever the changed and overdue cameras fit in the batch, every changed camera is picked."""
    rng = np.random.default_rng(1)
    cameras, batch = 24, 8
    s = Scheduler(cameras=cameras, batch=batch, max_interval=2.0)
    served_late = checked = 0
    for r in range(400):
        now = r * ROUND_S
        changed = rng.random(cameras) < 0.1
        tracks = rng.random(cameras) < 0.3
        overdue = s.staleness(now) >= 2.0
        picked = s.pick(now, flags(cameras, range(cameras)), changed=changed, tracks=tracks)
        if (changed | overdue).sum() <= batch:
            checked += 1
            served_late += int(not set(np.flatnonzero(changed)) <= set(picked))
        s.mark_seen(picked, now)
    assert checked > 300 and served_late == 0, (checked, served_late)


def test_a_failed_round_is_not_seen():
    s = Scheduler(cameras=3, batch=1, max_interval=1.0)
    seen_all(s)
    assert s.pick(1.5, flags(3, range(3)), changed=flags(3)) == [0]
    s.mark_seen([1], 1.5)
    # Camera 0's round failed (not marked seen): it is still overdue, camera 1 no longer is.
    s.batch = 3
    assert sorted(s.pick(1.7, flags(3, range(3)), changed=flags(3))) == [0, 2]
    assert s.last_tiers == ["overdue", "overdue"]


def test_schedule_config():
    assert ScheduleConfig.from_value(None).mode == "every_frame"
    assert ScheduleConfig.from_value("on_change").mode == "on_change"
    c = ScheduleConfig.from_value({"mode": "on_change", "max_interval": 1.5, "change_threshold": 6})
    assert (c.max_interval, c.change_threshold) == (1.5, 6)
    with pytest.raises(ValueError, match="unknown key"):
        ScheduleConfig.from_value({"mode": "on_change", "interval": 1})
    with pytest.raises(ValueError, match=r"ScheduleConfig.mode: Input should be 'every_frame' or 'on_change'"):
        ScheduleConfig.from_value("sometimes")
    with pytest.raises(ValueError, match="ScheduleConfig.max_interval: Input should be greater than 0"):
        ScheduleConfig(max_interval=0)
    with pytest.raises(ValueError, match="ScheduleConfig.fill: Input should be a valid boolean"):
        ScheduleConfig(fill=1)
    with pytest.raises(ValueError, match="ScheduleConfig.change_cells: must be a number, not '2'"):
        ScheduleConfig(change_cells="2")
