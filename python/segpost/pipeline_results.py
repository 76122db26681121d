"""What MultiCameraPipeline returns each round: per camera, per class, with the round's timings,
what was skipped and the tracker's events (re-exported by segpost.pipeline)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from .results import FrameResult
from .track import TrackEvent


@dataclass(frozen=True)
class Detection:
    class_name: str
    class_id: int
    score: float
    box: np.ndarray   # xyxy pixels
    mask: Any         # (H, W) bool, or the output kind's per-mask form (packed bits, RLE dict)
    track_id: Optional[int] = None   # when the pipeline tracks (PipelineConfig.track); -1: untracked


@dataclass(frozen=True)
class CameraResult:
    """One camera's detections of one round, per class (views valid until the next round)."""

    camera: int
    frame_size: Tuple[int, int]
    by_class: Dict[str, FrameResult]

    @property
    def num_detections(self) -> int:
        return sum(len(r) for r in self.by_class.values())

    def __iter__(self) -> Iterator[Detection]:
        for name, r in self.by_class.items():
            for k in range(len(r)):
                track_id = None if r.track_ids is None else int(r.track_ids[k])
                yield Detection(name, int(r.class_ids[k]), float(r.scores[k]), r.boxes[k], r.masks[k], track_id)


@dataclass(frozen=True)
class RoundResult:
    round_index: int
    cameras: Dict[int, CameraResult]
    skipped: Dict[int, str]                 # camera -> why its frame was not processed this round
    timings_ms: Dict[str, float]
    overflow: Tuple[str, ...] = field(default=())  # classes whose capacity cut dropped detections
    track_events: Tuple[TrackEvent, ...] = field(default=())   # tracks confirmed or ended this round
    zone_events: Tuple[Any, ...] = field(default=())   # segpost.zones.ZoneEvent (PipelineConfig.zones)

    @property
    def num_detections(self) -> int:
        return sum(c.num_detections for c in self.cameras.values())
