"""Scoring a round against the synthetic scene's ground truth: mask IoU per object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from ..encodings import dense_mask
from ..pipeline import CameraResult
from .scene import Truth


@dataclass(frozen=True)
class CameraScore:
    ious: List[float]      # one per ground-truth object (0 when it was missed)
    false_positives: int   # detections matched to no object of their class

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 1.0


def score_camera(result: CameraResult, truth: Truth, class_names: Sequence[str]) -> CameraScore:
    """Greedy one-to-one matching of detections to objects of the same class by mask IoU."""
    ious, false_positives = [], 0
    for class_index, name in enumerate(class_names):
        detections = result.by_class[name]
        objects = [k for k, o in enumerate(truth.objects) if o.class_index == class_index]
        pairs = []
        for d in range(len(detections)):
            mask = dense_mask(detections.masks, d)
            pixels = np.count_nonzero(mask)
            for k in objects:
                iou = _iou(mask, pixels, truth, k, detections.boxes[d])
                if iou > 0:
                    pairs.append((iou, d, k))
        used, matched = set(), {}
        for iou, d, k in sorted(pairs, reverse=True):
            if d not in used and k not in matched:
                used.add(d)
                matched[k] = iou
        ious.extend(matched.get(k, 0.0) for k in objects)
        false_positives += len(detections) - len(used)
    return CameraScore(ious, false_positives)


def _iou(mask: np.ndarray, pixels: int, truth: Truth, k: int, box: np.ndarray) -> float:
    """IoU of a full-frame mask with object k, counted inside the union of their boxes (the
    detection's box is widened by a pixel so pixels outside both boxes cannot matter)."""
    ox0, oy0, ox1, oy1 = truth.boxes[k]
    h, w = mask.shape
    x0, y0 = max(min(ox0, int(box[0]) - 1), 0), max(min(oy0, int(box[1]) - 1), 0)
    x1, y1 = min(max(ox1, int(np.ceil(box[2])) + 1), w), min(max(oy1, int(np.ceil(box[3])) + 1), h)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    a, b = mask[y0:y1, x0:x1], truth.mask(k, (x0, y0, x1, y1))
    union = np.count_nonzero(a | b)
    outside = pixels - np.count_nonzero(a)  # mask pixels outside the window count as errors
    return np.count_nonzero(a & b) / (union + outside) if union + outside else 0.0
