"""Between the camera loop and the page's viewers: what the runner hands over each round, what the
viewers watch, and the one thread that encodes frames for them.

The runner's thread calls ``record`` for every record it writes (a few dict updates: the health
numbers and the events list) and, for a frame record, ``wants_frame(camera)`` first: True only
while a viewer watches that camera and its last frame was taken at least 1/fps ago. Only then
``frame`` downscales the image (a fresh small array, so the decoder may reuse its buffer; a
frame in GPU memory is shrunk there, segpost.ui.thumbnail) and leaves it, with its record, for
the encoder thread. With nobody watching nothing is encoded and the encoder thread sleeps on a
condition.

A frame's JPEG and its record travel as one message (``frame_message``): the page draws that
record's masks over that JPEG, never over another frame.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .thumbnail import downscale, on_device

MAX_EVENTS = 500          # kept for a viewer who connects later
FPS_WINDOW_S = 10.0       # as segpost_camera_fps on /metrics
ERROR_EVENTS = ("error", "disconnected", "skipped")


def frame_message(camera: Any, image: np.ndarray, record: Dict[str, Any], quality: int) -> str:
    """One JSON text: the JPEG (base64) and the record of the same frame, with its index."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode a JPEG")
    return json.dumps({"type": "frame", "camera": camera, "frame_index": record.get("frame_index"),
                       "width": int(image.shape[1]), "height": int(image.shape[0]),
                       "jpeg": base64.b64encode(jpeg.tobytes()).decode("ascii"), "record": record},
                      separators=(",", ":"))


class CameraHealth:
    """One camera's numbers, from the records and its source's counters (what /metrics reads)."""

    def __init__(self, source: Any):
        self.source = source
        self.frames = 0
        self.skipped = 0
        self.times: deque = deque()
        self.last_frame: Optional[float] = None
        self.last_error: Optional[str] = None
        self.last_error_time: Optional[float] = None
        self.finished = False

    def snapshot(self, now: float) -> Dict[str, Any]:
        times = [t for t in tuple(self.times) if now - t <= FPS_WINDOW_S]   # tuple(): one step, the runner appends
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        stats = dict(getattr(self.source, "stats", {}) or {})
        seen = self.frames + self.skipped
        return {"fps": round((len(times) - 1) / span, 2) if span > 0 else 0.0, "frames": self.frames,
                "skipped": self.skipped, "skipped_share": round(self.skipped / seen, 4) if seen else 0.0,
                "stale_s": None if self.last_frame is None else round(now - self.last_frame, 2),
                "reconnects": int(stats.get("reconnects", 0)), "dropped": int(stats.get("dropped", 0)),
                "errors": int(stats.get("errors", 0)), "last_error": self.last_error,
                "last_error_time": self.last_error_time, "finished": self.finished}


