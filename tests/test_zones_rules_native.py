"""ZoneMonitor's C++ rules (the default, csrc/zones/zone_rules.cpp) against its numpy twin: the
same events, in the same order, and the same occupancy, on random streams of shares that flip,
hover, dwell, cross lines, skip frames, come and go (tentative ids, ended tracks)."""
import numpy as np
import pytest

from segpost.zones import ZoneMonitor, ZoneSet


def random_zones(rng) -> ZoneSet:
    cameras = {}
    for c in range(3):
        items = []
        for z in range(int(rng.integers(1, 6))):
            x, y = rng.uniform(0.1, 0.6, 2)
            if rng.random() < 0.3:
                items.append({"name": f"line{z}", "line": [[x, y], [x + 0.3, y + 0.05]], "inward": "up",
                              "inertia": int(rng.integers(1, 4)), "min_overlap": float(rng.uniform(0.1, 0.5))})
            else:
                zone = {"name": f"zone{z}", "polygon": [[x, y], [x + 0.3, y], [x + 0.3, y + 0.3], [x, y + 0.3]],
                        "inertia": int(rng.integers(1, 4)), "min_overlap": float(rng.uniform(0.1, 0.6)),
                        "max_count": int(rng.integers(1, 3))}
                if rng.random() < 0.6:
                    zone["dwell_seconds"] = float(rng.choice([0.3, 0.5, 1.0]))
                if rng.random() < 0.4:
                    zone["classes"] = ["person"]
                items.append(zone)
        cameras[str(c)] = items
    return ZoneSet.from_value(cameras, class_names=["person", "cart", "dog"])


def rounds(rng, zones: ZoneSet, n_rounds: int):
    """Rounds of (frames, ended tracks): each track's shares drift and jump so states flip often."""
    names = ["person", "cart", "dog"]
    tracks = {}   # (camera, id) -> (class, shares now)
    next_id = 0
    for t in range(n_rounds):
        frames, ended = [], []
        for camera in zones.cameras:
            regions = len(zones.regions(camera))
            if rng.random() < 0.15:
                continue                                    # a camera missing from this round
            for _ in range(int(rng.integers(0, 3))):
                tracks[(camera, next_id)] = (names[int(rng.integers(0, 3))], rng.uniform(0, 1, regions))
                next_id += 1
            mine = [k for k in tracks if k[0] == camera]
            for key in mine:
                if rng.random() < 0.05:
                    ended.append(key)
                    del tracks[key]
                    continue
                cls, shares = tracks[key]
                jump = rng.random(regions) < 0.15
                shares = np.clip(np.where(jump, rng.uniform(0, 1, regions), shares + rng.normal(0, 0.08, regions)),
                                 0, 1).astype(np.float32)
                tracks[key] = (cls, shares)
            present = [k for k in tracks if k[0] == camera and rng.random() < 0.9]
            ids = [k[1] for k in present] + [-1] * int(rng.integers(0, 2))   # tentative detections: no id
            classes = [tracks[k][0] for k in present] + ["cart"] * (len(ids) - len(present))
            shares = np.array([tracks[k][1] for k in present] + [rng.uniform(0, 1, regions)] *
                              (len(ids) - len(present)), np.float32).reshape(len(ids), regions)
            frames.append((camera, t, round(t * 0.1, 6), classes, np.array(ids, np.int64), shares))
        yield frames, ended


@pytest.mark.parametrize("seed", range(6))
def test_cpp_rules_give_the_numpy_twins_events(seed):
    rng = np.random.default_rng(seed)
    zones = random_zones(rng)
    cpp, ref = ZoneMonitor(zones), ZoneMonitor(zones, engine="numpy")
    assert cpp.engine == "cpp"
    kinds = set()
    total = 0
    for frames, ended in rounds(rng, zones, 150):
        got, want = cpp.update_round(frames), ref.update_round(frames)
        for camera, track in ended:
            got += cpp.end_track(camera, track)
            want += ref.end_track(camera, track)
        assert got == want
        total += len(got)
        kinds |= {e.kind for e in got}
        for camera in zones.cameras:
            assert cpp.occupancy(camera) == ref.occupancy(camera)
    # the stream exercised every rule, so equality above means something
    assert kinds == {"zone_entered", "zone_left", "zone_dwell", "zone_count", "line_crossed"}, kinds
    assert total > 200


