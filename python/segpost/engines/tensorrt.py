"""TensorRT >= 10 engines (``tensorrt`` or ``tensorrt_lean``) and TensorRT-RTX engines
(``tensorrt_rtx``; ``tensorrt_rtx_bindings`` from PyPI) behind segpost's Engine interface.

Only the runtime API is used: Runtime.deserialize_cuda_engine, the name-based tensor queries,
create_execution_context, set_input_shape, set_tensor_address and execute_async_v3, which both
families share. TensorRT cannot be installed on the machines segpost is developed on, and
TensorRT-RTX refuses to run engines on their GPU (an H100): this adapter is tested against a
recording fake of that API (tests/fake_tensorrt.py), not against a real engine.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .base import Engine, EngineError, EngineUnreadable, TensorSpec, buffer_address
from .registry import register_engine_files
from .tensor_names import TensorNames, rename_tensors

_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_,
           "INT8": np.int8, "UINT8": np.uint8}


def _compute_capability() -> str:
    try:
        import cupy

        major, minor = divmod(int(cupy.cuda.Device().compute_capability), 10)
        return f"{major}.{minor}"
    except Exception:  # no CuPy or no device: the message says what it can
        return "unknown"


@dataclass(frozen=True)
class Flavour:
    """A TensorRT runtime family: its Python modules, oldest usable version, how to install it,
    and what to suspect when it cannot deserialize an engine file."""

    title: str
    modules: Tuple[str, ...]
    min_major: int
    install: str
    not_loaded: Callable[[], str]


TENSORRT = Flavour("TensorRT", ("tensorrt", "tensorrt_lean"), 10,
                   "pip install tensorrt (or tensorrt-lean), version 10 or newer",
                   lambda: "built with another TensorRT version or for another GPU?")
# NVIDIA's TensorRT for RTX GPUs: the same execution-context API; engines are compiled for the
# GPU when loaded and run on Ampere, Ada and Blackwell (compute capability 8.0, 8.6, 8.9, 12.x).
TENSORRT_RTX = Flavour("TensorRT-RTX", ("tensorrt_rtx", "tensorrt_rtx_bindings"), 1,
                       'pip install "segpost[tensorrt-rtx]" (tensorrt-rtx-cu13-libs and tensorrt-rtx-cu13-bindings)',
                       lambda: "TensorRT-RTX runs engines on Ampere, Ada and Blackwell GPUs (compute capability 8.0, "
                               f"8.6, 8.9, 12.x); this GPU is {_compute_capability()}. Or it was built by another "
                               "TensorRT-RTX version")


def import_tensorrt(module: Optional[str] = None, flavour: Flavour = TENSORRT) -> Any:
    """The runtime module: `module` if named, else the flavour's first that imports."""
    names = (module,) if module else flavour.modules
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EngineUnreadable(f"{flavour.title} engines need the {flavour.title} Python runtime: {flavour.install}")


