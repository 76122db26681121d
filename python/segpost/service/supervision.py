"""What keeps a long-running process honest: a watchdog that ends a hung process with a clear
message (exit status 3, for a supervisor to restart it), and SIGINT/SIGTERM turned into a clean
stop (the round in flight finishes, the sinks flush)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional

EXIT_HUNG = 3


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)



class Watchdog:
    """Ends the process (status EXIT_HUNG) when a round runs longer than `seconds`, after a clear
    message and a best-effort flush of `on_hang`."""

    def __init__(self, seconds: float, describe: Callable[[], str], on_hang: Callable[[], None],
                 log: Callable[[str], None] = log_stderr, exit: Callable[[int], None] = os._exit):
        if seconds <= 0:
            raise ValueError(f"the watchdog needs a positive number of seconds, got {seconds}")
        self.seconds, self._describe, self._on_hang, self._log, self._exit = seconds, describe, on_hang, log, exit
        self._round_started: Optional[float] = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="segpost watchdog")
        self._thread.start()

    def round_started(self) -> None:
        with self._lock:
            self._round_started = time.monotonic()

    def round_finished(self) -> None:
        with self._lock:
            self._round_started = None

    def _watch(self) -> None:
        while not self._done.wait(min(self.seconds / 4, 1.0)):
            with self._lock:
                started = self._round_started
            if started is not None and time.monotonic() - started > self.seconds:
                self._log(f"segpost: watchdog: a round has run for more than {self.seconds:g} s ({self._describe()}); "
                          "the engine or the GPU is hung. Exiting with status 3 so a supervisor can restart it.")
                flusher = threading.Thread(target=self._on_hang, daemon=True)
                flusher.start()
                flusher.join(timeout=5.0)
                self._exit(EXIT_HUNG)
                return

    def close(self) -> None:
        self._done.set()


@contextmanager
def stop_on_signals(stop: threading.Event, log: Callable[[str], None] = log_stderr, restore: bool = True):
    """SIGINT/SIGTERM set `stop` (the loop finishes its round and exits cleanly); a second one
    interrupts at once. Only in the main thread; elsewhere this does nothing. restore=False keeps
    the handlers after the block, for a process on its way out: a SIGTERM that comes while it
    flushes and exits must not kill it (-15) after a clean run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        log(f"segpost: {signal.Signals(signum).name}: finishing the round in flight, then flushing and exiting "
            "(send it again to stop at once)")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items() if restore else ():
            signal.signal(signum, old)
