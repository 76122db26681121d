"""An ONNX graph run by onnxruntime on the CPU, as an engine of the contract, and ONNX graphs'
declared tensors read with the ``onnx`` package alone (no runtime: ``segpost inspect``).

It lets the exported SAM3 graphs (engines/export_onnx.py) flow through the whole pipeline on a
machine without a GPU or TensorRT: CI runs the tiny model this way. Bound buffers are numpy
arrays; each execution reads the inputs in place and copies the outputs into their buffers.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from .base import ArrayEngine, EngineError, EngineUnreadable, TensorSpec
from .registry import register_engine_files
from .tensor_names import TensorNames, rename_tensors

_DTYPES = {"float": np.float32, "float16": np.float16, "bool": np.bool_, "int64": np.int64, "int32": np.int32}


def onnx_spec(path: str, name: str, dims: Sequence[Union[int, str, None]], type_name: str, is_input: bool) -> TensorSpec:
    """A graph input or output as a TensorSpec: a symbolic first axis is the batch (-1), another
    symbolic axis 0 (left open, which the contract refuses); `type_name` as onnx names it ("float")."""
    if type_name not in _DTYPES:
        raise EngineError(f"{path}: tensor {name!r} has type {type_name}, which segpost cannot bind")
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 if i == 0 else 0 for i, d in enumerate(dims))
    return TensorSpec(name, shape, np.dtype(_DTYPES[type_name]), is_input)


def load_onnx_graph(path: str) -> Any:
    """The ModelProto of an ONNX file, without its external weights."""
    try:
        import onnx
    except ImportError as exc:
        raise EngineUnreadable("reading ONNX files needs the onnx package (pip install onnx, or segpost[export])") from exc
    if not os.path.isfile(path):
        raise EngineUnreadable(f"ONNX file not found: {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX model
        raise EngineUnreadable(f"{path} is not a readable ONNX model: {exc}") from exc
    if not model.HasField("graph"):   # an empty file parses as an empty model
        raise EngineUnreadable(f"{path} is not a readable ONNX model: it holds no graph"
                               + (" (the file is empty)" if os.path.getsize(path) == 0 else ""))
    return model


def read_onnx_tensors(path: str) -> Dict[str, TensorSpec]:
    """The graph's inputs (its initializers aside) and outputs, by their names."""
    graph = load_onnx_graph(path).graph   # first: it says when the onnx package is missing
    from onnx import TensorProto

    weights = {i.name for i in graph.initializer}
    specs = {}
    for is_input, values in ((True, graph.input), (False, graph.output)):
        for value in values:
            if value.name in weights:
                continue
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in tensor.shape.dim]
            specs[value.name] = onnx_spec(path, value.name, dims, TensorProto.DataType.Name(tensor.elem_type).lower(),
                                          is_input)
    return specs


class OnnxRuntimeEngine(ArrayEngine):
    """`tensor_names` maps contract names to the graph's own (tensor_names.py)."""

    def __init__(self, path: str, *, threads: int = 0, tensor_names: Optional[TensorNames] = None):
        try:
            import onnxruntime
        except ImportError as exc:
            raise EngineUnreadable("the onnx backend needs onnxruntime (pip install onnxruntime)") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self._session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for missing or bad files
            raise EngineUnreadable(f"onnxruntime cannot load {path}: {exc}") from exc
        specs: Dict[str, TensorSpec] = {}
        for is_input, values in ((True, self._session.get_inputs()), (False, self._session.get_outputs())):
            for value in values:   # value.type is "tensor(float)"
                specs[value.name] = onnx_spec(path, value.name, value.shape, value.type[7:-1], is_input)
        name = f"{path} (onnxruntime)"
        super().__init__(name, rename_tensors(name, specs, tensor_names), "cpu")
        self._inputs = [(n, s.in_engine) for n, s in self._specs.items() if s.is_input]
        self._outputs = [(n, s.in_engine) for n, s in self._specs.items() if not s.is_input]

    def execute(self, tensors: Dict[str, Any], stream: int) -> None:
        feeds = {own: tensors[name] for name, own in self._inputs}
        values = self._session.run([own for _, own in self._outputs], feeds)
        for (name, _), value in zip(self._outputs, values):
            if value.shape != tensors[name].shape:
                raise EngineError(f"{self.name}: {name} came out {list(value.shape)}, the bound buffer is "
                                  f"{list(tensors[name].shape)}")
            tensors[name][...] = value


# Config backend (engines/registry.py): .onnx files on the CPU; onnxruntime is imported when one is opened.
register_engine_files("onnx", lambda path, device, names: OnnxRuntimeEngine(path, tensor_names=names))
