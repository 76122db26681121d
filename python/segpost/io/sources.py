"""Camera sources: video files read frame by frame, live streams read latest-frame-first.

A ``CameraSource`` is one camera. It drives a ``Decoder`` (one open connection: OpenCV on the
CPU in decoders.py, NVDEC in nvdec.py) and adds what cameras need:
- files: every frame, in order; the end of the file finishes the camera;
- live streams (RTSP/HTTP URLs, device indices): a thread decodes every frame (P-frames need the
  frames before them) and keeps only the latest, so a slow round skips stale frames (counted as
  dropped) instead of queueing them; a stream that ends, fails or stalls (no frame for
  ``stall_seconds``) is reopened with exponential backoff, and the gap is reported; the other
  cameras are not affected;
- events (errors, disconnections, reconnections with the gap) for the records and metrics, with
  the URL's credentials redacted.
"""
from __future__ import annotations

import atexit
import itertools
import threading
import weakref
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .decoders import Decoder, OpenCVDecoder
from .secrets import Redactor


def is_live(url: str) -> bool:
    return url.isdigit() or "://" in url


@dataclass(frozen=True)
class CameraFrame:
    index: int              # frames this camera has decoded before this one (across reconnects)
    pts: Optional[float]    # presentation timestamp, seconds, as the stream gives it
    image: Any              # BGR uint8 array (CPU decoding) or a segpost.YuvFrame (NVDEC)


@dataclass(frozen=True)
class SourceEvent:
    kind: str               # "error", "disconnected", "reconnected", "finished"
    message: str
    details: Dict[str, Any] = field(default_factory=dict)


def backoff_delay(failures: int, first: float, limit: float) -> float:
    """The wait after `failures` failures in a row: first, 2 first, 4 first, ... capped at limit
    (the exponent too, so that months of failures never overflow)."""
    return min(first * 2.0 ** min(max(failures, 1) - 1, 64), limit)


def backoff_delays(first: float, limit: float):
    """backoff_delay after 1, 2, 3, ... failures."""
    return (backoff_delay(failures, first, limit) for failures in itertools.count(1))


