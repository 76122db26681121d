"""Turn what callers pass into (pointer, shape, dtype, side) without copying.

Accepted: numpy arrays (host: the CPU twin), CuPy arrays and anything exposing
``__cuda_array_interface__`` (PyTorch CUDA tensors, Numba), DLPack producers, and raw device
pointers wrapped in :class:`DeviceBuffer` (TensorRT bindings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# Codes shared with csrc/common.h's DType.
DTYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
_DLPACK_CPU, _DLPACK_CUDA = 1, 2


@dataclass(frozen=True)
class ArrayRef:
    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    on_device: bool
    strides: tuple[int, ...] = ()   # in bytes (strided_ref only)
    host: Any = None                # the numpy array, for host memory (strided_ref only)

    @property
    def dtype_code(self) -> int:
        return DTYPE_CODES[self.dtype]


class DeviceBuffer:
    """A raw device pointer with its shape and dtype, e.g. a TensorRT output binding.

    >>> DeviceBuffer(context.get_tensor_address("pred_masks"), (8, 200, 288, 288), "float16")
    """

    def __init__(self, ptr: int, shape: Sequence[int], dtype: Any):
        if not isinstance(ptr, int) or isinstance(ptr, bool):
            raise TypeError(f"DeviceBuffer: ptr must be an int device address, got {type(ptr).__name__}")
        if ptr == 0:
            raise ValueError("DeviceBuffer: null device pointer")
        self.ptr = ptr
        self.shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ValueError(f"DeviceBuffer: negative dimension in shape {self.shape}")
        self.dtype = np.dtype(dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "strides": None, "version": 3}

    def __repr__(self) -> str:
        return f"DeviceBuffer(ptr=0x{self.ptr:x}, shape={self.shape}, dtype={self.dtype})"


def _check_c_contiguous(name: str, shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> None:
    expected = itemsize
    for dim, stride in zip(reversed(shape), reversed(strides)):
        if dim > 1 and stride != expected:
            raise ValueError(f"{name} must be C-contiguous (shape {shape}, strides {strides}); "
                             "pass a contiguous array (e.g. .copy() / .contiguous())")
        expected *= dim


def as_array_ref(obj: Any, name: str) -> ArrayRef:
    """A kernel input: array_ref, and float32 or float16 at a non-null address."""
    return _checked(name, array_ref(obj, name))


def array_ref(obj: Any, name: str) -> ArrayRef:
    """Address, shape and dtype of a dense array of any dtype (TypeError/ValueError otherwise)."""
    ref = strided_ref(obj, name)
    _check_c_contiguous(name, ref.shape, ref.strides, ref.dtype.itemsize)
    return ref


def strided_ref(obj: Any, name: str) -> ArrayRef:
    """Address, shape, dtype and byte strides of an array that may have padded rows (camera
    frames, decoder surfaces): numpy, ``__cuda_array_interface__`` or DLPack."""
    if isinstance(obj, np.ndarray):
        return ArrayRef(obj.ctypes.data, tuple(obj.shape), obj.dtype, False, tuple(obj.strides), obj)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(int(s) for s in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        if strides is None:  # C-contiguous
            strides, step = [], dtype.itemsize
            for dim in reversed(shape):
                strides.insert(0, step)
                step *= dim
        return ArrayRef(int(cai["data"][0]), shape, dtype, True, tuple(int(v) for v in strides))
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        return strided_ref(_from_dlpack(obj, name), name)
    raise TypeError(f"{name}: expected a numpy array, a CUDA array (CuPy, torch, __cuda_array_interface__), "
                    f"a DLPack tensor or a segpost.DeviceBuffer, got {type(obj).__name__}")


def _from_dlpack(obj: Any, name: str) -> Any:
    """A DLPack producer as a numpy (CPU) or CuPy (CUDA) array, without a copy."""
    device_type = int(obj.__dlpack_device__()[0])
    if device_type == _DLPACK_CPU:
        return np.from_dlpack(obj)
    if device_type == _DLPACK_CUDA:
        try:
            import cupy
        except ImportError as exc:
            raise TypeError(f"{name}: a CUDA DLPack tensor needs CuPy to be read "
                            "(pip install segpost[cuda13] or [cuda12])") from exc
        return cupy.from_dlpack(obj)
    raise TypeError(f"{name}: DLPack device type {device_type} is neither CPU nor CUDA")


def _checked(name: str, ref: ArrayRef) -> ArrayRef:
    if ref.dtype not in DTYPE_CODES:
        raise TypeError(f"{name} must be float32 or float16, got {ref.dtype}")
    if ref.ptr == 0 and int(np.prod(ref.shape)) > 0:
        raise ValueError(f"{name} is a null pointer")
    return ref


def stream_handle(stream: Any) -> int:
    """A cudaStream_t as an int from None (legacy default stream), an int, or a CuPy/PyTorch stream."""
    if stream is None:
        return 0
    if isinstance(stream, int) and not isinstance(stream, bool):
        return stream
    for attr in ("ptr", "cuda_stream", "handle"):
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return handle
    raise TypeError(f"stream must be None, an int cudaStream_t, or a CuPy/PyTorch stream, got {type(stream).__name__}")


_EXTERNAL_STREAMS: dict = {}


def cupy_stream(handle: int) -> Any:
    """A CuPy stream object for a raw cudaStream_t, made once per handle. CuPy 14 deprecates
    ExternalStream in favour of Stream.from_external(), which CuPy 13 lacks; both work here."""
    stream = _EXTERNAL_STREAMS.get(handle)
    if stream is None:
        import warnings

        import cupy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            stream = _EXTERNAL_STREAMS[handle] = cupy.cuda.ExternalStream(handle)
    return stream
