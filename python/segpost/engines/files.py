"""What an engine file declares, read without running it (``segpost inspect``): TensorRT and
TensorRT-RTX plans (deserialized, no execution context: the runtime package is needed), ONNX
graphs (the ``onnx`` package alone, no runtime) and AOTInductor packages (the tensor spec
beside the .pt2: nothing but the files)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .aoti import read_aoti_spec
from .base import EngineUnreadable
from .onnx_runtime import read_onnx_tensors
from .tensor_names import Tensors
from .tensorrt import TENSORRT, TENSORRT_RTX, TensorRTPlan

FORMATS = {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX", "onnx": "ONNX", "aoti": "AOTInductor"}
EXTENSIONS = {".engine": "tensorrt", ".plan": "tensorrt", ".trt": "tensorrt", ".onnx": "onnx", ".pt2": "aoti"}


@dataclass(frozen=True)
class EngineFile(Tensors):
    """An engine file's tensors by its own names, its format, and the batch each tensor takes
    (a TensorRT profile's "1..8 (opt 8)", an ONNX graph's "dynamic", a package's "static 8")."""

    format: str = ""
    batch: Mapping[str, str] = field(default_factory=dict)


def file_format(path: str, backend: Optional[str] = None) -> str:
    """`backend` when given, else the format the extension says."""
    if backend is not None:
        if backend not in FORMATS:
            raise ValueError(f"unknown engine format {backend!r}; one of {', '.join(FORMATS)}")
        return backend
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise EngineUnreadable(f"{path}: cannot tell the engine format from {extension or 'no extension'!r} "
                               f"({', '.join(EXTENSIONS)} are known); name it with --backend {'|'.join(FORMATS)}")
    return EXTENSIONS[extension]


def read_engine_file(path: str, backend: Optional[str] = None) -> EngineFile:
    """EngineUnreadable when the file, or the package its format needs, is missing or it cannot be
    read; EngineError when a tensor has a type segpost cannot bind."""
    kind = file_format(path, backend)
    if kind in ("tensorrt", "tensorrt_rtx"):
        try:
            plan = TensorRTPlan(path, TENSORRT if kind == "tensorrt" else TENSORRT_RTX)
        except EngineUnreadable as exc:
            if backend is None and os.path.isfile(path):   # the extension cannot tell a TensorRT-RTX engine
                raise EngineUnreadable(f"{exc} (a TensorRT-RTX engine? name it with --backend tensorrt_rtx)") from exc
            raise
        batch = {name: f"{low}..{high} (opt {opt})" for name, (low, opt, high) in plan.profiles.items()}
        tensors = plan.tensors
    elif kind == "onnx":
        tensors = read_onnx_tensors(path)
        batch = {name: "dynamic" for name, spec in tensors.items() if spec.shape[:1] == (-1,)}
    else:
        tensors, meta = read_aoti_spec(path)
        batch = {name: f"static {meta['batch']}" for name in tensors}
    return EngineFile(path, tensors, format=FORMATS[kind], batch=batch)
