"""Frames for a page that asks instead of holding a socket open: the fleet's page, whose workers are
Ray actors in other processes. A worker's runner gets a FramePoll as its observer (the live
page's LiveHub underneath: its fps limit, its downscale, on the GPU for device frames, its encoder
thread); the page asks `ask(cameras)` about once a second through Ray and gets each camera's
latest frame message (JPEG and the record of that frame, as `segpost run`'s page gets them).

A camera is watched only while asked: after `lease_s` without a question every camera is
dropped, the kept frames too, so a closed page costs the worker nothing again (no downscale, no
JPEG, the encoder thread asleep).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterable, Sequence, Tuple

from .hub import LiveHub

FLEET_FPS = 1.0          # the fleet's page asks once a second: more frames would never be seen
FLEET_WIDTH = 480


class FramePoll:
    """The runner's observer (wants_frame, frame, record) and the hub's one viewer."""

    def __init__(self, cameras: Sequence[Tuple[Any, Any]], *, lease_s: float = 5.0, fps: float = FLEET_FPS,
                 max_width: int = FLEET_WIDTH, quality: int = 70, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = lambda message: None):
        self.lease_s, self._clock = lease_s, clock
        self.hub = LiveHub(cameras, fps=fps, max_width=max_width, quality=quality, clock=clock, log=log)
        self.watching: set = set()                 # read by the hub (the viewer protocol)
        self._latest: Dict[Any, str] = {}
        self._asked = -float("inf")
        self._lock = threading.Lock()
        self.hub.add_viewer(self)

    # -- the runner's side ---------------------------------------------------------------------

    def wants_frame(self, camera: Any) -> bool:
        if self.watching and self._clock() - self._asked > self.lease_s:
            self._forget()
        return self.hub.wants_frame(camera)

    def frame(self, camera: Any, image: Any, record: Dict[str, Any]) -> None:
        self.hub.frame(camera, image, record)

    def record(self, record: Dict[str, Any]) -> None:
        """The fleet's page reads the records from the output files: nothing kept here."""

    # -- the hub's side (its encoder thread) ---------------------------------------------------

    def deliver(self, kind: str, text: str, camera: Any = None) -> None:
        if kind == "frame":
            with self._lock:
                if camera in self.watching:
                    self._latest[camera] = text

    # -- the page's side (another thread) ------------------------------------------------------

    def ask(self, cameras: Iterable[Any]) -> Dict[Any, str]:
        """Watch ``cameras`` for another lease; their latest frame messages (JSON texts) so far."""
        cameras = list(cameras)
        self._asked = self._clock()
        self.hub.watch(self, cameras)
        with self._lock:
            for camera in list(self._latest):
                if camera not in self.watching:
                    del self._latest[camera]
            return {camera: self._latest[camera] for camera in cameras if camera in self._latest}

    def stats(self) -> Dict[str, Any]:
        return {"watching": sorted(str(c) for c in self.watching), "taken": self.hub.taken,
                "encodes": self.hub.encodes}

    def _forget(self) -> None:
        self.hub.watch(self, ())
        with self._lock:
            self._latest.clear()

    def close(self) -> None:
        self.hub.close()
