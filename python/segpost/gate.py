"""segpost.ChangeGate: has a camera's scene changed since the model last saw it?

Per camera, a coarse luma grid of each new frame (``grid`` cells, each the mean of its pixels, in
1/16 luma levels) is compared with the grid of the frame the model last saw for that camera.
A cell counts as changed when its difference, after removing the difference of the two grids'
means, exceeds ``threshold`` luma levels: cell means average out sensor noise, removing the mean
shift ignores slow light changes that move every cell alike (exposure, dusk). A camera changed
when at least ``min_cells`` cells did. It reads the frames the Preprocessor reads (BGR uint8, or
NV12/I420 ``YuvFrame``; host or device memory) and runs on the GPU, with a C++ CPU twin.

    gate = ChangeGate(cameras=24)
    changed = gate.measure(frames, cameras)   # bool per frame; counts in gate.last_counts
    ...                                       # the scheduler picks the cameras the model sees
    gate.mark_seen(picked)                    # their last measured grids become the references
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from . import _ext
from ._arrays import cupy_stream, stream_handle
from ._common import cuda_available, size_pair
from .preprocess import describe_frame

LEVEL_SCALE = 16   # csrc/gate/gate.h kGateLevelScale: cell levels carry 4 fractional bits
_MAX_BATCH = 64    # frames per kernel launch (kMaxFrames)


class ChangeGate:
    """Change detection for ``cameras`` cameras (indices 0 .. cameras - 1).

    ``grid`` (rows, cols) cells per frame; frames must be at least that large. ``threshold``:
    luma levels (0-255) a cell must move, beyond the frame-wide shift, to count. ``min_cells``:
    changed cells that make a camera "changed". A camera never marked seen has no reference and
    is always changed. ``device`` "cuda", "cpu" or None (CUDA when available); on CUDA, host
    frames are uploaded first (the pipeline passes the device copies the Preprocessor made).
    """

    def __init__(self, *, cameras: int, grid=(32, 32), threshold: float = 4.0, min_cells: int = 1,
                 device: Optional[str] = None):
        if device is None:
            device = "cuda" if cuda_available() else "cpu"
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda', 'cpu' or None, got {device!r}")
        if not isinstance(cameras, int) or cameras < 1:
            raise ValueError(f"cameras must be a positive int, got {cameras!r}")
        self.rows, self.cols = size_pair("grid", grid)
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0 luma levels, got {threshold!r}")
        if not isinstance(min_cells, int) or not 1 <= min_cells <= self.rows * self.cols:
            raise ValueError(f"min_cells must be an int in [1, {self.rows * self.cols}], got {min_cells!r}")
        self.device, self.cameras, self.threshold, self.min_cells = device, cameras, float(threshold), min_cells
        self._threshold_units = max(1, int(round(self.threshold * LEVEL_SCALE)))
        cells = self.rows * self.cols
        xp = np
        if device == "cuda":
            import cupy

            xp = self._cp = cupy
        self._xp = xp
        self._refs = xp.zeros((cameras, cells), xp.int32)     # the grid the model last saw, per camera
        self._latest = xp.zeros((cameras, cells), xp.int32)   # the last measured grid, per camera
        self._grids = xp.zeros((_MAX_BATCH, cells), xp.int32)
        self._counts = xp.zeros(_MAX_BATCH, xp.int32)
        self._has_ref = np.zeros(cameras, bool)
        self._measured = np.zeros(cameras, bool)
        self.last_counts = np.zeros(0, np.int32)

    def measure(self, frames: Sequence[Any], cameras: Sequence[int], stream: Any = None) -> np.ndarray:
        """frames[i] is the newest frame of camera cameras[i]: whether each changed (bool array).
        Their grids are kept as the cameras' latest; ``last_counts`` holds the changed cells."""
        cameras = [int(c) for c in cameras]
        if len(frames) != len(cameras):
            raise ValueError(f"{len(frames)} frames for {len(cameras)} cameras")
        if len(set(cameras)) != len(cameras) or not all(0 <= c < self.cameras for c in cameras):
            raise ValueError(f"cameras must be distinct indices in 0 .. {self.cameras - 1}, got {cameras}")
        counts = np.zeros(len(frames), np.int32)
        for start in range(0, len(frames), _MAX_BATCH):
            end = min(start + _MAX_BATCH, len(frames))
            counts[start:end] = self._measure_batch(frames[start:end], cameras[start:end], start, stream)
        self.last_counts = counts
        return counts >= self.min_cells

    def mark_seen(self, cameras: Sequence[int]) -> None:
        """The model saw these cameras' last measured frames: their grids become the references."""
        cameras = [int(c) for c in cameras]
        if not all(0 <= c < self.cameras and self._measured[c] for c in cameras):
            raise ValueError(f"mark_seen: every camera must have been measured, got {cameras}")
        index = np.asarray(cameras, np.int64)
        if self.device == "cuda":
            index = self._cp.asarray(index)
        self._refs[index] = self._latest[index]
        self._has_ref[cameras] = True

    def latest_grid(self, camera: int) -> np.ndarray:
        """The last measured grid of `camera` in 1/16 luma levels, (rows, cols) int32 on the host."""
        grid = self._latest[camera].reshape(self.rows, self.cols)
        return grid.get() if self.device == "cuda" else grid.copy()

    def _measure_batch(self, frames, cameras, offset: int, stream) -> np.ndarray:
        n = len(frames)
        kept = []   # host frames uploaded for this call stay alive until it returns
        specs = []
        for i, frame in enumerate(frames):
            if self.device == "cuda" and isinstance(frame, np.ndarray):
                frame = self._cp.asarray(frame)
                kept.append(frame)
            try:
                info = describe_frame(frame)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"frames[{offset + i}]: {exc}") from None
            if info.height < self.rows or info.width < self.cols:
                raise ValueError(f"frames[{offset + i}] is {info.height}x{info.width}, smaller than the gate's "
                                 f"grid {self.rows}x{self.cols}")
            if info.on_device != (self.device == "cuda"):
                raise ValueError(f"frames[{offset + i}] is in {'device' if info.on_device else 'host'} memory "
                                 f"but this gate runs on the {self.device.upper()}")
            specs.append(info.spec())
        ref_index = np.asarray([c if self._has_ref[c] else -1 for c in cameras], np.int32)
        grid_args = (self.rows, self.cols, self._threshold_units)
        if self.device == "cpu":
            _ext.gate_grid_cpu(specs, self.rows, self.cols, self._grids.ctypes.data)
            _ext.gate_compare_cpu(self._grids.ctypes.data, self._refs.ctypes.data, ref_index.ctypes.data, n,
                                  *grid_args, self._counts.ctypes.data)
            self._latest[cameras] = self._grids[:n]
            self._measured[cameras] = True
            return self._counts[:n].copy()
        cp = self._cp
        handle = stream_handle(stream)
        with cupy_stream(handle) if handle else cp.cuda.Stream.null:
            device_index = cp.asarray(ref_index)
            _ext.gate_grid_cuda(specs, self.rows, self.cols, self._grids.data.ptr, handle)
            _ext.gate_compare_cuda(self._grids.data.ptr, self._refs.data.ptr, device_index.data.ptr, n,
                                   *grid_args, self._counts.data.ptr, handle)
            self._latest[cp.asarray(np.asarray(cameras, np.int64))] = self._grids[:n]
            counts = self._counts[:n].get()   # waits for the kernels: the frames may then be reused
        del kept
        self._measured[cameras] = True
        return counts
