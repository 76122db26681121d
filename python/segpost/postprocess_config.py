"""segpost.PostprocessConfig: every setting of a Postprocessor, declared once (type, default,
bounds, description). ``Postprocessor(**settings)`` builds one; PipelineConfig and the config
files take their postprocessing keys from these declarations (segpost/_settings.py says how)."""
from __future__ import annotations

import enum
from typing import Any, ClassVar, Dict, Literal, Optional, Tuple

from pydantic import Field, model_validator

from ._settings import Int, Number, cpp_values, fields_of, ints, settings


class OutputKind(enum.Enum):
    """How masks are delivered. More encodings (bit-packed, RLE, crops, low-res) are added here."""

    FULL = "full"                # (N, H, W) bool on the host; only kept masks cross PCIe
    DEVICE_FULL = "device_full"  # (N, H, W) bool CuPy arrays left in device memory
    PACKED = "packed"            # segpost.PackedMasks on the host: 1 bit per pixel, 1/8 of FULL's bytes
    RLE = "rle"                  # segpost.RleMasks on the host: COCO run lengths computed on the GPU
    CROP = "crop"                # segpost.CroppedMasks: each mask's box region at full resolution
    LOWRES = "lowres"            # segpost.LowResMasks: the kept mask_size maps (fp16), resized on demand

    @property
    def bits_per_pixel(self) -> int:
        return 1 if self is OutputKind.PACKED else 8

    @property
    def mask_form(self) -> int:
        """csrc/common.h's MaskForm."""
        return {OutputKind.CROP: 1, OutputKind.LOWRES: 2}.get(self, 0)


class MaskMode(enum.Enum):
    """What is interpolated before thresholding (codes shared with csrc/common.h)."""

    LOGIT = 0        # bilinear on logits, then > mask_threshold (default 0.0)
    PROBABILITY = 1  # sigmoid, bilinear, then > mask_threshold (default 0.5): transformers' order


Side = ints(ge=1, le=1 << 15)
Size = Tuple[Side, Side]
TopK = Optional[ints(ge=1)]   # (the types PipelineConfig and the run config repeat with the declaration)


@settings
class PostprocessConfig:
    """A Postprocessor's settings. The C++ side is csrc/postprocess/postprocessor.h's Config, bound
    field by field (segpost._ext.PostprocessorConfig) and filled by ``cpp_config``."""

    max_frames: Int = Field(8, ge=1, le=64, description="frames a class-batch takes (a round's cameras)")
    num_queries: Int = Field(200, ge=1, le=1 << 16, description="the decoder's queries Q per frame")
    mask_size: Size = Field((288, 288), description="the decoder's low-res mask maps (H, W)")
    capacity: Int = Field(128, ge=1, le=1 << 20,
                          description="detections kept per class-batch (all frames); more sets overflow")
    max_frame_size: Size = Field((1080, 1920), description="largest frame (H, W); buffers are sized for it")
    score_threshold: Number = Field(0.5, ge=0, le=1, description="least score of a kept detection")
    mask_threshold: Optional[Number] = Field(
        None, description="mask cut-off; null: 0.0 in logit mode, 0.5 (a probability) in probability mode")
    mask_mode: MaskMode = Field(MaskMode.LOGIT, strict=True,
                                description="what is resized before the cut-off: logit or probability "
                                            "(sigmoid first, transformers' order)")
    top_k: TopK = Field(None, description="keep at most this many detections a frame; null: all")
    output: OutputKind = Field(OutputKind.FULL, strict=True,
                               description="mask encoding: " + ", ".join(k.value for k in OutputKind))
    device: Optional[Literal["cuda", "cpu"]] = Field(None, description="where it runs; null: cuda when usable")
    rle_capacity: Optional[ints(ge=1, lt=1 << 31)] = Field(
        None, description="run lengths buffered (output rle only); null: 16 (H + W) a detection")

    # Python fields that C++ spells otherwise (segpost._settings.cpp_values).
    CPP_SPELLED: ClassVar[Dict[str, Tuple[str, ...]]] = {
        "mask_size": ("mask_h", "mask_w"), "max_frame_size": ("max_frame_h", "max_frame_w"),
        "output": ("masks_on_device", "mask_bits", "mask_form"), "device": ("use_cuda",)}

    @model_validator(mode="after")
    def _consistent(self) -> "PostprocessConfig":
        if self.output is OutputKind.DEVICE_FULL and self.device == "cpu":
            raise ValueError("OutputKind.DEVICE_FULL needs device='cuda'")
        if (self.mask_mode is MaskMode.PROBABILITY and self.mask_threshold is not None
                and not 0.0 <= self.mask_threshold <= 1.0):
            raise ValueError("mask_threshold is a probability in this mode and must be in [0, 1], "
                             f"got {self.mask_threshold}")
        if self.rle_capacity is not None and self.output is not OutputKind.RLE:
            raise ValueError("rle_capacity applies to OutputKind.RLE only")
        return self

    @property
    def threshold(self) -> float:
        """mask_threshold, its default filled in."""
        if self.mask_threshold is not None:
            return float(self.mask_threshold)
        return 0.5 if self.mask_mode is MaskMode.PROBABILITY else 0.0

    def cpp_config(self, struct: Any) -> Dict[str, Any]:
        """The values of csrc's Config (``struct``: a segpost._ext.PostprocessorConfig to fill)."""
        from ._settings import to_struct

        (h, w), (max_h, max_w) = self.mask_size, self.max_frame_size
        rle = 0
        if self.output is OutputKind.RLE:
            # A blob crosses each column about twice; 16 (H + W) run lengths a mask leave room for
            # several objects and ragged edges (1080p: 48k runs, 192 KB a mask of pinned memory).
            rle = self.capacity * 16 * (max_h + max_w) if self.rle_capacity is None else self.rle_capacity
            if rle >= 1 << 31:
                raise ValueError(f"rle_capacity must be a positive int below 2**31, got {rle}")
        values = cpp_values(self, dict(
            mask_h=h, mask_w=w, max_frame_h=max_h, max_frame_w=max_w, use_cuda=self.device == "cuda",
            masks_on_device=self.output is OutputKind.DEVICE_FULL, mask_bits=self.output.bits_per_pixel,
            mask_form=self.output.mask_form))
        values.update(mask_threshold=self.threshold, top_k=self.top_k or 0, rle_capacity=rle,
                      score_threshold=float(self.score_threshold))
        return to_struct(values, struct)


def declared(name: str):
    """PostprocessConfig's declaration of ``name`` (its default, bounds and description), for the
    settings that PipelineConfig and the config files pass on."""
    return fields_of(PostprocessConfig)[name]
