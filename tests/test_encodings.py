"""Compact encodings decode to exactly the FULL masks (CPU twin here; GPU in the GPU suite)."""
import numpy as np
import pytest

import segpost
from cases import make_case

PATTERNS = {
    "zeros": lambda h, w: np.full((h, w), -1.0),
    "ones": lambda h, w: np.full((h, w), 1.0),
    "single_pixel": lambda h, w: np.where(np.arange(h * w).reshape(h, w) == (h * w) // 2, 1.0, -1.0),
    "checkerboard": lambda h, w: np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0),
    "last_pixel": lambda h, w: np.where(np.arange(h * w).reshape(h, w) == h * w - 1, 1.0, -1.0),
}
SIZES = [(1, 1), (1, 13), (13, 1), (7, 5), (8, 16), (33, 17)]


def adversarial_case(h, w, dtype=np.float32):
    """Frame size == mask size: the resize is the identity, so each pattern reaches the output as is."""
    names = sorted(PATTERNS)
    logits = np.full((1, len(names)), 5.0, np.float32)
    logits[0] += -np.arange(len(names), dtype=np.float32) * 0.1  # distinct scores: a known order
    masks = np.stack([PATTERNS[n](h, w) for n in names])[None].astype(dtype)
    boxes = np.tile(np.array([0.1, 0.1, 0.9, 0.9], np.float32), (1, len(names), 1))
    return names, (logits, None, boxes, masks), [(h, w)]


def run_kind(kind, arrays, sizes, device="cpu", **kwargs):
    logits, _, _, masks = arrays
    pp = segpost.Postprocessor(max_frames=logits.shape[0], num_queries=logits.shape[1], mask_size=masks.shape[2:],
                               capacity=64, max_frame_size=tuple(np.max(sizes, axis=0)), output=kind, device=device,
                               **kwargs)
    return pp.run(*arrays, sizes).copy()


def assert_rle_matches_full(rle, full):
    mask_api = pytest.importorskip("pycocotools.mask")
    assert rle.num_detections == full.num_detections and not rle.mask_overflow
    for fr, ff in zip(rle, full):
        np.testing.assert_array_equal(fr.query_ids, ff.query_ids)
        np.testing.assert_array_equal(np.asarray(fr.masks), ff.masks)
        for k in range(len(ff)):
            ours = fr.masks[k]
            expected = mask_api.encode(np.asfortranarray(ff.masks[k].astype(np.uint8)))
            assert ours["size"] == list(expected["size"])
            assert ours["counts"] == expected["counts"]
            np.testing.assert_array_equal(mask_api.decode(ours), ff.masks[k].astype(np.uint8))


def assert_packed_matches_full(packed, full):
    assert packed.num_detections == full.num_detections
    for fp, ff in zip(packed, full):
        np.testing.assert_array_equal(fp.query_ids, ff.query_ids)
        np.testing.assert_array_equal(np.asarray(fp.masks), ff.masks)
        for k in range(len(ff)):
            np.testing.assert_array_equal(fp.masks[k], ff.masks[k])
            np.testing.assert_array_equal(fp.masks.packed(k), np.packbits(ff.masks[k], bitorder="big"))


@pytest.mark.parametrize("size", SIZES)
def test_packed_adversarial_patterns(size):
    names, arrays, sizes = adversarial_case(*size)
    full = run_kind(segpost.OutputKind.FULL, arrays, sizes)
    packed = run_kind(segpost.OutputKind.PACKED, arrays, sizes)
    h, w = size
    for k, name in enumerate(names):
        expected = PATTERNS[name](h, w) > 0
        np.testing.assert_array_equal(full[0].masks[k], expected, err_msg=name)
    assert_packed_matches_full(packed, full)
    assert_rle_matches_full(run_kind(segpost.OutputKind.RLE, arrays, sizes), full)


@pytest.mark.parametrize("sizes", [[(1080, 1920)], [(7, 5), (480, 640), (1, 1)]])
def test_packed_random_masks(sizes):
    case = make_case(num_frames=3, frame_sizes=sizes, kept_per_frame=3, seed=len(sizes))
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    full = run_kind(segpost.OutputKind.FULL, arrays, case.frame_sizes)
    assert_packed_matches_full(run_kind(segpost.OutputKind.PACKED, arrays, case.frame_sizes), full)
    assert_rle_matches_full(run_kind(segpost.OutputKind.RLE, arrays, case.frame_sizes), full)


