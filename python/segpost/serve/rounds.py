"""Frames of many requests into pipeline rounds, inside a serve replica.

A round takes the frames queued for it, up to its size. It waits for more only while frames the
replica has already received are still on their way (being checked and decoded), and at most
about one round's time: a busy replica's rounds fill up (a frame decoded while the GPU runs a
round would otherwise miss the next one and leave it half empty), and a lone client's frame never
waits for frames that nobody sent. Ray Serve's @serve.batch can only wait a fixed time or for a
full batch; this waits for what is known to be coming.
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Callable, List, Optional


class RoundBatcher:
    """`work(frames) -> answers` runs one round on `executor`; call it through `submit(frame)`.

    `expect(n)` when a request's n frames are accepted, `arrived(n)` once they are decoded (or
    failed); the frames then go to `submit`. `wait_s`: the least a round waits for company once
    nothing more is coming (Serve's batch_wait_ms); `max_wait_s`: the most it waits for frames that
    are coming (default: the last round's duration).
    """

    def __init__(self, executor: Any, work: Callable[[List[Any]], List[Any]], max_batch: int, wait_s: float,
                 max_wait_s: Optional[float] = None):
        self._executor, self._work, self._max_batch = executor, work, max_batch
        self._wait_s, self._max_wait_s = wait_s, max_wait_s
        self._last_round_s = wait_s   # until a round has run
        self._queue: collections.deque = collections.deque()
        self._coming = 0
        self._changed: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    @property
    def coming(self) -> int:
        return self._coming

    def expect(self, frames: int) -> None:
        self._coming += frames

    def arrived(self, frames: int) -> None:
        self._coming -= frames
        self._notify()

    async def submit(self, frame: Any) -> Any:
        """The frame's answer, once its round has run."""
        if self._task is None:   # the replica's event loop exists only once requests arrive
            self._changed = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._rounds())
        future = asyncio.get_running_loop().create_future()
        self._queue.append((frame, future))
        self._notify()
        return await future

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                await self._wait_change(None)
            first = loop.time()
            most = self._max_wait_s if self._max_wait_s is not None else self._last_round_s
            while len(self._queue) < self._max_batch:
                now = loop.time()
                until = first + (max(self._wait_s, most) if self._coming > 0 else self._wait_s)
                if now >= until:
                    break
                await self._wait_change(until - now)
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            started = time.monotonic()
            try:
                answers = await loop.run_in_executor(self._executor, self._work, [frame for frame, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every frame of the round gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._last_round_s = time.monotonic() - started
            for (_, future), answer in zip(batch, answers):
                if not future.done():
                    future.set_result(answer)

    async def _wait_change(self, timeout: Optional[float]) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
