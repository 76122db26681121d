"""The zones' arithmetic: the C++ twin (ZoneMasks on the Tracker's packed masks) against an
independent numpy reference (polygons rasterised with cv2.pointPolygonTest at the mask cells'
centres, shares counted on the thresholded maps), both rules; and the GPU kernel against the twin."""
import cv2
import numpy as np
import pytest

import segpost
from segpost.zones import ZoneMasks, ZoneSet
from track_cases import FRAME, MASK, blob_rounds, run_round, tracked_side

def reference_bitmap(polygon, size):
    """Cells whose centre is strictly inside the polygon (frame fractions scaled to the grid)."""
    h, w = size
    contour = np.array([[x * w, y * h] for x, y in polygon], np.float32).reshape(-1, 1, 2)
    out = np.zeros(size, bool)
    for y in range(h):
        for x in range(w):
            d = cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), False)
            assert d != 0, "a cell centre on a polygon edge: pick another polygon"
            out[y, x] = d > 0
    return out


def random_polygon(rng, vertices):
    """A star-shaped polygon (vertices at increasing angles around a centre, no gap of pi or
    more): simple by construction."""
    cx, cy = rng.uniform(0.3, 0.7, 2)
    angles = (np.arange(vertices) + rng.uniform(-0.3, 0.3, vertices)) * 2 * np.pi / vertices
    radii = rng.uniform(0.1, 0.45, vertices)
    return [[float(np.clip(cx + r * np.cos(a), 0, 1)), float(np.clip(cy + r * np.sin(a), 0, 1))]
            for a, r in zip(angles, radii)]


def zone_config(rng, cameras):
    zones = {}
    for c in range(cameras):
        items = []
        for z in range(3):
            polygon = random_polygon(rng, int(rng.integers(3, 9)))
            items.append({"name": f"z{z}", "polygon": polygon})
        items.append({"name": "door", "line": [[0.2, 0.3], [0.8, 0.6]], "inward": "up"})
        zones[str(c)] = items
    return ZoneSet.from_value(zones)


def point_inside(polygon, x, y):
    contour = np.array(polygon, np.float64).reshape(-1, 1, 2).astype(np.float32)
    return cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_twin_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    cameras, classes = 3, 2
    zones = zone_config(rng, cameras)
    posts, tracker = tracked_side(MASK, cameras, classes, "cpu", segpost.TrackerConfig(min_hits=1))
    masks_rule = ZoneMasks(zones, tracker=tracker, mask_size=MASK)
    box_rule = ZoneMasks(zones, tracker=tracker, mask_size=MASK, rule="bottom_centre")
    bitmaps = {}
    for c in range(cameras):
        for z, polygon in enumerate(zones.regions(str(c))):
            bitmaps[c, z] = reference_bitmap(polygon, MASK)
            assert np.array_equal(masks_rule.bitmap(c, z), bitmaps[c, z]), (c, z)
    checked = {"partial": 0, "inside": 0, "bottom_in": 0, "bottom_out": 0}
    for r, outputs in enumerate(blob_rounds(MASK, np.float32, 6, cameras, classes, seed)):
        results, _, _ = run_round(posts, tracker, outputs, r)
        masks_rule.enqueue(posts, list(range(cameras)))
        box_rule.enqueue(posts, list(range(cameras)))
        got, got_box = masks_rule.overlap(), box_rule.overlap()
        for c, ((_, _, maps), result) in enumerate(zip(outputs, results)):
            k = 0
            for f, frame in enumerate(result):
                for q, box in zip(frame.query_ids, frame.boxes):
                    mask = maps[f, q] > 0.0    # the Postprocessor's default threshold (logit 0)
                    for z, polygon in enumerate(zones.regions(str(f))):
                        count = np.count_nonzero(mask)
                        inside = np.count_nonzero(mask & bitmaps[f, z])
                        expected = np.float32(inside) / np.float32(count) if count else np.float32(0)
                        assert got[c, k, z] == expected, (r, c, k, z, got[c, k, z], expected)
                        checked["partial"] += 0 < expected < 1
                        checked["inside"] += expected == 1
                        bx, by = 0.5 * (box[0] + box[2]) / FRAME[1], box[3] / FRAME[0]
                        bottom = point_inside(polygon, bx, by)
                        assert got_box[c, k, z] == float(bottom), (r, c, k, z, box)
                        checked["bottom_in" if bottom else "bottom_out"] += 1
                    assert not got[c, k, len(zones.regions(str(f))):].any()
                    k += 1
    assert min(checked.values()) >= 5, checked   # every branch was exercised


