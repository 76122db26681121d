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
    with pytest.raises(ValueError, match="rle_capacity must be"):
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
def test_gpu_packed_adversarial_patterns(cp, size):
    names, arrays, sizes = adversarial_case(*size, dtype=np.float16)
    full_cpu = run_kind(segpost.OutputKind.FULL, arrays, sizes)
    packed_gpu = run_kind(segpost.OutputKind.PACKED, to_device(cp, arrays), sizes, device="cuda")
    assert_packed_matches_full(packed_gpu, full_cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("sizes", [[(1080, 1920)], [(7, 5), (480, 640), (1, 1)], [(2160, 3840)]])
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