def rle_overflow_check(arrays, sizes, device):
    full = run_kind(segpost.OutputKind.FULL, arrays[1], sizes)
    lengths = [len(run_kind(segpost.OutputKind.RLE, arrays[1], sizes)[0].masks.counts(k)) for k in range(len(full[0]))]
    # Masks are placed in order; one that does not fit is dropped and later ones may still fit.
    capacity = lengths[0] + min(lengths[1:])
    fits, used = [], 0
    for length in lengths:
        fits.append(used + length <= capacity)
        used += length if fits[-1] else 0
    rle = run_kind(segpost.OutputKind.RLE, arrays[0], sizes, device=device, rle_capacity=capacity)
    assert rle.mask_overflow and not all(fits) and fits[0]
    masks = rle[0].masks
    with pytest.raises(ValueError, match="rle_capacity"):
        np.asarray(masks)
    for k, fit in enumerate(fits):
        if fit:
            np.testing.assert_array_equal(masks.decode(k), full[0].masks[k])
        else:
            assert masks[k] is None and masks.counts(k) is None


def test_rle_overflow_drops_only_what_does_not_fit():
    case = make_case(num_frames=1, frame_sizes=[(60, 80)], kept_per_frame=4, seed=12, smooth=False)
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    rle_overflow_check((arrays, arrays), case.frame_sizes, "cpu")


def test_rle_capacity_only_for_rle():
    with pytest.raises(ValueError, match="rle_capacity applies"):
        segpost.Postprocessor(device="cpu", rle_capacity=10)
    with pytest.raises(ValueError, match="rle_capacity: Input should be greater than or equal to 1"):
        segpost.Postprocessor(device="cpu", output=segpost.OutputKind.RLE, rle_capacity=0)


