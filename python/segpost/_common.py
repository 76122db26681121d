"""Helpers every stage shares (preprocess, postprocess, the pipeline): the device check, the
(height, width) argument check, and the round's named timing marks."""
from __future__ import annotations

import time
from typing import Any, Sequence, Tuple

import numpy as np

from . import _ext

FrameSize = Tuple[int, int]


def cuda_available() -> bool:
    """True when the extension was built with CUDA and a CUDA device is visible."""
    return _ext.built_with_cuda() and _ext.cuda_device_count() > 0


def size_pair(name: str, value: Any) -> FrameSize:
    """`value` as a (height, width) pair of positive ints; a ValueError naming `name` otherwise."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {value!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in (a, b)):
        raise ValueError(f"{name} must be two positive ints, got {value!r}")
    return int(a), int(b)


class StageClock:
    """Named marks of a round's stages: CUDA events on `stream` (GPU time), or the host clock
    when there is no stream (the CPU twin). A new stage is a new name, not a renumbering."""

    def __init__(self, names: Sequence[str], stream: Any):
        self._index = {name: i for i, name in enumerate(names)}
        self._stream = stream
        if stream is None:
            self._times = [0.0] * len(names)
        else:
            import cupy

            self._events = [cupy.cuda.Event() for _ in names]

    def mark(self, name: str) -> None:
        if self._stream is None:
            self._times[self._index[name]] = time.perf_counter()
        else:
            self._events[self._index[name]].record(self._stream)

    def spans(self):
        """span(a, b): milliseconds from mark a to mark b (waits for the last mark's event first)."""
        index = self._index
        if self._stream is None:
            return lambda a, b: (self._times[index[b]] - self._times[index[a]]) * 1e3
        import cupy

        self._events[-1].synchronize()
        return lambda a, b: cupy.cuda.get_elapsed_time(self._events[index[a]], self._events[index[b]])
