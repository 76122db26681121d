"""What a MultiCameraPipeline is built from: its classes and their prompts, and its settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from .engines.base import EngineError
from .postprocess import MaskMode, OutputKind
from .track import TrackerConfig


@dataclass(frozen=True)
class ClassPrompt:
    """One class: its name and its precomputed prompt features [L, D] (L <= the decoder's P),
    with an optional validity mask [L] (default: all L tokens valid). Padded to P here."""

    name: str
    features: np.ndarray
    mask: Optional[np.ndarray] = None


@dataclass(frozen=True)
class PipelineConfig:
    classes: Sequence[ClassPrompt]
    max_cameras: int = 8
    max_frame_size: Tuple[int, int] = (1080, 1920)
    score_threshold: float = 0.5
    mask_threshold: Optional[float] = None
    mask_mode: MaskMode = MaskMode.LOGIT
    top_k: Optional[int] = None
    capacity: int = 128          # detections per class-batch (all cameras); more sets overflow
    output: OutputKind = OutputKind.FULL
    resize: str = "antialias"    # the model's reference processor; "bilinear": cv2.INTER_LINEAR-like
    # Classes per decoder call: 1 (one call per class, the users' plan C), k (a divisor of the
    # class count), "all", or None: as many as the decoder's batch range allows (F x k <= its max).
    classes_per_call: Union[int, str, None] = None
    # Track identities across frames (segpost.TrackerConfig): FrameResult.track_ids, RoundResult.track_events.
    track: Optional[TrackerConfig] = None
    # Zones and lines (a segpost.zones.ZoneSet keyed "0", "1", ... by camera slot; needs track):
    # RoundResult.zone_events. zone_rule "bottom_centre": the peers' membership test, for comparison.
    zones: Optional[Any] = None
    zone_rule: str = "mask"
    # Camera slots (tracks, frame ids) when a scheduler feeds more cameras than the engines'
    # batch (segpost.schedule): a round still takes at most max_cameras frames. None: max_cameras.
    cameras: Optional[int] = None
    # segpost.schedule.ScheduleConfig (the config file's "schedule"): read by segpost run, which
    # drives an on_change pipeline through segpost.schedule.ScheduledPipeline; None: every_frame.
    schedule: Optional[Any] = None


def resolve_classes_per_call(value: Union[int, str, None], classes: int, cameras: int,
                             decoder_max_batch: Optional[int], decoder_name: str = "decoder") -> int:
    """How many classes share one decoder call (see PipelineConfig.classes_per_call)."""
    fits = lambda k: decoder_max_batch is None or cameras * k <= decoder_max_batch  # noqa: E731
    if value is None:
        return max(k for k in range(1, classes + 1) if classes % k == 0 and (fits(k) or k == 1))
    k = classes if value == "all" else value
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= classes or classes % k:
        divisors = [d for d in range(1, classes + 1) if classes % d == 0]
        raise ValueError(f"classes_per_call must be 'all' or a divisor of the {classes} classes {divisors}, got {value!r}")
    if not fits(k):
        raise EngineError(f"{decoder_name} takes batches up to {decoder_max_batch}; classes_per_call {value!r} needs "
                          f"{cameras} cameras x {k} classes = {cameras * k}. Rebuild the decoder with "
                          f"--classes-per-call {k} (engines/build_engines.sh) or lower classes_per_call")
    return int(k)
