"""The engine interface the pipeline drives: named tensors, input shapes, bound buffers, enqueue.

It mirrors TensorRT 10's execution context (set_input_shape, set_tensor_address,
execute_async_v3), so a TensorRT engine is a thin adapter and the other backends (PyTorch,
synthetic, onnxruntime) behave like one: the pipeline allocates every buffer once and binds it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple

import numpy as np

from .._arrays import array_ref


class EngineError(ValueError):
    """An engine cannot be used as configured: missing file, wrong tensor names, shapes or dtypes."""


class EngineUnreadable(EngineError):
    """The engine file, or the package that reads it, is missing, or the file cannot be read."""


@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor. A -1 dimension is the dynamic batch axis (always axis 0); 0 an axis whose
    size the file leaves open. ``engine_name``: the tensor's name in the engine file when a
    tensor_names map gave it its contract ``name`` (empty when they agree)."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    is_input: bool
    engine_name: str = ""

    @property
    def in_engine(self) -> str:
        """The name the engine file knows it by (what its runtime is called with)."""
        return self.engine_name or self.name

    def with_batch(self, batch: int) -> Tuple[int, ...]:
        return tuple(batch if d == -1 else d for d in self.shape)

    def dims(self) -> str:
        return "[" + ",".join("B" if d == -1 and i == 0 else "?" if d < 1 else str(d) for i, d in enumerate(self.shape)) + "]"

    def describe(self) -> str:
        alias = f" (the engine's {self.engine_name!r})" if self.engine_name and self.engine_name != self.name else ""
        return f"{self.name}{alias} {self.dims()} {np.dtype(self.dtype).name}"


class TensorTable(Protocol):
    """What the contract check reads: an engine, or an engine file's declared tensors."""

    name: str
    device: str

    @property
    def tensors(self) -> Mapping[str, TensorSpec]: ...


def buffer_address(array: Any) -> int:
    """The data pointer of a dense CuPy/torch (``__cuda_array_interface__``) or numpy array."""
    if not isinstance(array, np.ndarray) and not hasattr(array, "__cuda_array_interface__"):
        raise TypeError(f"cannot bind a {type(array).__name__}: expected a CuPy, torch or numpy array")
    # Engines read dense buffers: a non-contiguous array is refused (its reshaped views would be copies).
    return array_ref(array, "an engine buffer").ptr


class Engine(abc.ABC):
    """An inference engine with named tensors, driven like a TensorRT execution context.

    ``device`` says where its bound buffers live ("cuda" or "cpu"). ``enqueue(stream)`` queues
    one execution on the CUDA stream (an int handle); CPU engines run synchronously.
    """

    name: str = "engine"
    device: str = "cuda"
    max_batch: Optional[int] = None   # the largest batch it runs (a TensorRT profile's max); None: any

    @property
    @abc.abstractmethod
    def tensors(self) -> Mapping[str, TensorSpec]:
        """Every I/O tensor by name, inputs first."""

    @abc.abstractmethod
    def set_input_shape(self, name: str, shape: Tuple[int, ...]) -> None: ...

    @abc.abstractmethod
    def set_tensor_address(self, name: str, buffer: Any) -> None:
        """Bind a buffer the caller owns; it must hold the tensor at its largest batch."""

    @abc.abstractmethod
    def enqueue(self, stream: int) -> None: ...

    def memory_bytes(self) -> int:
        """Device memory the engine itself holds (weights, activations), not its bound buffers."""
        return 0

    def prepare(self) -> None:
        """Called once every tensor is bound, before the first round: the place to compile or warm
        up for the bound buffers' batch (the PyTorch engine's torch.compile). Nothing by default."""

    def spec(self, name: str) -> TensorSpec:
        try:
            return self.tensors[name]
        except KeyError:
            raise EngineError(f"{self.name}: no tensor named {name!r}; it has "
                              f"{', '.join(t.describe() for t in self.tensors.values())}") from None


class ArrayEngine(Engine):
    """Base of the Python-level backends: keeps bindings and shapes, hands ``execute`` arrays.

    ``execute`` gets every tensor as an array of its current shape (a view of the bound buffer)
    and must write the outputs in place.
    """

    def __init__(self, name: str, specs: Mapping[str, TensorSpec], device: str):
        self.name, self.device = name, device
        self._specs = dict(specs)
        self._bound: Dict[str, Any] = {}
        self._batch: Dict[str, int] = {}

    @property
    def tensors(self) -> Mapping[str, TensorSpec]:
        return self._specs

    def set_input_shape(self, name: str, shape: Tuple[int, ...]) -> None:
        spec = self.spec(name)
        if not spec.is_input:
            raise EngineError(f"{self.name}: {name!r} is an output; only inputs take a shape")
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(spec.shape) or any(s != d for s, d in zip(shape, spec.shape) if d != -1) or shape[0] < 1:
            raise EngineError(f"{self.name}: shape {list(shape)} does not fit {spec.describe()}")
        self._batch[name] = shape[0]

    def set_tensor_address(self, name: str, buffer: Any) -> None:
        spec = self.spec(name)
        on_device = hasattr(buffer, "__cuda_array_interface__")
        if on_device != (self.device == "cuda"):
            raise EngineError(f"{self.name}: {name!r} must be bound to a {'CUDA' if self.device == 'cuda' else 'host'} "
                              f"buffer, got {type(buffer).__name__}")
        buffer_address(buffer)  # refuses non-contiguous arrays, whose reshaped views would be copies
        if np.dtype(buffer.dtype) != spec.dtype:
            raise EngineError(f"{self.name}: {name!r} is {spec.dtype.name}; the bound buffer is {np.dtype(buffer.dtype).name}")
        self._bound[name] = buffer

    def enqueue(self, stream: int) -> None:
        inputs = [s for s in self._specs.values() if s.is_input]
        missing = [s.name for s in self._specs.values() if s.name not in self._bound]
        if missing:
            raise EngineError(f"{self.name}: no buffer bound for {missing}")
        unset = [s.name for s in inputs if -1 in s.shape and s.name not in self._batch]
        if unset:
            raise EngineError(f"{self.name}: set_input_shape was not called for {unset}")
        batches = {self._batch[s.name] for s in inputs if -1 in s.shape}
        if len(batches) > 1:
            raise EngineError(f"{self.name}: inputs were given different batch sizes {sorted(batches)}")
        batch = batches.pop() if batches else 1
        views = {name: self._view(name, spec.with_batch(batch)) for name, spec in self._specs.items()}
        self.execute(views, stream)

    def _view(self, name: str, shape: Tuple[int, ...]) -> Any:
        buffer = self._bound[name]
        size = int(np.prod(shape))
        if buffer.size < size:
            raise EngineError(f"{self.name}: the buffer bound to {name!r} holds {buffer.size} elements, "
                              f"{list(shape)} needs {size}")
        return buffer.reshape(-1)[:size].reshape(shape)

    @abc.abstractmethod
    def execute(self, tensors: Dict[str, Any], stream: int) -> None: ...
