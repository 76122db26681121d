"""What a MultiCameraPipeline is built from: its classes and their prompts, and its settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
from pydantic import Field, InstanceOf, SkipValidation

from ._settings import Int, Number, fields_of, ints, settings
from .engines.base import EngineError
from .postprocess_config import MaskMode, OutputKind, PostprocessConfig, Size, TopK, declared
from .track import TrackerConfig


@dataclass(frozen=True)
class ClassPrompt:
    """One class: its name and its precomputed prompt features [L, D] (L <= the decoder's P),
    with an optional validity mask [L] (default: all L tokens valid). Padded to P here."""

    name: str
    features: np.ndarray
    mask: Optional[np.ndarray] = None


@settings(arbitrary_types=True)
class PipelineConfig:
    """A MultiCameraPipeline's settings. The postprocessing ones are PostprocessConfig's
    declarations (``declared``); ``track`` holds a TrackerConfig. ``segpost config schema run``
    prints them all, as the config file spells them."""

    classes: SkipValidation[Sequence[ClassPrompt]] = Field(
        description="the classes and their prompts, in class-index order (checked by the pipeline)")
    max_cameras: Int = Field(8, ge=1, le=64, description="frames a round takes (the engines' batch)")
    max_frame_size: Size = declared("max_frame_size")
    score_threshold: Number = declared("score_threshold")
    mask_threshold: Optional[Number] = declared("mask_threshold")
    mask_mode: MaskMode = declared("mask_mode")
    top_k: TopK = declared("top_k")
    capacity: Int = declared("capacity")
    output: OutputKind = declared("output")
    resize: str = Field("antialias", description="preprocessing filter: antialias (the model's reference "
                                                 "processor) or bilinear (cv2.INTER_LINEAR-like)")
    # Checked against the class count and the decoder where both are known (resolve_classes_per_call).
    classes_per_call: SkipValidation[Union[int, str, None]] = Field(
        None, description="classes per decoder call: 1, a divisor of the class count, or \"all\"; null: as many "
                          "as the decoder's batch range allows")
    track: Optional[InstanceOf[TrackerConfig]] = Field(
        None, description="track identities across frames (FrameResult.track_ids, "
                                       "RoundResult.track_events); null: off")
    zones: SkipValidation[Optional[Any]] = Field(
        None, description="zones and lines (a segpost.zones.ZoneSet keyed \"0\", \"1\", ... by camera slot; "
                          "needs track): RoundResult.zone_events")
    zone_rule: Literal["mask", "bottom_centre"] = Field(
        "mask", description="zone membership: mask (the mask's share inside) or bottom_centre (the peers' "
                            "test, for comparison)")
    cameras: Optional[ints(ge=1)] = Field(
        None, description="camera slots (tracks, frame ids) when a scheduler feeds more cameras than "
                          "max_cameras; a round still takes at most max_cameras frames; null: max_cameras")
    schedule: SkipValidation[Optional[Any]] = Field(
        None, description="segpost.schedule.ScheduleConfig, read by segpost run (on_change through "
                          "segpost.schedule.ScheduledPipeline); null: every_frame")

    def postprocess_config(self, **sizes: Any) -> PostprocessConfig:
        """Each class's PostprocessConfig: the settings this config shares with it by name, and
        ``sizes`` (max_frames, num_queries, mask_size: the engines'; device: the pipeline's)."""
        shared = {name: getattr(self, name) for name in fields_of(PostprocessConfig) if name in fields_of(type(self))}
        return PostprocessConfig(**shared, **sizes)


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