def test_packed_buffer_is_an_eighth():
    full = segpost.Postprocessor(device="cpu", capacity=10, max_frame_size=(1080, 1920))
    packed = segpost.Postprocessor(device="cpu", capacity=10, max_frame_size=(1080, 1920),
                                   output=segpost.OutputKind.PACKED)
    assert full.memory_report()["host"] - packed.memory_report()["host"] == 10 * (1080 * 1920 - 1080 * 1920 // 8)


def to_device(cp, arrays):
    return [None if a is None else cp.asarray(a) for a in arrays]


@pytest.mark.gpu
@pytest.mark.parametrize("size", SIZES + [(1080, 1920)])
def test_gpu_packed_and_rle_adversarial_patterns(cp, size):
    names, arrays, sizes = adversarial_case(*size, dtype=np.float16)
    full_cpu = run_kind(segpost.OutputKind.FULL, arrays, sizes)
    packed_gpu = run_kind(segpost.OutputKind.PACKED, to_device(cp, arrays), sizes, device="cuda")
    assert_packed_matches_full(packed_gpu, full_cpu)
    assert_rle_matches_full(run_kind(segpost.OutputKind.RLE, to_device(cp, arrays), sizes, device="cuda"), full_cpu)


@pytest.mark.gpu
# The RLE kernel caches the source columns a block samples, sized for the largest frame: 300x500
# beside 300x1000 needs more than that and reads global memory; the other sets fit.
@pytest.mark.parametrize("sizes", [[(1080, 1920)], [(7, 5), (480, 640), (1, 1)], [(300, 500), (300, 1000)],
                                   [(2160, 3840)]])
def test_gpu_packed_random_masks(cp, sizes):
    case = make_case(num_frames=3, frame_sizes=sizes, kept_per_frame=3, seed=len(sizes), dtype=np.float16)
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    packed = run_kind(segpost.OutputKind.PACKED, to_device(cp, arrays), case.frame_sizes, device="cuda")
    full = run_kind(segpost.OutputKind.FULL, arrays, case.frame_sizes)
    assert_packed_matches_full(packed, full)
    assert_rle_matches_full(run_kind(segpost.OutputKind.RLE, to_device(cp, arrays), case.frame_sizes, device="cuda"), full)


@pytest.mark.gpu
def test_gpu_rle_overflow_drops_only_what_does_not_fit(cp):
    case = make_case(num_frames=1, frame_sizes=[(60, 80)], kept_per_frame=4, seed=12, smooth=False)
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    rle_overflow_check((to_device(cp, arrays), arrays), case.frame_sizes, "cuda")


def crop_window_reference(box, h, w):
    """Independent of csrc: the box rounded outwards to whole pixels, clipped to the frame."""
    x0, y0 = (min(max(int(np.floor(v)), 0), lim) for v, lim in ((box[0], w), (box[1], h)))
    x1, y1 = (min(max(int(np.ceil(v)), 0), lim) for v, lim in ((box[2], w), (box[3], h)))
    return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


def assert_crop_matches_full(crop, full):
    assert crop.num_detections == full.num_detections
    for fc, ff in zip(crop, full):
        np.testing.assert_array_equal(fc.query_ids, ff.query_ids)
        h, w = ff.masks.shape[1:]
        for k in range(len(ff)):
            x0, y0, cw, ch = crop_window_reference(ff.boxes[k], h, w)
            assert tuple(fc.masks.windows[k]) == (x0, y0, cw, ch)
            np.testing.assert_array_equal(fc.masks[k], ff.masks[k][y0:y0 + ch, x0:x0 + cw])
            expected = np.zeros_like(ff.masks[k])
            expected[y0:y0 + ch, x0:x0 + cw] = ff.masks[k][y0:y0 + ch, x0:x0 + cw]
            np.testing.assert_array_equal(fc.masks.decode(k), expected)


def assert_lowres_matches_full(lowres, full, maps):
    """maps: the engine's fp16 mask maps [F, Q, h, w]; decode must equal FULL exactly."""
    assert lowres.num_detections == full.num_detections
    for f, (fl, ff) in enumerate(zip(lowres, full)):
        for k in range(len(ff)):
            np.testing.assert_array_equal(fl.masks[k], maps[f, ff.query_ids[k]].astype(np.float16))
            np.testing.assert_array_equal(fl.masks.decode(k), ff.masks[k])
        np.testing.assert_array_equal(np.asarray(fl.masks), ff.masks)


@pytest.mark.parametrize("size", SIZES)
def test_crop_and_lowres_adversarial_patterns(size):
    names, arrays, sizes = adversarial_case(*size, dtype=np.float16)
    full = run_kind(segpost.OutputKind.FULL, arrays, sizes)
    assert_crop_matches_full(run_kind(segpost.OutputKind.CROP, arrays, sizes), full)
    assert_lowres_matches_full(run_kind(segpost.OutputKind.LOWRES, arrays, sizes), full, arrays[3])


@pytest.mark.parametrize("sizes", [[(1080, 1920)], [(7, 5), (480, 640), (1, 1)]])
def test_crop_and_lowres_random_masks(sizes):
    case = make_case(num_frames=3, frame_sizes=sizes, kept_per_frame=3, seed=len(sizes), dtype=np.float16)
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    full = run_kind(segpost.OutputKind.FULL, arrays, case.frame_sizes)
    assert_crop_matches_full(run_kind(segpost.OutputKind.CROP, arrays, case.frame_sizes), full)
    assert_lowres_matches_full(run_kind(segpost.OutputKind.LOWRES, arrays, case.frame_sizes), full, case.masks)


def test_crop_of_degenerate_and_outside_boxes():
    logits = np.full((1, 3), 5.0, np.float32) - np.arange(3, dtype=np.float32)
    boxes = np.array([[[0.5, 0.5, 0.5, 0.5], [-1.0, -1.0, 2.0, 2.0], [0.9, 0.2, 0.1, 0.8]]], np.float32)
    masks = np.ones((1, 3, 4, 4), np.float32)
    crop = run_kind(segpost.OutputKind.CROP, (logits, None, boxes, masks), [(20, 30)])
    assert [tuple(w) for w in crop[0].masks.windows] == [(15, 10, 0, 0), (0, 0, 30, 20), (27, 4, 0, 12)]
    assert crop[0].masks[0].shape == (0, 0) and crop[0].masks[1].all()


def test_lowres_clamps_to_fp16_range_and_host_bytes():
    case = make_case(num_frames=2, frame_sizes=[(1080, 1920)], kept_per_frame=2, seed=4)
    case.masks[:, :, 0, 0] = np.inf
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    pp = segpost.Postprocessor(max_frames=2, num_queries=case.logits.shape[1], mask_size=case.masks.shape[2:],
                               capacity=8, device="cpu", output=segpost.OutputKind.LOWRES)
    result = pp.run(*arrays, case.frame_sizes)
    assert result[0].masks[0][0, 0] == np.float16(65504)
    assert pp.last_host_bytes - pp._core.layout["bytes"] == 4 * case.masks.shape[2] * case.masks.shape[3] * 2
    crop = segpost.Postprocessor(max_frames=2, num_queries=case.logits.shape[1], mask_size=case.masks.shape[2:],
                                 capacity=8, device="cpu", output=segpost.OutputKind.CROP)
    res = crop.run(*arrays, case.frame_sizes)
    assert crop.last_host_bytes - crop._core.layout["bytes"] == sum(m.size for f in res for m in f.masks)


@pytest.mark.gpu
@pytest.mark.parametrize("sizes", [[(1080, 1920)], [(7, 5), (480, 640), (1, 1)], [(2160, 3840)]])
def test_gpu_crop_and_lowres(cp, sizes):
    case = make_case(num_frames=3, frame_sizes=sizes, kept_per_frame=3, seed=len(sizes), dtype=np.float16)
    arrays = (case.logits, case.presence, case.boxes, case.masks)
    full = run_kind(segpost.OutputKind.FULL, arrays, case.frame_sizes)
    assert_crop_matches_full(run_kind(segpost.OutputKind.CROP, to_device(cp, arrays), case.frame_sizes, device="cuda"), full)
    assert_lowres_matches_full(run_kind(segpost.OutputKind.LOWRES, to_device(cp, arrays), case.frame_sizes, device="cuda"),
                               full, case.masks)


@pytest.mark.gpu
@pytest.mark.parametrize("size", SIZES + [(1080, 1920)])
def test_gpu_crop_adversarial_patterns(cp, size):
    names, arrays, sizes = adversarial_case(*size, dtype=np.float16)
    full = run_kind(segpost.OutputKind.FULL, arrays, sizes)
    assert_crop_matches_full(run_kind(segpost.OutputKind.CROP, to_device(cp, arrays), sizes, device="cuda"), full)
    assert_lowres_matches_full(run_kind(segpost.OutputKind.LOWRES, to_device(cp, arrays), sizes, device="cuda"),
                               full, arrays[3])


def test_decode_coco_rle_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(11)
    for h, w in [(1, 1), (7, 5), (240, 320), (31, 2)]:
        dense = rng.random((h, w)) > 0.6
        dense[: h // 2, : w // 3] = True
        rle = mask_utils.encode(np.asfortranarray(dense.astype(np.uint8)))
        decoded = segpost.decode_coco_rle({"size": rle["size"], "counts": rle["counts"].decode()})
        np.testing.assert_array_equal(decoded, dense)
        np.testing.assert_array_equal(segpost.decode_coco_rle(rle), dense)   # bytes counts too


def _shifted(mask, dx, dy):
    """numpy's answer: mask moved dx right and dy down, what leaves the frame lost."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    keep = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
    out[ys[keep] + dy, xs[keep] + dx] = True
    return out


def _coco_runs(mask):
    """pycocotools' run lengths of a mask (column-major, from background, no empty last run)."""
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    return np.concatenate([[0], runs]) if flat[0] else runs


def test_run_length_mask_moves_crops_and_places_like_numpy():
    """RunLengthMask.moved (edges shifted where the mask stays inside, re-placed from its crop
    where it leaves the frame or wraps a column), .sample, mask_crop and placed_rle_counts, against numpy
    on random masks, blobs and every kind of edge (touching the first and last pixel, full rows)."""
    from segpost.encodings import RleMasks, RunLengthMask, mask_crop, placed_rle_counts

    rng = np.random.default_rng(11)
    for trial in range(3000):
        h, w = (int(v) for v in rng.integers(1, 10, 2))
        if trial % 3 == 0:
            mask = rng.random((h, w)) < rng.random()
        else:
            mask = np.zeros((h, w), bool)
            y0, y1 = sorted(rng.integers(0, h + 1, 2))
            x0, x1 = sorted(rng.integers(0, w + 1, 2))
            mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.8
        runs = RunLengthMask.of(RleMasks([_coco_runs(mask).astype(np.int32)], h, w), 0)
        np.testing.assert_array_equal(np.asarray(runs), mask)
        ys, xs = rng.integers(0, h, int(rng.integers(1, 6))), rng.integers(0, w, int(rng.integers(1, 6)))
        np.testing.assert_array_equal(runs.sample(ys, xs), mask[ys][:, xs])
        dx, dy = int(rng.integers(-w - 1, w + 2)), int(rng.integers(-h - 1, h + 2))
        moved = runs.moved(dx, dy)
        np.testing.assert_array_equal(np.asarray(moved), _shifted(mask, dx, dy), err_msg=f"trial {trial}")
        np.testing.assert_array_equal(moved.counts, _coco_runs(_shifted(mask, dx, dy)), err_msg=f"trial {trial}")
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        rle = RleMasks([_coco_runs(mask).astype(np.int32)], h, w)
        np.testing.assert_array_equal(mask_crop(rle, 0, x0, y0, x1, y1), mask[y0:y1, x0:x1])
        px, py = int(rng.integers(-h, w + 1)), int(rng.integers(-h, h + 1))
        frame = _shifted(np.pad(mask, ((0, h), (0, w))), px, py)[:h, :w] if px >= 0 and py >= 0 else None
        if frame is not None:
            np.testing.assert_array_equal(placed_rle_counts(mask, px, py, h, w), _coco_runs(frame))


def test_a_moved_run_length_mask_encodes_as_pycocotools_decodes():
    pycocotools = pytest.importorskip("pycocotools.mask", reason="pip install pycocotools (.ci/run does)")
    from segpost.encodings import RunLengthMask

    mask = np.zeros((1080, 1920), bool)
    mask[400:800, 700:900] = True
    moved = RunLengthMask.of_dense(mask).moved(-35, 12)
    np.testing.assert_array_equal(pycocotools.decode(moved.rle()).astype(bool), _shifted(mask, -35, 12))
