"""What a stretch of code really allocates on the host, for the "allocated once, at construction"
tests (memory_report() only repeats what the constructor counted).

- ``traced_peak``/``traced_growth``: tracemalloc, which sees every numpy buffer and Python object:
  the most allocated at once above the start, and what stayed allocated at the end.
- ``heap_growth``: glibc's in-use bytes (mallinfo2: heap + mmapped chunks), which also sees C++
  allocations that stay (a leak). A C++ buffer freed within the stretch is seen by none of these.
- ``rss_growth``: resident memory at the end minus at the start.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import tracemalloc
from dataclasses import dataclass


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
if hasattr(_LIBC, "mallinfo2"):
    _LIBC.mallinfo2.restype = _Mallinfo2


def _heap_in_use() -> int:
    if not hasattr(_LIBC, "mallinfo2"):     # glibc < 2.33 or another libc: count nothing
        return 0
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class HostAllocations:
    traced_peak: int = 0
    traced_growth: int = 0
    heap_growth: int = 0
    rss_growth: int = 0


class host_allocations:
    """``with host_allocations() as seen: work()``; then read ``seen``'s fields."""

    def __enter__(self) -> HostAllocations:
        self.result = HostAllocations()
        self._was_tracing = tracemalloc.is_tracing()
        if not self._was_tracing:
            tracemalloc.start()
        self._heap, self._rss = _heap_in_use(), _rss()
        tracemalloc.reset_peak()
        self._traced = tracemalloc.get_traced_memory()[0]
        return self.result

    def __exit__(self, *exc) -> None:
        current, peak = tracemalloc.get_traced_memory()
        self.result.traced_peak, self.result.traced_growth = peak - self._traced, current - self._traced
        self.result.heap_growth, self.result.rss_growth = _heap_in_use() - self._heap, _rss() - self._rss
        if not self._was_tracing:
            tracemalloc.stop()
