"""segpost.Preprocessor: camera frames -> the vision encoder's input, on the GPU.

Frames are BGR uint8 (H, W, 3) arrays as OpenCV gives them, or 4:2:0 YUV frames as video decoders
give them (``YuvFrame``: NV12 or I420), in host memory (numpy) or device memory (CuPy, torch,
anything with ``__cuda_array_interface__`` or DLPack). Device frames are read in place: nothing
crosses PCIe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _ext
from ._arrays import DTYPE_CODES, cupy_stream, stream_handle, strided_ref
from ._common import cuda_available, size_pair

RESIZE_FILTERS = {"antialias": 0, "bilinear": 1}
_FORMATS = {"bgr": 0, "nv12": 1, "i420": 2}
_MATRICES = {"bt601": 0, "bt709": 1}


@dataclass(frozen=True)
class YuvFrame:
    """A 4:2:0 frame: ``data`` is [3H/2, W] uint8 (host or device memory).

    ``layout`` "nv12": H rows of Y, then H/2 rows of interleaved U, V (what NVDEC writes; rows
    may be padded: the array's row stride is the pitch). "i420": Y, then U and V planes of
    H/2 x W/2 each (contiguous). ``matrix`` "bt601" or "bt709" and ``full_range`` come from the
    stream's signalling; BT.601 limited range (the default) is what FFmpeg and OpenCV assume when
    a stream signals nothing, and then the colours equal cv2.cvtColor(COLOR_YUV2RGB_NV12/I420).
    H and W must be even.
    """

    data: Any
    layout: str = "nv12"
    matrix: str = "bt601"
    full_range: bool = False

    def __post_init__(self):
        if self.layout not in ("nv12", "i420"):
            raise ValueError(f"YuvFrame layout must be 'nv12' or 'i420', got {self.layout!r}")
        if self.matrix not in _MATRICES:
            raise ValueError(f"YuvFrame matrix must be 'bt601' or 'bt709', got {self.matrix!r}")


@dataclass(frozen=True)
class _Frame:
    """A validated frame: its pixel format code, planes (address, pitch), size and where it lives."""

    format: int
    planes: Tuple[Tuple[int, int], ...]
    height: int
    width: int
    on_device: bool
    matrix: int = 0
    full_range: bool = False
    host: Optional[np.ndarray] = None   # the host array to stage (host frames only)

    def spec(self, planes=None) -> tuple:
        (p0, s0), (p1, s1), (p2, s2) = (list(planes or self.planes) + [(0, 0)] * 3)[:3]
        return (self.format, p0, p1, p2, s0, s1, s2, self.height, self.width, self.matrix, self.full_range)

    @property
    def staged_shape(self) -> Tuple[int, int]:
        """The frame as contiguous rows of bytes (rows, row bytes), as it is staged and uploaded."""
        if self.format == _FORMATS["bgr"]:
            return self.height, 3 * self.width
        return self.height * 3 // 2, self.width


def describe_frame(frame: Any) -> _Frame:
    """A frame's layout, or ValueError saying why it cannot be preprocessed."""
    if isinstance(frame, YuvFrame):
        ref = strided_ref(frame.data, "YuvFrame.data")
        if ref.dtype != np.uint8 or len(ref.shape) != 2:
            raise ValueError(f"a YuvFrame's data must be a [3H/2, W] uint8 array, got {ref.dtype} {list(ref.shape)}")
        rows, width = ref.shape
        height = rows * 2 // 3
        if rows % 3 or height % 2 or width % 2 or height < 2:
            raise ValueError(f"a YuvFrame's data must be [3H/2, W] with H and W even, got {list(ref.shape)}")
        pitch, step = ref.strides
        if step != 1:
            raise ValueError(f"a YuvFrame's rows must be contiguous (strides (pitch, 1)), got {ref.strides}")
        if frame.layout == "nv12":
            planes = ((ref.ptr, pitch), (ref.ptr + height * pitch, pitch))
        else:
            if pitch != width:
                raise ValueError("an I420 YuvFrame must be contiguous (its chroma planes have no pitch of their own)")
            u = ref.ptr + height * width
            planes = ((ref.ptr, width), (u, width // 2), (u + height * width // 4, width // 2))
        host = frame.data if not ref.on_device else None
        return _Frame(_FORMATS[frame.layout], planes, height, width, ref.on_device, _MATRICES[frame.matrix],
                      bool(frame.full_range), host)
    if not isinstance(frame, np.ndarray) and not hasattr(frame, "__cuda_array_interface__") \
            and not hasattr(frame, "__dlpack__"):
        raise ValueError(f"must be an (H, W, 3) uint8 BGR array or a segpost.YuvFrame, got {type(frame).__name__}")
    ref = strided_ref(frame, "frame")
    if ref.dtype != np.uint8 or len(ref.shape) != 3 or ref.shape[2] != 3:
        raise ValueError(f"must be an (H, W, 3) uint8 array (BGR), got {ref.dtype} {list(ref.shape)}")
    height, width = ref.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"is empty ({height}x{width})")
    if ref.strides[1:] != (3, 1):
        raise ValueError(f"must have contiguous pixels (strides (row, 3, 1)), got {ref.strides}")
    return _Frame(_FORMATS["bgr"], ((ref.ptr, ref.strides[0]),), height, width, ref.on_device,
                  host=None if ref.on_device else frame)


def checked_frame(frame: Any, max_size, device: str = "cuda") -> _Frame:
    """describe_frame, for a Preprocessor on `device` with `max_size`: ValueError says why the frame
    cannot be preprocessed."""
    try:
        info = describe_frame(frame)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if info.height > max_size[0] or info.width > max_size[1]:
        raise ValueError(f"is {info.height}x{info.width}, larger than max_frame_size {tuple(max_size)}")
    if info.on_device and device != "cuda":
        raise ValueError("is in device memory but this pipeline runs on the CPU")
    return info


class Preprocessor:
    """Resize, colour conversion to RGB, normalization to [-1, 1], HWC -> CHW, in one GPU pass
    (two for the antialias filter).

    ``resize``: "antialias" (default) is the model's reference processor, transformers'
    Sam3ImageProcessor: torch's antialiased bilinear resize of the uint8 image (a triangle filter
    whose support grows with the downscale factor), reproduced bit for bit, then (x - 127.5) / 127.5.
    "bilinear" is plain half-pixel bilinear in float (cv2.INTER_LINEAR on float input), for parity
    with pipelines built on it; it aliases fine texture when downscaling.

    ``run(frames)`` takes up to ``max_frames`` frames, each of its own size, and returns
    [B, 3, out_h, out_w] (CuPy on CUDA, numpy on the CPU): a view of a buffer allocated at
    construction, valid until the next run. Host frames go up through pinned staging slots
    (``staging(i, h, w)`` hands out slot i so capture code can decode into it and skip a copy);
    device frames are read in place. ``run`` never waits for its own kernels; before returning
    from a pipeline round, ``wait_released()`` waits until the frames may be reused (the upload of
    host frames, the kernels for device frames).
    """

    def __init__(self, *, max_frames: int = 8, max_frame_size=(1080, 1920), out_size=(1008, 1008),
                 dtype: Any = np.float32, device: Optional[str] = None, resize: str = "antialias"):
        if device is None:
            device = "cuda" if cuda_available() else "cpu"
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda', 'cpu' or None, got {device!r}")
        if not isinstance(max_frames, int) or not 1 <= max_frames <= 64:
            raise ValueError(f"max_frames must be an int in [1, 64], got {max_frames!r}")
        if resize not in RESIZE_FILTERS:
            raise ValueError(f"resize must be 'antialias' or 'bilinear', got {resize!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            raise TypeError(f"dtype must be float32 or float16, got {self.dtype}")
        self.device, self.max_frames, self.resize = device, max_frames, resize
        self.max_frame_size = size_pair("max_frame_size", max_frame_size)
        self.out_size = size_pair("out_size", out_size)
        max_h, max_w = self.max_frame_size
        out_h, out_w = self.out_size
        self._slot_bytes = max_h * max_w * 3
        out_shape = (max_frames, 3) + self.out_size
        self._max_taps = max(_ext.aa_max_taps(max_h, out_h), _ext.aa_max_taps(max_w, out_w))
        self._max_out = max(out_h, out_w)
        taps_ints = max_frames * 2 * (self._max_out + 1) * (2 + self._max_taps)
        horizontal_bytes = max_frames * 3 * max_h * out_w
        if resize == "bilinear":
            taps_ints = horizontal_bytes = 1
        if device == "cuda":
            import cupy

            self._cp = cupy
            self._pinned = cupy.cuda.alloc_pinned_memory(max_frames * self._slot_bytes)
            self._slots = np.frombuffer(self._pinned, np.uint8, max_frames * self._slot_bytes).reshape(max_frames, -1)
            self._device_slots = cupy.empty((max_frames, self._slot_bytes), cupy.uint8)
            self._out = cupy.empty(out_shape, self.dtype)
            self._taps = cupy.empty(taps_ints, cupy.int32)
            self._horizontal = cupy.empty(horizontal_bytes, cupy.uint8)
            self._released = cupy.cuda.Event(block=False, disable_timing=True)
            self._released.record()
        else:
            self._slots = np.empty((max_frames, self._slot_bytes), np.uint8)
            self._out = np.empty(out_shape, self.dtype)
            self._taps = np.empty(taps_ints, np.int32)
            self._horizontal = np.empty(horizontal_bytes, np.uint8)

    def staging(self, index: int, height: int, width: int) -> np.ndarray:
        """Slot `index` as an (height, width, 3) uint8 array to write frame `index` into."""
        if not 0 <= index < self.max_frames:
            raise ValueError(f"staging index {index} outside 0 .. {self.max_frames - 1}")
        h, w = self._checked_size(index, (height, width))
        return self._slots[index, : h * w * 3].reshape(h, w, 3)

    @property
    def pinned_bytes(self) -> int:
        return self.max_frames * self._slot_bytes if self.device == "cuda" else 0

    @property
    def device_bytes(self) -> int:
        """Device memory for staging and the antialias scratch (not the output buffer)."""
        if self.device != "cuda":
            return 0
        return self.max_frames * self._slot_bytes + int(self._taps.nbytes) + int(self._horizontal.nbytes)

    @property
    def output(self):
        """The whole [max_frames, 3, out_h, out_w] output buffer (run() returns its first B frames)."""
        return self._out

    def run(self, frames: Sequence[Any], stream: Any = None, slots: Optional[Sequence[int]] = None):
        """Preprocess frames[b] into output[b]. A host frame b goes up through staging slot
        ``slots[b]`` (default b): when it already lives there (``staging``), nothing is copied."""
        if not isinstance(frames, (list, tuple)) or not 1 <= len(frames) <= self.max_frames:
            raise ValueError(f"frames must be a list of 1 to {self.max_frames} frames")
        infos = []
        for i, f in enumerate(frames):
            try:
                infos.append(checked_frame(f, self.max_frame_size, self.device))
            except ValueError as exc:
                raise ValueError(f"frames[{i}]: {exc}") from None
        return self.run_checked(infos, stream, slots)

    def run_checked(self, infos: Sequence[_Frame], stream: Any = None, slots: Optional[Sequence[int]] = None):
        """``run`` for frames already described by ``checked_frame`` with this Preprocessor's
        max_frame_size and device (the pipeline checks each frame once, when it is submitted);
        the frames themselves must stay alive until ``wait_released``."""
        slots = list(range(len(infos))) if slots is None else [int(s) for s in slots]
        if len(slots) != len(infos) or len(set(slots)) != len(slots) or not all(0 <= s < self.max_frames for s in slots):
            raise ValueError(f"slots must give each frame its own staging slot in 0 .. {self.max_frames - 1}, got {slots}")
        out = self._out[: len(infos)]
        args = (*self.out_size, DTYPE_CODES[self.dtype], RESIZE_FILTERS[self.resize])
        if self.device == "cpu":
            _ext.preprocess_cpu([info.spec() for info in infos], out.__array_interface__["data"][0], *args,
                                *self._scratch(self._taps.ctypes.data, self._horizontal.ctypes.data))
            return out
        return self._run_cuda(infos, slots, out, args, stream_handle(stream))

    def wait_released(self) -> None:
        """Block until the last run's frames may be reused: host frames have left the staging
        slots, device frames have been read."""
        if self.device == "cuda":
            self._released.synchronize()

    def _scratch(self, taps: int, horizontal: int) -> tuple:
        return taps, self._max_taps, self._max_out, horizontal, self.max_frame_size[0]

    def _run_cuda(self, infos: List[_Frame], slots, out, args, stream):
        cp = self._cp
        self.wait_released()  # the previous round's upload has finished reading the slots
        specs = []
        for b, info in enumerate(infos):
            if info.on_device:
                specs.append(info.spec())
                continue
            rows, row_bytes = info.staged_shape
            slot = self._slots[slots[b], : rows * row_bytes].reshape(rows, row_bytes)
            # The frame as rows of bytes, whatever its row padding.
            host = np.lib.stride_tricks.as_strided(info.host, (rows, row_bytes), (info.host.strides[0], 1))
            if host.ctypes.data != slot.ctypes.data:
                np.copyto(slot, host)
            device = self._device_slots[slots[b]].data.ptr
            cp.cuda.runtime.memcpyAsync(device, slot.ctypes.data, slot.nbytes, cp.cuda.runtime.memcpyHostToDevice, stream)
            specs.append(info.spec(_contiguous_planes(info, device)))
        if not any(info.on_device for info in infos):
            self._released.record(cupy_stream(stream))
        _ext.preprocess_cuda(specs, out.data.ptr, *args, *self._scratch(self._taps.data.ptr, self._horizontal.data.ptr),
                             stream)
        if any(info.on_device for info in infos):
            self._released.record(cupy_stream(stream))
        return out

    def _checked_size(self, index: int, size) -> tuple:
        h, w = size_pair(f"frames[{index}] size", tuple(size))
        if h > self.max_frame_size[0] or w > self.max_frame_size[1]:
            raise ValueError(f"frames[{index}] is {h}x{w}, larger than max_frame_size {self.max_frame_size}")
        return h, w


def _contiguous_planes(info: _Frame, base: int) -> Tuple[Tuple[int, int], ...]:
    """The planes of a frame copied as contiguous rows to `base` (its staged layout)."""
    h, w = info.height, info.width
    if info.format == _FORMATS["bgr"]:
        return ((base, 3 * w),)
    if info.format == _FORMATS["nv12"]:
        return ((base, w), (base + h * w, w))
    return ((base, w), (base + h * w, w // 2), (base + h * w + h * w // 4, w // 2))
