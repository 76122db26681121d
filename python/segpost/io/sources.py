"""Camera sources for ``segpost run``: video files read in order, live streams latest-frame-first."""
from __future__ import annotations

import threading
import time
from typing import Optional, Tuple

import numpy as np


def is_live(url: str) -> bool:
    return url.isdigit() or "://" in url


class Source:
    """One camera. ``read()`` gives (frame_index, BGR frame) or None when there is nothing new.

    Files are read frame by frame (nothing dropped); live streams are read by a thread that keeps
    only the latest frame, so a slow round skips stale frames instead of queueing them. After
    ``failures_allowed`` consecutive failed reads a stream is declared dead: ``error`` says why.
    """

    def __init__(self, url: str, failures_allowed: int = 50):
        import cv2

        self.url, self.error = url, None
        self.finished = False
        self._capture = cv2.VideoCapture(int(url) if url.isdigit() else url)
        if not self._capture.isOpened():
            self.error, self.finished = f"cannot open {url!r} (missing file, bad URL or unsupported codec)", True
            return
        self._live = is_live(url)
        self._index = -1
        self._failures_allowed = failures_allowed
        self._latest: Optional[Tuple[int, np.ndarray]] = None
        self._lock = threading.Lock()
        if self._live:
            self._thread = threading.Thread(target=self._pump, name=f"segpost source {url}", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        failures = 0
        while not self.finished:
            ok, frame = self._capture.read()
            if not ok:
                failures += 1
                if failures > self._failures_allowed:
                    self.error, self.finished = f"stream {self.url!r} stopped delivering frames", True
                time.sleep(0.01)
                continue
            failures = 0
            self._index += 1
            with self._lock:
                self._latest = (self._index, frame)

    def read(self) -> Optional[Tuple[int, np.ndarray]]:
        if self.error or (self.finished and not self._live):
            return None
        if self._live:
            with self._lock:
                latest, self._latest = self._latest, None
            return latest
        ok, frame = self._capture.read()
        if not ok:
            self.finished = True
            return None
        self._index += 1
        return self._index, frame

    def close(self) -> None:
        self.finished = True
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout=2)
        self._capture.release()