class TensorRTPlan:
    """An engine file deserialized: its tensors by the engine's names and each dynamic input's
    batch profile (min, opt, max), without an execution context (what ``segpost inspect`` reads)."""

    def __init__(self, path: str, flavour: Flavour = TENSORRT, *, module: Optional[str] = None, trt: Any = None):
        title = flavour.title
        if not os.path.isfile(path):
            raise EngineUnreadable(f"{title} engine file not found: {path}")
        self.trt = trt if trt is not None else import_tensorrt(module, flavour)
        major = int(str(getattr(self.trt, "__version__", "0")).split(".")[0] or 0)
        if major < flavour.min_major:
            raise EngineUnreadable(f"{title} {getattr(self.trt, '__version__', '?')} is too old: segpost needs "
                                   f"{flavour.min_major} or newer (the name-based tensor API and execute_async_v3)")
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)   # must outlive the runtime
        self._runtime = self.trt.Runtime(self._logger)
        with open(path, "rb") as f:
            plan = f.read()
        self.nbytes = len(plan)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineUnreadable(f"{path}: {title} could not deserialize this engine ({flavour.not_loaded()}; "
                                   f"the {title} log above says which)")
        self.tensors = self._read_specs(path)
        self.profiles = {spec.name: tuple(int(shape[0]) for shape in self.engine.get_tensor_profile_shape(spec.name, 0))
                         for spec in self.tensors.values() if spec.is_input and -1 in spec.shape}

    def _read_specs(self, path: str) -> Dict[str, TensorSpec]:
        trt, engine = self.trt, self.engine
        specs = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype_name = getattr(engine.get_tensor_dtype(name), "name", str(engine.get_tensor_dtype(name)))
            if dtype_name not in _DTYPES:
                raise EngineError(f"{path}: tensor {name!r} has TensorRT type {dtype_name}, which segpost does not bind")
            specs[name] = TensorSpec(name, tuple(int(d) for d in engine.get_tensor_shape(name)), np.dtype(_DTYPES[dtype_name]),
                                     engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT)
        return dict(sorted(specs.items(), key=lambda item: not item[1].is_input))

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch every dynamic input's optimization profile admits."""
        return min(largest for _, _, largest in self.profiles.values()) if self.profiles else None


class TensorRTEngine(Engine):
    """One serialized engine (.engine/.plan file) with one execution context. `tensor_names` maps
    contract names to the engine's own (tensor_names.py)."""

    device = "cuda"
    flavour = TENSORRT

    def __init__(self, path: str, *, module: Optional[str] = None, trt: Any = None, max_batch: Optional[int] = None,
                 tensor_names: Optional[TensorNames] = None):
        self.name = str(path)
        plan = TensorRTPlan(path, self.flavour, module=module, trt=trt)
        self._trt, self._engine, self._plan_bytes = plan.trt, plan.engine, plan.nbytes
        self._specs = rename_tensors(self.name, plan.tensors, tensor_names)
        self.max_batch = plan.max_batch
        if max_batch is not None and self.max_batch is not None and self.max_batch < max_batch:
            raise EngineError(f"{self.name}: built for batches up to {self.max_batch}; the pipeline needs {max_batch} "
                              f"(rebuild with maxShapes batch {max_batch})")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{path}: could not create an execution context (out of device memory?)")

    @property
    def tensors(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def set_input_shape(self, name: str, shape: Tuple[int, ...]) -> None:
        if not self._context.set_input_shape(self.spec(name).in_engine, tuple(int(d) for d in shape)):
            raise EngineError(f"{self.name}: TensorRT refused shape {list(shape)} for {self.spec(name).describe()} "
                              "(outside the optimization profile?)")

    def set_tensor_address(self, name: str, buffer: Any) -> None:
        if not self._context.set_tensor_address(self.spec(name).in_engine, buffer_address(buffer)):
            raise EngineError(f"{self.name}: TensorRT refused the address bound to {name!r}")

    def enqueue(self, stream: int) -> None:
        if not self._context.execute_async_v3(stream):
            raise EngineError(f"{self.name}: execute_async_v3 failed (unbound tensor or shape not set? "
                              "the TensorRT log above says which)")

    def memory_bytes(self) -> int:
        """The context's activation memory plus the plan's size (TensorRT does not report the
        weights' device bytes; the plan holds them, so this is close)."""
        size = getattr(self._engine, "device_memory_size_v2", None)
        return int(size if size is not None else self._engine.device_memory_size) + self._plan_bytes


class TensorRTRtxEngine(TensorRTEngine):
    """An engine built by TensorRT-RTX (``--builder tensorrt-rtx``): the same adapter, its runtime."""

    flavour = TENSORRT_RTX


# Config backends (engines/registry.py); tensorrt itself is imported when an engine is opened.
register_engine_files("tensorrt", lambda path, device, names: TensorRTEngine(path, tensor_names=names))
register_engine_files("tensorrt_rtx", lambda path, device, names: TensorRTRtxEngine(path, tensor_names=names))
