"""An ONNX graph run by onnxruntime on the CPU, as an engine of the contract.

It lets the exported SAM3 graphs (engines/export_onnx.py) flow through the whole pipeline on a
machine without a GPU or TensorRT: CI runs the tiny model this way. Bound buffers are numpy
arrays; each execution reads the inputs in place and copies the outputs into their buffers.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .base import ArrayEngine, EngineError, TensorSpec

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(bool)": np.bool_,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class OnnxRuntimeEngine(ArrayEngine):
    def __init__(self, path: str, *, threads: int = 0):
        try:
            import onnxruntime
        except ImportError as exc:
            raise EngineError("the onnx backend needs onnxruntime (pip install onnxruntime)") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self._session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for missing or bad files
            raise EngineError(f"onnxruntime cannot load {path}: {exc}") from exc
        specs: Dict[str, TensorSpec] = {}
        for is_input, values in ((True, self._session.get_inputs()), (False, self._session.get_outputs())):
            for value in values:
                if value.type not in _DTYPES:
                    raise EngineError(f"{path}: tensor {value.name!r} has type {value.type}, which segpost cannot bind")
                shape = tuple(-1 if i == 0 else d if isinstance(d, int) else 0 for i, d in enumerate(value.shape))
                specs[value.name] = TensorSpec(value.name, shape, np.dtype(_DTYPES[value.type]), is_input)
        super().__init__(f"{path} (onnxruntime)", specs, "cpu")
        self._outputs = [o.name for o in self._session.get_outputs()]

    def execute(self, tensors: Dict[str, Any], stream: int) -> None:
        feeds = {name: tensors[name] for name, spec in self._specs.items() if spec.is_input}
        for name, value in zip(self._outputs, self._session.run(self._outputs, feeds)):
            if value.shape != tensors[name].shape:
                raise EngineError(f"{self.name}: {name} came out {list(value.shape)}, the bound buffer is "
                                  f"{list(tensors[name].shape)}")
            tensors[name][...] = value