class LiveHub:
    """The runner's observer (``wants_frame``, ``frame``, ``record``) and the viewers' source.

    `cameras`: (camera id, CameraSource) as the runner has them. A viewer is any object with
    ``watching`` (a set of camera ids) and ``deliver(kind, text)`` (thread-safe); the server
    registers its WebSocket viewers with ``add_viewer`` / ``remove_viewer``.
    """

    def __init__(self, cameras: Sequence[Tuple[Any, Any]], *, fps: float = 4.0, max_width: int = 640,
                 quality: int = 75, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 log: Callable[[str], None] = lambda message: None):
        if not 0.1 <= fps <= 30:
            raise ValueError(f"the live page's fps must be in [0.1, 30], got {fps}")
        if not 64 <= max_width <= 3840:
            raise ValueError(f"the live page's max_width must be in [64, 3840], got {max_width}")
        if not 10 <= quality <= 95:
            raise ValueError(f"the live page's JPEG quality must be in [10, 95], got {quality}")
        self.cameras = [(camera, getattr(source, "shown_url", str(camera))) for camera, source in cameras]
        self.interval, self.max_width, self.quality = 1.0 / fps, max_width, quality
        self._clock, self._wall, self._log = clock, wall, log
        self.frame_error: Optional[str] = None
        self._health = {camera: CameraHealth(source) for camera, source in cameras}
        self._events: deque = deque(maxlen=MAX_EVENTS)
        self.zones_file: Any = None               # a ZonesFile when the run has --zones FILE (the editor)
        self._occupancy: Dict[str, Dict[str, Dict[str, int]]] = {}   # camera -> zone -> class -> count
        self._lock = threading.Lock()
        self._viewers: List[Any] = []
        self._watched: Dict[Any, int] = {}        # camera -> viewers watching it (read by wants_frame)
        self._taken: Dict[Any, float] = {}        # camera -> when its last frame was taken
        self._pending: Dict[Any, Tuple[np.ndarray, Dict[str, Any]]] = {}
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self.taken = 0                             # frames downscaled for the viewers so far
        self.encodes = 0                           # JPEGs encoded so far (the tests count both)
        self.encode_seconds = 0.0                  # wall time of the encoding
        self.encoder_cpu = 0.0                     # CPU seconds of the encoder thread's work
        self.frame_cpu = 0.0                       # CPU seconds of frame() in the runner's thread
        self._gpu: Any = None                      # GpuThumbnails at the first device frame (False: none)
        self._thread = threading.Thread(target=self._encode_loop, daemon=True, name="segpost ui encoder")
        self._thread.start()

    # -- the runner's side (its thread) --------------------------------------------------------

    def wants_frame(self, camera: Any) -> bool:
        if not self._watched.get(camera):
            return False
        return self._clock() - self._taken.get(camera, -1e9) >= self.interval

    def frame(self, camera: Any, image: Any, record: Dict[str, Any]) -> None:
        cpu = time.thread_time()
        self._taken[camera] = self._clock()
        self.taken += 1
        try:
            small = downscale(image, self.max_width, self._thumbnails(image))
        except Exception as exc:   # the page never fails a round: the frame is skipped, said once
            if not self.frame_error:
                self.frame_error = f"{type(exc).__name__}: {exc}"
                self._log(f"segpost: live page: a frame could not be prepared ({self.frame_error}); "
                          "the page skips such frames")
            return
        with self._lock:
            self._pending[camera] = (small, record)    # a newer frame replaces one not yet encoded
            self._wake.notify()
        self.frame_cpu += time.thread_time() - cpu

    def _thumbnails(self, image: Any) -> Any:
        """The GPU downscaler for device frames (made once), or None: host frames, or no CuPy
        kernel here (the frame is then copied whole and converted by OpenCV, said once)."""
        if self._gpu is None and on_device(image):
            from .thumbnail import GpuThumbnails

            try:
                self._gpu = GpuThumbnails()
            except Exception as exc:
                self._gpu = False
                self._log(f"segpost: live page: frames are downscaled on the host ({type(exc).__name__}: {exc})")
        return self._gpu or None

    def record(self, record: Dict[str, Any]) -> None:
        camera = record.get("camera")
        health = self._health.get(camera)
        if "detections" in record:
            if health is not None:
                now = self._wall()
                health.frames += 1
                health.last_frame = now
                health.times.append(now)
                while health.times and now - health.times[0] > FPS_WINDOW_S:
                    health.times.popleft()
            return
        kind = record.get("event")
        if health is not None:
            if kind == "skipped":
                health.skipped += 1
            if kind in ERROR_EVENTS:
                health.last_error, health.last_error_time = str(record.get("message", ""))[:500], record.get("time")
            if kind == "finished":
                health.finished = True
        with self._lock:
            if kind == "zone_count":   # what lights a zone on the page: occupancy as the records say
                zones = self._occupancy.setdefault(str(camera), {})
                zones.setdefault(str(record.get("zone")), {})[str(record.get("class"))] = int(record.get("count") or 0)
            self._events.append(record)
            viewers = list(self._viewers)
        if viewers:
            text = json.dumps({"type": "event", "event": record}, separators=(",", ":"), default=str)
            for viewer in viewers:
                viewer.deliver("event", text)

    # -- the viewers' side ---------------------------------------------------------------------

    def add_viewer(self, viewer: Any) -> None:
        with self._lock:
            self._viewers.append(viewer)
            self._recount()

    def remove_viewer(self, viewer: Any) -> None:
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)
            self._recount()

    def watch(self, viewer: Any, cameras: Iterable[Any]) -> None:
        known = {camera for camera, _ in self.cameras}
        with self._lock:
            viewer.watching = {camera for camera in cameras if camera in known}
            self._recount()

    def _recount(self) -> None:
        watched: Dict[Any, int] = {}
        for viewer in self._viewers:
            for camera in viewer.watching:
                watched[camera] = watched.get(camera, 0) + 1
        self._watched = watched

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def hello(self) -> Dict[str, Any]:
        with self._lock:
            events = list(self._events)
        return {"cameras": [{"id": camera, "source": source} for camera, source in self.cameras],
                "events": events, "health": self.health(), **self.zones_message(), "type": "hello"}

    def zones_message(self) -> Dict[str, Any]:
        """The zones drawn on the page, whether the editor may save them, and their occupancy."""
        editable = self.zones_file is not None
        with self._lock:
            occupancy = json.loads(json.dumps(self._occupancy))
        return {"type": "zones", "zones": self.zones_file.value if editable else self.zones_shown,
                "editable": editable, "occupancy": occupancy}

    zones_shown: Dict[str, Any] = {}   # the zones of a run without a zones file (the config's): shown, not editable

    def zones_changed(self) -> None:
        """The editor saved: every viewer draws the new zones."""
        with self._lock:
            viewers = list(self._viewers)
        text = json.dumps(self.zones_message(), separators=(",", ":"), default=str)
        for viewer in viewers:
            viewer.deliver("event", text)

    def health(self) -> Dict[str, Any]:
        now = self._wall()
        return {str(camera): self._health[camera].snapshot(now) for camera, _ in self.cameras}

    def stats(self) -> Dict[str, Any]:
        return {"viewers": len(self._viewers), "taken": self.taken, "encodes": self.encodes,
                "encode_seconds": round(self.encode_seconds, 4), "encoder_cpu_s": round(self.encoder_cpu, 4),
                "frame_cpu_s": round(self.frame_cpu, 4),
                "watched": {str(c): n for c, n in self._watched.items()}}

    # -- the encoder thread --------------------------------------------------------------------

    def _encode_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                camera, (image, record) = self._pending.popitem()
                viewers = [v for v in self._viewers if camera in v.watching]
            if not viewers:
                continue
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                text = frame_message(camera, image, record, self.quality)
            except Exception:   # a frame the codec refuses is not worth the page: the next one comes
                continue
            self.encodes += 1
            self.encode_seconds += time.perf_counter() - started
            for viewer in viewers:
                viewer.deliver("frame", text, camera)
            self.encoder_cpu += time.thread_time() - cpu

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5.0)
