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

from . import import_ray, kill_actor


@dataclass
class Standby:
    actor: Any
    started_at: float
    ping_ref: Any = None              # stats(): answered once the actor is built
    ping_sent: float = 0.0
    ready: bool = False
    stats: Dict[str, Any] = field(default_factory=dict)


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
        ray = import_ray()
        for standby in list(self.members):
            if standby.ping_ref is not None:
                done, _ = ray.wait([standby.ping_ref], timeout=0)
                if done:
                    try:
                        standby.stats = ray.get(standby.ping_ref)
                    except Exception as exc:  # the actor died while building or waiting
                        self._lost(standby, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
                        continue
                    if not standby.ready:
                        self._failures = 0
                        self._log(f"segpost fleet: standby ready on {standby.stats.get('node')} "
                                  f"(GPU {','.join(standby.stats.get('gpus') or []) or '-'}) after "
                                  f"{now - standby.started_at:.1f} s")
                    standby.ready, standby.ping_ref = True, None
                elif standby.ready and now - standby.ping_sent > self._heartbeat:
                    self._lost(standby, f"no answer for {self._heartbeat:g} s (hung)")
                    continue
            if standby.ping_ref is None and now - standby.ping_sent >= 1.0:
                standby.ping_ref, standby.ping_sent = standby.actor.stats.remote(), now
        while len(self.members) < self.count and now >= self._next_start:
            self.members.append(Standby(self._make(), now))

    def _lost(self, standby: Standby, why: str) -> None:
        kill_actor(standby.actor)
        self.members.remove(standby)
        self._failures += 1
        first, longest = self._backoff
        delay = min(first * 2 ** (self._failures - 1), longest)
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