def test_line_strips_split_the_span():
    """A line's two strips: cells on its inward side (here "up") in the first, the others in the
    second, none outside the segment's span in either."""
    zones = ZoneSet.from_value({"0": [{"name": "door", "line": [[0.25, 0.5], [0.75, 0.5]], "inward": "up"}]})
    posts, tracker = tracked_side(MASK, 1, 1, "cpu", segpost.TrackerConfig())
    zm = ZoneMasks(zones, tracker=tracker, mask_size=MASK)
    inward, outward = zm.bitmap(0, 0), zm.bitmap(0, 1)
    h, w = MASK
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    span = (xs / w > 0.25) & (xs / w < 0.75)
    assert np.array_equal(inward, span & (ys / h < 0.5))
    assert np.array_equal(outward, span & (ys / h > 0.5))


@pytest.mark.gpu
def test_gpu_equals_twin(cp):
    rng = np.random.default_rng(3)
    cameras, classes = 4, 3
    zones = zone_config(rng, cameras)
    config = segpost.TrackerConfig(min_hits=1)
    cpu_posts, cpu_tracker = tracked_side(MASK, cameras, classes, "cpu", config)
    gpu_posts, gpu_tracker = tracked_side(MASK, cameras, classes, "cuda", config)
    rules = ("mask", "bottom_centre")
    cpu = {rule: ZoneMasks(zones, tracker=cpu_tracker, mask_size=MASK, rule=rule) for rule in rules}
    gpu = {rule: ZoneMasks(zones, tracker=gpu_tracker, mask_size=MASK, rule=rule) for rule in rules}
    for r, outputs in enumerate(blob_rounds(MASK, np.float32, 5, cameras, classes, 7)):
        run_round(cpu_posts, cpu_tracker, outputs, r)
        run_round(gpu_posts, gpu_tracker, outputs, r, to_device=cp.asarray)
        totals = [int(np.frombuffer(p._core.host_results(), np.int32, 1)[0]) for p in cpu_posts]
        assert sum(totals) > 0
        for rule in rules:
            cpu[rule].enqueue(cpu_posts, list(range(cameras)))
            gpu[rule].enqueue(gpu_posts, list(range(cameras)))
            for c, n in enumerate(totals):
                assert np.array_equal(gpu[rule].overlap()[c, :n], cpu[rule].overlap()[c, :n]), (rule, r, c)


def test_zone_masks_check_their_inputs():
    zones = ZoneSet.from_value({"0": [{"name": "a", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}]})
    posts, tracker = tracked_side(MASK, 2, 2, "cpu", segpost.TrackerConfig())
    zm = ZoneMasks(zones, tracker=tracker, mask_size=MASK)
    with pytest.raises(ValueError, match="rule"):
        ZoneMasks(zones, tracker=tracker, mask_size=MASK, rule="centre")
    with pytest.raises(ValueError, match="mask size"):
        ZoneMasks(zones, tracker=tracker, mask_size=(32, 32)).enqueue(posts, [0, 1])
    with pytest.raises(ValueError, match="camera keys"):
        zm.set_camera_keys(["0", "1", "2"])
    for r, outputs in enumerate(blob_rounds(MASK, np.float32, 1, 2, 2, 0)):
        run_round(posts, tracker, outputs, r)
    with pytest.raises(ValueError, match="one Postprocessor per class"):
        zm.enqueue(posts[:1], [0, 1])
    with pytest.raises(ValueError, match="frames"):
        zm.enqueue(posts, [0])
    zm.enqueue(posts, [0, 1])
    zm.set_camera_keys(["1", "0"])     # camera "0"'s zone moves to slot 1
    assert not zm.bitmap(0, 0).any() and zm.bitmap(1, 0).any()
