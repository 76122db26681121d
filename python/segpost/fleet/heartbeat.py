"""What the coordinator and the standby pool both watch in a worker actor: its stats() answers,
asked about once a second without waiting."""
from __future__ import annotations

from typing import Any, Dict, Optional

from . import import_ray


class Heartbeat:
    """`poll()` returns an answer that came since the last poll (None: none yet) and asks again;
    it raises what the actor's call raised (the actor died). `answered`: it answered once, so it
    was placed and built; `silent(now)`: how long the question in flight has gone unanswered."""

    def __init__(self, answered: bool = False):
        self.answered = answered
        self._ref: Any = None
        self._sent = 0.0

    def poll(self, actor: Any, now: float) -> Optional[Dict[str, Any]]:
        answer = None
        if self._ref is not None:
            done, _ = import_ray().wait([self._ref], timeout=0)
            if done:
                ref, self._ref = self._ref, None
                answer = import_ray().get(ref)
                self.answered = True
        if self._ref is None and now - self._sent >= 1.0:
            self._ref, self._sent = actor.stats.remote(), now
        return answer

    def silent(self, now: float) -> float:
        return now - self._sent if self._ref is not None else 0.0
