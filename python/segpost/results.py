"""What a Postprocessor returns: per-frame detections as views into its result buffers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np


@dataclass(frozen=True)
class FrameResult:
    """Detections of one frame, best score first.

    boxes (N, 4) float32 xyxy pixels; scores (N,) float32; class_ids (N,) int32; query_ids (N,)
    int32; masks (N, H, W) bool: numpy on the host, CuPy for OutputKind.DEVICE_FULL, a lazy
    segpost.PackedMasks for OutputKind.PACKED (np.asarray() or [k] unpacks), segpost.RleMasks for
    OutputKind.RLE ([k] is a pycocotools dict, np.asarray() decodes). track_ids (N,) int64: each
    detection's track id when a segpost.Tracker ran (a MultiCameraPipeline with track=...), else None.
    The arrays are views into the Postprocessor's buffers, valid until its next enqueue/run:
    call .copy() to keep them longer.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    query_ids: np.ndarray
    masks: Any
    track_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)

    def copy(self) -> "FrameResult":
        return FrameResult(self.boxes.copy(), self.scores.copy(), self.class_ids.copy(),
                           self.query_ids.copy(), self.masks.copy(),
                           None if self.track_ids is None else self.track_ids.copy())


@dataclass(frozen=True)
class BatchResult:
    """One class-batch: a FrameResult per frame, plus what the capacity cut dropped."""

    frames: tuple[FrameResult, ...]
    passed: int       # detections that passed threshold and top_k, before the capacity cut
    overflow: bool    # passed > capacity: the lowest-scoring detections were dropped
    mask_overflow: bool = False  # OutputKind.RLE: some masks did not fit rle_capacity (they are None)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> FrameResult:
        return self.frames[index]

    def __iter__(self) -> Iterator[FrameResult]:
        return iter(self.frames)

    @property
    def num_detections(self) -> int:
        return sum(len(f) for f in self.frames)

    def copy(self) -> "BatchResult":
        return BatchResult(tuple(f.copy() for f in self.frames), self.passed, self.overflow, self.mask_overflow)
