"""The users' plain path, written independently of segpost's twins: numpy sigmoid,
np.nonzero, sort, cv2.resize per kept mask. Tests compare segpost against this."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MASK_LOGIT_LIMIT = 1e30


@dataclass
class RefFrame:
    query_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    mask_values: list  # interpolated float maps (before the threshold), one per detection
    mask_scales: list  # the same interpolation of |logit|: each pixel's magnitude, for rounding bounds

    def masks(self, threshold: float) -> list:
        return [v > threshold for v in self.mask_values]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def reference_scores(logits, presence):
    scores = sigmoid(logits)
    if presence is not None:
        scores = scores * sigmoid(np.asarray(presence).reshape(-1, 1))
    return scores


def reference_postprocess(logits, presence, boxes, masks, frame_sizes, score_threshold,
                          probability=False, top_k=None, capacity=None):
    with np.errstate(over="ignore", invalid="ignore"):
        scores = reference_scores(logits, presence)
    num_frames, num_queries = scores.shape
    kept = []  # (frame, query)
    for f in range(num_frames):
        s = scores[f]
        idx = np.nonzero(s > score_threshold)[0]
        idx = idx[np.lexsort((idx, -s[idx]))]
        if top_k:
            idx = idx[:top_k]
        kept += [(f, int(q)) for q in idx]
    overflow = capacity is not None and len(kept) > capacity
    passed = len(kept)
    if overflow:
        flat = np.array([f * num_queries + q for f, q in kept])
        best = flat[np.lexsort((flat, -scores.reshape(-1)[flat]))][:capacity]
        kept = sorted(((int(i) // num_queries, int(i) % num_queries) for i in best),
                      key=lambda fq: (fq[0], -scores[fq], fq[1]))
    frames = []
    for f, (h, w) in enumerate(frame_sizes):
        qs = np.array([q for g, q in kept if g == f], dtype=np.int64)
        scale = np.array([w, h, w, h], dtype=np.float32)
        b = boxes[f, qs].astype(np.float32) * scale
        b = np.where(np.isnan(b), 0.0, np.clip(b, 0.0, scale)).astype(np.float32)
        values, scales = [], []
        for q in qs:
            src = masks[f, q].astype(np.float32)
            src = np.where(np.isnan(src), -MASK_LOGIT_LIMIT, np.clip(src, -MASK_LOGIT_LIMIT, MASK_LOGIT_LIMIT))
            src = src.astype(np.float32)
            if probability:
                with np.errstate(over="ignore"):
                    src = sigmoid(src)
            values.append(cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR))
            scales.append(cv2.resize(np.abs(src), (w, h), interpolation=cv2.INTER_LINEAR))
        frames.append(RefFrame(qs.astype(np.int32), scores[f, qs], b, values, scales))
    return frames, passed, overflow


def assert_masks_agree(ours: np.ndarray, ref_values: np.ndarray, threshold: float, ref_scales: np.ndarray,
                       max_fraction: float = 1e-3, boundary: float = 1e-4) -> None:
    """At most `max_fraction` of pixels differ, and only where the reference sits on the threshold:
    within `boundary` of it, relative to the magnitude of the logits that pixel blends (rounding
    in a sum of terms scales with the terms; only pixels next to clamped infinities get a big bound)."""
    expected = ref_values > threshold
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    differ = ours != expected
    n = int(differ.sum())
    assert n <= max_fraction * differ.size, f"{n} of {differ.size} pixels differ from cv2"
    if n:
        gap = np.abs(ref_values[differ] - threshold)
        bound = boundary * np.maximum(1.0, ref_scales[differ])
        worst = int(np.argmax(gap / bound))
        assert (gap <= bound).all(), \
            f"pixels differ away from the threshold (gap {gap[worst]} where the bound is {bound[worst]})"
