"""The SAM3 two-engine I/O contract (../docs: "The engines"), checked once at pipeline construction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .base import Engine, EngineError

FPN_TENSORS = ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2")
VISION_INPUTS = ("images",)
DECODER_INPUTS = FPN_TENSORS + ("prompt_features", "prompt_mask")
DECODER_OUTPUTS = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")
MASK_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class Geometry:
    """What the engines fix: the encoder's square input, queries, mask and prompt sizes."""

    image_size: int
    image_dtype: np.dtype
    num_queries: int
    mask_size: Tuple[int, int]
    prompt_length: int
    prompt_width: int


def _names(engine: Engine, is_input: bool) -> set:
    return {n for n, s in engine.tensors.items() if s.is_input == is_input}


def _require(engine: Engine, role: str, expected: tuple, is_input: bool) -> None:
    have = _names(engine, is_input)
    kind = "input" if is_input else "output"
    missing = [n for n in expected if n not in have]
    if missing:
        raise EngineError(f"{role} engine {engine.name!r}: missing {kind} tensor(s) {missing}; it has {kind}s "
                          f"{sorted(have)}. The contract expects {list(expected)}")


def _batched(engine: Engine, role: str, name: str, rank: int) -> tuple:
    spec = engine.tensors[name]
    if len(spec.shape) != rank or spec.shape[0] != -1 or any(d < 1 for d in spec.shape[1:]):
        raise EngineError(f"{role} engine {engine.name!r}: {spec.describe()} must have rank {rank}, a dynamic "
                          "batch axis first and fixed other axes (build the engine with a batch profile)")
    return spec.shape[1:]


def check_engines(vision_encoder: Engine, decoder: Engine) -> Geometry:
    """Raise EngineError naming the first mismatch; return the geometry both engines agree on."""
    _require(vision_encoder, "vision encoder", VISION_INPUTS, True)
    _require(vision_encoder, "vision encoder", FPN_TENSORS, False)
    _require(decoder, "decoder", DECODER_INPUTS, True)
    _require(decoder, "decoder", DECODER_OUTPUTS, False)
    if vision_encoder.device != decoder.device:
        raise EngineError(f"the vision encoder runs on {vision_encoder.device} and the decoder on {decoder.device}")
    channels, height, width = _batched(vision_encoder, "vision encoder", "images", 4)
    if channels != 3 or height != width:
        raise EngineError(f"vision encoder {vision_encoder.name!r}: images must be [B,3,S,S], got "
                          f"{vision_encoder.tensors['images'].describe()}")
    for name in FPN_TENSORS:
        produced, consumed = vision_encoder.tensors[name], decoder.tensors[name]
        if produced.shape != consumed.shape or produced.dtype != consumed.dtype:
            raise EngineError(f"{name} is {produced.describe()} out of the vision encoder but {consumed.describe()} "
                              "into the decoder: the two engines were not built as a pair")
    queries, mask_h, mask_w = _batched(decoder, "decoder", "pred_masks", 4)
    prompt_length, prompt_width = _batched(decoder, "decoder", "prompt_features", 3)
    expected = {"pred_boxes": (queries, 4), "pred_logits": (queries,), "presence_logits": (1,),
                "prompt_mask": (prompt_length,)}
    for name, dims in expected.items():
        if _batched(decoder, "decoder", name, len(dims) + 1) != dims:
            raise EngineError(f"decoder engine {decoder.name!r}: {decoder.tensors[name].describe()} should be "
                              f"[B,{','.join(map(str, dims))}] to match pred_masks and prompt_features")
    for name in DECODER_OUTPUTS:
        if decoder.tensors[name].dtype not in MASK_DTYPES:
            raise EngineError(f"decoder engine {decoder.name!r}: {decoder.tensors[name].describe()} must be float32 or float16")
    return Geometry(height, vision_encoder.tensors["images"].dtype, queries, (mask_h, mask_w), prompt_length,
                    prompt_width)
