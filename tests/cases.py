"""Engine-output-shaped inputs for the tests (numpy; GPU tests move them with CuPy)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reference import reference_postprocess, reference_scores, assert_masks_agree


@dataclass
class Case:
    logits: np.ndarray
    presence: np.ndarray | None
    boxes: np.ndarray
    masks: np.ndarray
    frame_sizes: list
    score_threshold: float = 0.5
    kwargs: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.logits.shape[0]


def make_case(num_frames=2, num_queries=200, mask_size=(288, 288), frame_sizes=((64, 96),),
              dtype=np.float32, kept_per_frame=5, seed=0, score_threshold=0.5, presence=True,
              smooth=True) -> Case:
    """About `kept_per_frame` detections per frame, none of them near the score threshold (so a
    last-ulp difference in expf cannot flip a keep decision); masks are smooth blobs plus noise
    so the resized masks have real structure and boundaries."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-12.0, -4.0, (num_frames, num_queries)).astype(np.float32)
    for f in range(num_frames):
        winners = rng.choice(num_queries, size=min(kept_per_frame, num_queries), replace=False)
        logits[f, winners] = rng.uniform(2.5, 9.0, len(winners))
    pres = rng.uniform(4.0, 8.0, (num_frames, 1)).astype(np.float32) if presence else None
    xy = rng.uniform(-0.1, 0.9, (num_frames, num_queries, 2))
    wh = rng.uniform(0.0, 0.5, (num_frames, num_queries, 2))
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    mh, mw = mask_size
    if smooth:
        yy, xx = np.meshgrid(np.linspace(-1, 1, mh, dtype=np.float32), np.linspace(-1, 1, mw, dtype=np.float32),
                             indexing="ij")
        cy = rng.uniform(-0.6, 0.6, (num_frames, num_queries, 1, 1)).astype(np.float32)
        cx = rng.uniform(-0.6, 0.6, (num_frames, num_queries, 1, 1)).astype(np.float32)
        r = rng.uniform(0.1, 0.6, (num_frames, num_queries, 1, 1)).astype(np.float32)
        masks = 8.0 * (r - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2))
        masks += rng.normal(0, 0.5, masks.shape).astype(np.float32)
    else:
        masks = rng.normal(0, 2.0, (num_frames, num_queries, mh, mw))
    sizes = list(frame_sizes) * (num_frames // len(frame_sizes)) + list(frame_sizes)[: num_frames % len(frame_sizes)]
    return Case(logits.astype(dtype), None if pres is None else pres.astype(dtype), boxes.astype(dtype),
                masks.astype(dtype), sizes, score_threshold)


def check_against_reference(result, case: Case, probability=False, top_k=None, capacity=None,
                            mask_threshold=None, max_fraction=1e-3) -> None:
    """max_fraction: of a mask's pixels that may differ from cv2 (always only on the threshold);
    tiny masks need more than the 0.1% of real frames (one pixel of 6 is 17%)."""
    frames, passed, overflow = reference_postprocess(
        case.logits, case.presence, case.boxes, case.masks, case.frame_sizes, case.score_threshold,
        probability=probability, top_k=top_k, capacity=capacity)
    threshold = mask_threshold if mask_threshold is not None else (0.5 if probability else 0.0)
    assert result.passed == passed
    assert result.overflow == overflow
    assert len(result) == case.num_frames
    for f, (ours, ref) in enumerate(zip(result, frames)):
        h, w = case.frame_sizes[f]
        np.testing.assert_array_equal(ours.query_ids, ref.query_ids, err_msg=f"frame {f}")
        np.testing.assert_allclose(ours.scores, ref.scores, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours.boxes, ref.boxes, rtol=1e-6, atol=1e-3)
        assert ours.masks.shape == (len(ref.query_ids), h, w)
        for k in range(len(ref.query_ids)):
            assert_masks_agree(np.asarray(ours.masks[k]), ref.mask_values[k], threshold, ref.mask_scales[k],
                               max_fraction=max_fraction)


__all__ = ["Case", "make_case", "check_against_reference", "reference_scores"]


def assert_same_results(a, b, exact_masks=True) -> None:
    """Two BatchResults (e.g. CUDA and CPU twin) hold the same detections."""
    assert (a.passed, a.overflow, len(a)) == (b.passed, b.overflow, len(b))
    for f, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x.query_ids, y.query_ids, err_msg=f"frame {f}")
        np.testing.assert_array_equal(x.class_ids, y.class_ids)
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-6, atol=0)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        mx, my = _host(x.masks), _host(y.masks)
        assert mx.shape == my.shape
        if exact_masks:
            np.testing.assert_array_equal(mx, my, err_msg=f"frame {f} masks")
        else:
            assert (mx != my).sum() <= 1e-4 * mx.size


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)
