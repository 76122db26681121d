"""segpost.Preprocessor: BGR uint8 camera frames -> the vision encoder's input, in one GPU pass."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _ext
from ._arrays import DTYPE_CODES, cupy_stream, stream_handle
from .postprocess import _pair, cuda_available


class Preprocessor:
    """Resize (bilinear, half-pixel centres), BGR -> RGB, x / 127.5 - 1, HWC -> CHW.

    ``run(frames)`` takes up to ``max_frames`` (H, W, 3) uint8 frames, each of its own size, and
    returns [B, 3, out_h, out_w] (CuPy on CUDA, numpy on the CPU): a view of a buffer allocated at
    construction, valid until the next run. On CUDA each frame goes through a pinned staging slot;
    ``staging(i, h, w)`` hands out slot i so capture code can decode into it and skip that copy.
    Before refilling the slots, run() waits for the previous round's upload (not its kernel), which
    has normally long finished; it never waits for the kernel it launches.
    The resize is done in float with float interpolation weights (shared with the mask kernels):
    within 0.03 of a uint8 level of cv2.resize on float32 frames (tested); cv2.resize on uint8
    frames differs by its own rounding to whole levels.
    """

    def __init__(self, *, max_frames: int = 8, max_frame_size=(1080, 1920), out_size=(1008, 1008),
                 dtype: Any = np.float32, device: Optional[str] = None):
        if device is None:
            device = "cuda" if cuda_available() else "cpu"
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda', 'cpu' or None, got {device!r}")
        if not isinstance(max_frames, int) or not 1 <= max_frames <= 64:
            raise ValueError(f"max_frames must be an int in [1, 64], got {max_frames!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            raise TypeError(f"dtype must be float32 or float16, got {self.dtype}")
        self.device, self.max_frames = device, max_frames
        self.max_frame_size = _pair("max_frame_size", max_frame_size)
        self.out_size = _pair("out_size", out_size)
        max_h, max_w = self.max_frame_size
        self._slot_bytes = max_h * max_w * 3
        out_shape = (max_frames, 3) + self.out_size
        if device == "cuda":
            import cupy

            self._cp = cupy
            self._pinned = cupy.cuda.alloc_pinned_memory(max_frames * self._slot_bytes)
            self._slots = np.frombuffer(self._pinned, np.uint8, max_frames * self._slot_bytes).reshape(max_frames, -1)
            self._device_slots = cupy.empty((max_frames, self._slot_bytes), cupy.uint8)
            self._out = cupy.empty(out_shape, self.dtype)
            self._uploaded = cupy.cuda.Event(block=False, disable_timing=True)
            self._uploaded.record()
        else:
            self._slots = np.empty((max_frames, self._slot_bytes), np.uint8)
            self._out = np.empty(out_shape, self.dtype)

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
    def staging_device_bytes(self) -> int:
        return self.max_frames * self._slot_bytes if self.device == "cuda" else 0

    @property
    def output(self):
        """The whole [max_frames, 3, out_h, out_w] output buffer (run() returns its first B frames)."""
        return self._out

    def run(self, frames: Sequence[np.ndarray], stream: Any = None, slots: Optional[Sequence[int]] = None):
        """Preprocess frames[b] into output[b]. On CUDA, frame b goes up through staging slot
        ``slots[b]`` (default b): when it already lives there (``staging``), nothing is copied."""
        if not isinstance(frames, (list, tuple)) or not 1 <= len(frames) <= self.max_frames:
            raise ValueError(f"frames must be a list of 1 to {self.max_frames} (H, W, 3) uint8 arrays")
        slots = list(range(len(frames))) if slots is None else [int(s) for s in slots]
        if len(slots) != len(frames) or len(set(slots)) != len(slots) or not all(0 <= s < self.max_frames for s in slots):
            raise ValueError(f"slots must give each frame its own staging slot in 0 .. {self.max_frames - 1}, got {slots}")
        for i, f in enumerate(frames):
            problem = frame_problem(f, self.max_frame_size)
            if problem:
                raise ValueError(f"frames[{i}]: {problem}")
        heights = [f.shape[0] for f in frames]
        widths = [f.shape[1] for f in frames]
        out = self._out[: len(frames)]
        code = DTYPE_CODES[self.dtype]
        if self.device == "cpu":
            _ext.preprocess_cpu([f.ctypes.data for f in frames], heights, widths, [f.strides[0] for f in frames],
                                out.__array_interface__["data"][0], *self.out_size, code)
            return out
        return self._run_cuda(frames, slots, heights, widths, out, code, stream_handle(stream))

    def wait_uploaded(self) -> None:
        """Block until the last run's frames have left the staging slots (they may be refilled)."""
        if self.device == "cuda":
            self._uploaded.synchronize()

    def _run_cuda(self, frames, slots, heights, widths, out, code, stream):
        cp = self._cp
        self.wait_uploaded()  # the previous round's upload has finished reading the slots
        for b, frame in enumerate(frames):
            slot = self.staging(slots[b], heights[b], widths[b])
            if frame.ctypes.data != slot.ctypes.data:
                np.copyto(slot, frame)
            cp.cuda.runtime.memcpyAsync(self._device_slots[b].data.ptr, slot.ctypes.data, slot.nbytes,
                                        cp.cuda.runtime.memcpyHostToDevice, stream)
        self._uploaded.record(cupy_stream(stream))
        _ext.preprocess_cuda([self._device_slots[b].data.ptr for b in range(len(frames))], heights, widths,
                             [3 * w for w in widths], out.data.ptr, *self.out_size, code, stream)
        return out

    def _checked_size(self, index: int, size) -> tuple:
        h, w = _pair(f"frames[{index}] size", tuple(size))
        if h > self.max_frame_size[0] or w > self.max_frame_size[1]:
            raise ValueError(f"frames[{index}] is {h}x{w}, larger than max_frame_size {self.max_frame_size}")
        return h, w


def frame_problem(frame: Any, max_size) -> Optional[str]:
    """Why a camera frame cannot be preprocessed, or None when it can."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        return (f"must be an (H, W, 3) uint8 numpy array (BGR), got {getattr(frame, 'dtype', type(frame).__name__)} "
                f"{getattr(frame, 'shape', '')}")
    h, w = frame.shape[:2]
    if h < 1 or w < 1:
        return f"is empty ({h}x{w})"
    if h > max_size[0] or w > max_size[1]:
        return f"is {h}x{w}, larger than max_frame_size {tuple(max_size)}"
    if frame.strides[1:] != (3, 1):
        return f"must have contiguous pixels (strides (row, 3, 1)), got {frame.strides}"
    return None