def test_unknown_engine_is_refused():
    zones = ZoneSet.from_value({"0": [{"name": "a", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]})
    with pytest.raises(ValueError, match="engine"):
        ZoneMonitor(zones, engine="fortran")


def as_batch(frames, names, regions):
    """A round as a pipeline holds it: each frame's detections class by class (counts [K, F], class
    k's rows its frames' detections in frame order), and the same frames reordered alike."""
    cameras = [f[0] for f in frames]
    counts = np.zeros((len(names), len(frames)), np.int32)
    ids = np.full((len(names), 64), -7, np.int64)            # rows past the counts: never read
    shares = np.full((len(names), 64, regions), 9.0, np.float32)
    start, reordered = [0] * len(names), []
    for f, (camera, frame, time, classes, track_ids, rows) in enumerate(frames):
        order = sorted(range(len(classes)), key=lambda i: names.index(classes[i]))
        for i in order:
            k = names.index(classes[i])
            ids[k, start[k]] = track_ids[i]
            shares[k, start[k], :rows.shape[1]] = rows[i]
            shares[k, start[k], rows.shape[1]:] = 0.0
            start[k] += 1
            counts[k, f] += 1
        reordered.append((camera, frame, time, [classes[i] for i in order], track_ids[order],
                          rows[order].reshape(len(order), rows.shape[1])))
    return (cameras, [f[1] for f in frames], [f[2] for f in frames], counts, ids, shares), reordered


@pytest.mark.parametrize("seed", range(4))
def test_a_round_in_one_call_gives_the_frames_events_with_confirmed_tracks_only(seed):
    """update_batch (a pipeline's round as it lies, one C++ call) against update_round of its frames
    class by class in the numpy twin; only confirm()ed tracks count, until their end."""
    rng = np.random.default_rng(100 + seed)
    zones = random_zones(rng)
    names = ["person", "cart", "dog"]
    regions = max(len(zones.regions(k)) for k in zones.cameras)
    monitors = {"cpp": ZoneMonitor(zones), "numpy": ZoneMonitor(zones, engine="numpy")}
    ref = ZoneMonitor(zones, engine="numpy")
    seen, confirmed, total = set(), set(), 0
    for frames, ended in rounds(rng, zones, 150):
        for camera, _, _, _, track_ids, _ in frames:
            for track in set(track_ids.tolist()) - seen - {-1}:
                seen.add(track)
                if rng.random() < 0.7:   # the others stay tentative: never in a zone
                    confirmed.add(track)
                    for m in (*monitors.values(), ref):
                        m.confirm(camera, track)
        batch, reordered = as_batch(frames, names, regions)
        want = ref.update_round(reordered, confirmed_only=True)
        for camera, track in ended:
            want += ref.end_track(camera, track)
        for engine, monitor in monitors.items():
            got = monitor.update_batch(*batch[:3], names, *batch[3:], confirmed_only=True)
            for camera, track in ended:
                got += monitor.end_track(camera, track)
            assert got == want, engine
        total += len(want)
        assert {e.track_id for e in want} <= confirmed | {-1}
    assert total > 100 and len(seen - confirmed) > 20
    # every confirmed track still inside leaves at leave_all (the zones replaced), in both engines
    left = ref.leave_all()
    assert left and all(m.leave_all() == left for m in monitors.values())


def test_leave_all_closes_every_engines_tracks():
    zones = ZoneSet.from_value({"0": [{"name": "a", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "inertia": 1}]})
    for engine in ("cpp", "numpy"):
        monitor = ZoneMonitor(zones, engine=engine)
        assert [e.kind for e in monitor.update("0", 1, 0.1, ["x"], [5], np.ones((1, 1), np.float32))] == [
            "zone_entered", "zone_count"]
        assert [(e.kind, e.track_id, e.count) for e in monitor.leave_all()] == [("zone_left", 5, None),
                                                                                ("zone_count", -1, 0)], engine
        assert monitor.occupancy("0") == {("a", "x"): 0}


def test_a_batch_whose_counts_overrun_its_rows_is_refused():
    zones = ZoneSet.from_value({"0": [{"name": "a", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]})
    monitor = ZoneMonitor(zones)
    with pytest.raises(IndexError, match="overrun"):
        monitor.update_batch(["0"], [0], [0.0], ["x"], np.array([[3]]), np.zeros((1, 2), np.int64),
                             np.zeros((1, 2, 1), np.float32))
    with pytest.raises(ValueError, match="counts must be"):
        monitor.update_batch(["0"], [0], [0.0], ["x", "y"], np.array([[1]]), np.zeros((1, 2), np.int64),
                             np.zeros((1, 2, 1), np.float32))
