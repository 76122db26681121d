"""The SAM3 two-engine I/O contract (../docs: "The engines"), checked once at pipeline construction.

Tensors go by the contract's names here; an engine file that names them otherwise is read
through a tensor_names map (tensor_names.py). Two tensors are optional, as the model allows:
a decoder without ``prompt_mask`` attends to all P prompt tokens (so a prompt must fill them
all with valid tokens), and one without ``presence_logits`` scores sigmoid(pred_logits), as
transformers does when presence_logits is None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from .base import EngineError, TensorTable

FPN_TENSORS = ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2")
VISION_INPUTS = ("images",)
DECODER_INPUTS = FPN_TENSORS + ("prompt_features", "prompt_mask")
DECODER_OUTPUTS = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")
OPTIONAL = ("prompt_mask", "presence_logits")
VISION_TENSORS = VISION_INPUTS + FPN_TENSORS
DECODER_TENSORS = DECODER_INPUTS + DECODER_OUTPUTS
CONTRACT_TENSORS = VISION_INPUTS + DECODER_TENSORS
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
MAP_HINT = ('if the engine names them otherwise, map them with "tensor_names" in the pipeline config '
            "(segpost inspect VISION_ENGINE DECODER_ENGINE suggests the map)")


@dataclass(frozen=True)
class Geometry:
    """What the engines fix: the encoder's square input, queries, mask and prompt sizes, and
    which optional decoder tensors exist."""

    image_size: int
    image_dtype: np.dtype
    num_queries: int
    mask_size: Tuple[int, int]
    prompt_length: int
    prompt_width: int
    prompt_mask: bool = True     # the decoder takes a prompt_mask input
    presence: bool = True        # the decoder gives presence_logits


def _names(engine: TensorTable, is_input: bool) -> set:
    return {n for n, s in engine.tensors.items() if s.is_input == is_input}


def _require(engine: TensorTable, role: str, expected: tuple, is_input: bool) -> None:
    """Every required tensor of `expected` is there and nothing else of that direction."""
    have = _names(engine, is_input)
    kind = "input" if is_input else "output"
    missing = [n for n in expected if n not in have and n not in OPTIONAL]
    if missing:
        raise EngineError(f"{role} engine {engine.name!r}: missing {kind} tensor(s) {missing}; it has {kind}s "
                          f"{sorted(have)}. The contract expects {list(expected)}; {MAP_HINT}")
    extra = [engine.tensors[n].describe() for n in sorted(have - set(expected))]
    if extra:
        raise EngineError(f"{role} engine {engine.name!r}: {kind} {', '.join(extra)} is not a tensor of the contract "
                          f"({list(expected)}), so the pipeline cannot bind it; {MAP_HINT}")


def _batched(engine: TensorTable, role: str, name: str, rank: int) -> tuple:
    spec = engine.tensors[name]
    if len(spec.shape) != rank or spec.shape[0] != -1 or any(d < 1 for d in spec.shape[1:]):
        raise EngineError(f"{role} engine {engine.name!r}: {spec.describe()} must have rank {rank}, a dynamic "
                          "batch axis first and fixed other axes (build the engine with a batch profile)")
    return spec.shape[1:]


def _float(engine: TensorTable, role: str, name: str) -> None:
    if engine.tensors[name].dtype not in FLOAT_DTYPES:
        raise EngineError(f"{role} engine {engine.name!r}: {engine.tensors[name].describe()} must be float32 or float16")


def _check_levels(vision_encoder: TensorTable) -> None:
    """The FPN levels halve in size: fpn_feat_0, fpn_feat_1 at 1/2, fpn_feat_2 and fpn_pos_2 at 1/4
    (SAM3's 288, 144, 72): what tells the levels apart when an engine names them otherwise."""
    level0 = _batched(vision_encoder, "vision encoder", "fpn_feat_0", 4)[1:]
    for name, factor in (("fpn_feat_1", 2), ("fpn_feat_2", 4), ("fpn_pos_2", 4)):
        size = _batched(vision_encoder, "vision encoder", name, 4)[1:]
        if tuple(d * factor for d in size) != tuple(level0):
            raise EngineError(f"vision encoder {vision_encoder.name!r}: {vision_encoder.tensors[name].describe()} "
                              f"should be 1/{factor} the size of fpn_feat_0 ({level0[0]}x{level0[1]}), as SAM3's "
                              f"FPN levels are; {MAP_HINT}")


def check_engines(vision_encoder: TensorTable, decoder: TensorTable) -> Geometry:
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
    _float(vision_encoder, "vision encoder", "images")
    _check_levels(vision_encoder)
    for name in FPN_TENSORS:
        produced, consumed = vision_encoder.tensors[name], decoder.tensors[name]
        if produced.shape != consumed.shape or produced.dtype != consumed.dtype:
            raise EngineError(f"{name} is {produced.describe()} out of the vision encoder but {consumed.describe()} "
                              "into the decoder: the two engines were not built as a pair")
    queries, mask_h, mask_w = _batched(decoder, "decoder", "pred_masks", 4)
    prompt_length, prompt_width = _batched(decoder, "decoder", "prompt_features", 3)
    _float(decoder, "decoder", "prompt_features")
    expected = {"pred_boxes": (queries, 4), "pred_logits": (queries,), "presence_logits": (1,),
                "prompt_mask": (prompt_length,)}
    for name, dims in expected.items():
        if name in decoder.tensors and _batched(decoder, "decoder", name, len(dims) + 1) != dims:
            raise EngineError(f"decoder engine {decoder.name!r}: {decoder.tensors[name].describe()} should be "
                              f"[B,{','.join(map(str, dims))}] to match pred_masks and prompt_features")
    for name in DECODER_OUTPUTS:
        if name in decoder.tensors:
            _float(decoder, "decoder", name)
    return Geometry(height, vision_encoder.tensors["images"].dtype, queries, (mask_h, mask_w), prompt_length,
                    prompt_width, "prompt_mask" in decoder.tensors, "presence_logits" in decoder.tensors)


def padded_prompt(name: str, features: Any, mask: Optional[Any], geometry: Geometry,
                  decoder: str = "the decoder") -> Tuple[np.ndarray, np.ndarray]:
    """A class's prompt, features [L, D] and optional mask [L] (default: all L tokens valid),
    padded to the decoder's P tokens: (features [P, D] float32, valid [P] bool)."""
    g = geometry
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != g.prompt_width or not 1 <= features.shape[0] <= g.prompt_length:
        raise EngineError(f"prompt of class {name!r} has shape {list(features.shape)}; the decoder takes "
                          f"prompt_features [B,{g.prompt_length},{g.prompt_width}], so it must be [L,{g.prompt_width}] "
                          f"with 1 <= L <= {g.prompt_length}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"prompt of class {name!r} contains NaN or Inf")
    mask = np.ones(len(features), np.bool_) if mask is None else np.asarray(mask)
    if mask.shape != (len(features),):
        raise EngineError(f"prompt mask of class {name!r} has shape {list(mask.shape)}, expected [{len(features)}]")
    valid = np.zeros(g.prompt_length, np.bool_)
    valid[: len(mask)] = mask != 0
    if not g.prompt_mask and not valid.all():
        raise EngineError(
            f"{decoder} has no prompt_mask input, so it attends to all {g.prompt_length} prompt tokens, padding "
            f"included; the prompt of class {name!r} has {int(valid.sum())} valid of {g.prompt_length} (its "
            f"{len(features)} tokens, mask {int((mask != 0).sum())} valid), and zero padding would be attended to. "
            f"Give it a prompt of {g.prompt_length} valid tokens (features [{g.prompt_length},{g.prompt_width}], no "
            "mask or an all-true one), as the engine's own text encoder pads them, or use a decoder with a "
            "prompt_mask input")
    padded = np.zeros((g.prompt_length, g.prompt_width), np.float32)
    padded[: len(features)] = features
    return padded, valid
