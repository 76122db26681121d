"""Warm standby workers: worker actors that have built their engines and pipeline (a compiled
Sam3Model takes about a minute, a TensorRT engine seconds to deserialize) and wait. When a worker
dies, the coordinator hands its camera group to a ready standby, which starts its first round at
once, and a new standby is started in the background.

Each standby holds its share of a GPU (``standby_gpus`` in Ray's accounting) and its pipeline's
GPU memory while it waits; a standby that dies or stops answering is replaced, after a delay
that grows while they keep failing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..io.sources import backoff_delay
from . import kill_actor, short_error
from .heartbeat import Heartbeat


@dataclass
class Standby:
    actor: Any
    started_at: float
    heartbeat: Heartbeat = field(default_factory=Heartbeat)   # answered once the actor is built: ready
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.heartbeat.answered


class StandbyPool:
    """`count` standbys made by `make_actor()`; `heartbeat_seconds`: a ready one that does not
    answer for this long is replaced; `backoff`: (first, longest) delay between failed starts."""

    def __init__(self, count: int, make_actor: Callable[[], Any], heartbeat_seconds: float,
                 backoff: tuple, log: Callable[[str], None]):
        self.count, self._make, self._log = count, make_actor, log
        self._heartbeat, self._backoff = heartbeat_seconds, backoff
        self.members: List[Standby] = []
        self._failures = 0
        self._next_start = 0.0

    def poll(self, now: float) -> None:
        """Marks standbys ready, replaces dead or hung ones, starts missing ones."""
        for standby in list(self.members):
            was_ready = standby.ready
            try:
                answer = standby.heartbeat.poll(standby.actor, now)
            except Exception as exc:  # the actor died while building or waiting
                self._lost(standby, short_error(exc))
                continue
            if answer is not None:
                standby.stats = answer
                if not was_ready:
                    self._failures = 0
                    self._log(f"segpost fleet: standby ready on {answer.get('node')} "
                              f"(GPU {','.join(answer.get('gpus') or []) or '-'}) after "
                              f"{now - standby.started_at:.1f} s")
            elif standby.ready and standby.heartbeat.silent(now) > self._heartbeat:
                self._lost(standby, f"no answer for {self._heartbeat:g} s (hung)")
        while len(self.members) < self.count and now >= self._next_start:
            self.members.append(Standby(self._make(), now))

    def _lost(self, standby: Standby, why: str) -> None:
        kill_actor(standby.actor)
        self.members.remove(standby)
        self._failures += 1
        delay = backoff_delay(self._failures, *self._backoff)
        self._next_start = time.monotonic() + delay
        self._log(f"segpost fleet: a standby worker was lost ({why}); another starts in {delay:.1f} s")

    def take(self) -> Optional[Any]:
        """A ready standby's actor (it leaves the pool; poll() starts a new one), or None."""
        for standby in self.members:
            if standby.ready:
                self.members.remove(standby)
                return standby.actor
        return None

    def has_ready(self) -> bool:
        return any(s.ready for s in self.members)

    def status(self) -> List[Dict[str, Any]]:
        return [{"state": "ready" if s.ready else "starting", "node": s.stats.get("node"), "gpus": s.stats.get("gpus"),
                 "pid": s.stats.get("pid"), "build_seconds": s.stats.get("build_seconds")} for s in self.members]

    def shutdown(self) -> None:
        for standby in self.members:
            kill_actor(standby.actor)
        self.members = []