class CameraSource:
    """One camera (see the module docstring). ``read()`` gives the next CameraFrame or None when
    there is nothing new; ``finished`` is True once a file ended or could not be opened;
    ``drain_events()`` the events since the last call; ``stats`` the counters.

    A thread decodes ahead for both kinds: a live stream keeps only its newest frame; a file
    fills up to ``prefetch`` frames and waits for room (nothing dropped), so cameras decode in
    parallel and while the GPU works. A frame read() returns stays valid until the next read().
    """

    def __init__(self, url: str, open_decoder: Callable[[str], Decoder], *, live: Optional[bool] = None,
                 redactor: Optional[Redactor] = None, stall_seconds: float = 10.0,
                 backoff: Tuple[float, float] = (0.5, 30.0), clock: Callable[[], float] = time.monotonic,
                 start_index: int = 0, prefetch: int = 2):
        """`start_index`: resume a camera (the fleet after a restart): a file skips its first
        start_index frames; a live stream numbers its frames from start_index on."""
        self.redactor = redactor or Redactor()
        self.url = url
        self.shown_url = self.redactor.register(url)
        self.live = is_live(url) if live is None else live
        self._open_decoder, self._stall_seconds, self._backoff, self._clock = open_decoder, stall_seconds, backoff, clock
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)   # a slot freed, or a frame ready, or the end
        self._events: Deque[SourceEvent] = deque(maxlen=1000)
        self.stats = {"decoded": 0, "delivered": 0, "dropped": 0, "reconnects": 0, "errors": 0}
        self.error: Optional[str] = None
        self.finished = False
        self.decoder_description: Optional[str] = None
        if start_index < 0:
            raise ValueError(f"start_index must be >= 0, got {start_index}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self._index = start_index
        self._closed = threading.Event()
        self._slots: Dict[int, Any] = {}
        self._slot_count = 3 if self.live else prefetch + 1   # + the one lent to the caller
        self._ready: Deque[Tuple[int, int, Optional[float]]] = deque()   # (slot, frame index, pts), oldest first
        self._lent: Optional[int] = None     # slot handed out by the last read()
        self._ended = False                  # a file's thread is done (end of file or failure)
        self._file_frames: Optional[int] = None   # the file's frame count, once its end was decoded
        self._generation = 0
        self._threads: List[threading.Thread] = []
        self._blocked_since: Optional[float] = None   # when the current decoder call began
        self._stalled_at: Optional[float] = None      # when the call of an abandoned thread began
        if self.live:
            self._start_pump(self._pump_live)
            return
        try:
            decoder = self._open()   # at once: a missing file is reported before the first round
        except Exception as exc:  # every decoder reports failures its own way
            self._fail(f"cannot open {self.shown_url}: {self.redactor(exc)}")
            self.finished = self._ended = True
            return
        self._start_pump(lambda generation: self._pump_file(decoder, start_index))

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> Optional[CameraFrame]:
        with self._lock:
            if self._lent is not None:
                self._lent = None
                self._room.notify_all()
            if self.live:
                blocked = self._blocked_since
                if blocked is not None and self._clock() - blocked > self._stall_seconds and not self._closed.is_set():
                    self._restart_stalled()
            else:
                deadline = self._clock() + self._stall_seconds
                while not self._ready and not self._ended and not self._closed.is_set():
                    if self._clock() > deadline:
                        self._fail(f"{self.shown_url}: no frame decoded for {self._stall_seconds:g} s; giving up")
                        self._ended = True
                        break
                    self._room.wait(0.05)
                if not self._ready and (self._ended or self._closed.is_set()):
                    self.finished = True
                    if self._file_frames is not None:   # reported once its last frame was read, not decoded
                        self._events.append(SourceEvent("finished", f"{self.shown_url}: end of file after "
                                                        f"{self._file_frames} frames", {"frames": self._file_frames}))
                        self._file_frames = None
            if not self._ready:
                return None
            slot, index, pts = self._ready.popleft()
            self._lent = slot
            self.stats["delivered"] += 1
            return CameraFrame(index, pts, self._slots[slot])

    def drain_events(self) -> List[SourceEvent]:
        events = []
        with self._lock:
            while self._events:
                events.append(self._events.popleft())
        return events

    def close(self, timeout: float = 5.0) -> None:
        """Stops the decoding thread and waits for it (a decoder's own threads must not outlive the
        interpreter); a thread stuck in a stalled call is left behind after `timeout`."""
        with self._lock:
            self._closed.set()
            self.finished = True
            self._room.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals ----------------------------------------------------------------------------

    def _open(self) -> Decoder:
        decoder = self._open_decoder(self.url)
        if self.decoder_description is None:
            self.decoder_description = decoder.describe()
        return decoder

    def _event(self, kind: str, message: str, **details) -> None:
        with self._lock:
            self._events.append(SourceEvent(kind, message, details))

    def _fail(self, message: str) -> None:
        """Called with or without the lock (the events deque takes appends from any thread)."""
        self.error = message
        self.stats["errors"] += 1
        self._events.append(SourceEvent("error", message, {}))

    def _start_pump(self, target: Callable[[int], None]) -> None:
        _OPEN.add(self)
        thread = threading.Thread(target=target, args=(self._generation,), daemon=True,
                                  name=f"segpost camera {self.shown_url}")
        self._threads.append(thread)
        thread.start()

    def _restart_stalled(self) -> None:
        """Called with the lock held: a decoder call (open or read) has not returned for
        stall_seconds. Its thread is abandoned (it exits when the call returns) and a new one
        reconnects."""
        self._generation += 1
        self._stalled_at, self._blocked_since = self._blocked_since, None
        self.stats["errors"] += 1
        self._events.append(SourceEvent("disconnected", f"{self.shown_url}: no frame for {self._stall_seconds:g} s; "
                                        "reconnecting", {"reason": "stalled"}))
        self._start_pump(self._pump_live)

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._closed.is_set()

    def _call(self, generation: int, function: Callable[[], Any]) -> Any:
        """A decoder call that may block, timed for the stall check."""
        with self._lock:
            if generation == self._generation:
                self._blocked_since = self._clock()
        try:
            return function()
        finally:
            with self._lock:
                if generation == self._generation:
                    self._blocked_since = None

    def _publish(self, decoder: Decoder, got: Tuple[Optional[float], Any], generation: int) -> bool:
        """Keeps a decoded frame in a free slot and queues it; a live stream replaces what was not
        read yet (dropped), a file waits for room. False when this thread should stop."""
        pts, image = got
        with self._lock:
            while True:
                if not self._current(generation):
                    return False
                busy = {self._lent} | {slot for slot, _, _ in self._ready}
                free = [s for s in range(self._slot_count) if s not in busy]
                if free or self.live:
                    break
                self._room.wait(0.1)
            if not free:   # live, every slot queued: the oldest unread frame goes
                self._ready.popleft()
                self.stats["dropped"] += 1
                free = [s for s in range(self._slot_count) if s != self._lent and s not in {r[0] for r in self._ready}]
        kept = decoder.keep(image, free[0])
        with self._lock:
            if not self._current(generation):
                return False
            if self.live:
                self.stats["dropped"] += len(self._ready)
                self._ready.clear()
            self._slots[free[0]] = kept
            self._ready.append((free[0], self._index, pts))
            self._index += 1
            self.stats["decoded"] += 1
            self._room.notify_all()
        return True

    def _pump_file(self, decoder: Decoder, skip: int) -> None:
        try:
            while not self._closed.is_set():
                try:
                    got = decoder.read()
                except Exception as exc:  # a decoder failing mid-file: report it, finish the camera
                    self._fail(f"{self.shown_url}: decoding failed: {self.redactor(exc)}")
                    break
                if got is None:
                    self._file_frames = self._index
                    break
                if skip:   # resuming: frames already done
                    skip -= 1
                    continue
                if not self._publish(decoder, got, 0):
                    break
        finally:
            decoder.close()
            with self._lock:
                self._ended = True
                self._room.notify_all()

    def _pump_live(self, generation: int) -> None:
        delays = backoff_delays(*self._backoff)
        lost_at: Optional[float] = self._stalled_at
        connected_before = self.stats["decoded"] > 0 or self._generation > 0
        while self._current(generation):
            try:
                decoder = self._call(generation, self._open)
            except Exception as exc:  # unreachable camera, refused connection, bad codec
                if not self._current(generation):
                    return
                self._fail(f"cannot open {self.shown_url}: {self.redactor(exc)}")
                lost_at = lost_at if lost_at is not None else self._clock()
                self._closed.wait(next(delays))
                continue
            if connected_before:
                gap = self._clock() - (lost_at if lost_at is not None else self._clock())
                with self._lock:
                    self.stats["reconnects"] += 1
                    self._events.append(SourceEvent("reconnected", f"{self.shown_url}: reconnected after {gap:.1f} s",
                                                    {"gap_seconds": round(gap, 3), "next_frame": self._index}))
            delays = backoff_delays(*self._backoff)
            connected_before = True
            ended = self._decode_until_failure(decoder, generation)
            decoder.close()
            if not self._current(generation):
                return
            lost_at = self._clock()
            self._event("disconnected", f"{self.shown_url}: {ended}; reconnecting", reason=ended,
                        last_frame=self._index - 1)
            self._closed.wait(next(delays))

    def _decode_until_failure(self, decoder: Decoder, generation: int) -> str:
        while self._current(generation):
            try:
                got = self._call(generation, decoder.read)
            except Exception as exc:  # decoders raise their own types
                return f"decoding failed ({self.redactor(exc)})"
            if got is None:
                return "the stream ended"
            if not self._publish(decoder, got, generation):
                return "abandoned"
        return "closed"


def decoder_factory(decode: str, *, gpu: int = 0, timeout_seconds: float = 10.0
                    ) -> Tuple[Callable[[str], Decoder], str]:
    """(open_decoder, why) for ``--decode gpu|cpu|auto``. auto: NVDEC where PyNvVideoCodec imports
    and the GPU decodes the camera's codec, OpenCV on the CPU otherwise (per camera; its decoder's
    describe() says which and why)."""
    def opencv(url: str) -> Decoder:
        return OpenCVDecoder(url, timeout_seconds=min(timeout_seconds, 30.0))

    if decode not in ("gpu", "cpu", "auto"):
        raise ValueError(f"decode must be gpu, cpu or auto, got {decode!r}")
    if decode == "cpu":
        return opencv, "CPU decoding (OpenCV)"
    from .nvdec import NvdecDecoder, NvdecUnavailable, import_nvdec

    try:
        import_nvdec()
    except NvdecUnavailable as exc:
        if decode == "gpu":
            raise ValueError(f"--decode gpu: {exc}") from None
        return opencv, f"CPU decoding (OpenCV): {exc}"
    if decode == "gpu":
        return (lambda url: NvdecDecoder(url, gpu=gpu)), "GPU decoding (NVDEC)"

    def auto(url: str) -> Decoder:
        try:
            return NvdecDecoder(url, gpu=gpu)
        except NvdecUnavailable as exc:
            reason = str(exc)   # `exc` itself is unbound once the except block ends
            decoder = opencv(url)
            decoder.describe = lambda: f"OpenCV (CPU), because {reason}"  # type: ignore[method-assign]
            return decoder

    return auto, "NVDEC (GPU) where the GPU decodes the camera's codec, OpenCV (CPU) otherwise"


# A decoding thread still in OpenCV or NVDEC at finalization aborts the process ("exception not
# rethrown"): every source still open at exit is closed first, whatever path led there.
_OPEN: "weakref.WeakSet[CameraSource]" = weakref.WeakSet()
atexit.register(lambda: [source.close(timeout=2.0) for source in list(_OPEN)])
