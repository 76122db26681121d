"""The fleet's coordinator, in the driver process (`segpost fleet`).

It starts the sink actor and one worker actor per camera group (Ray spreads them over GPUs and
nodes), then watches every worker: a run() that ends in an error (the actor died: its process
was killed, its node was lost, its watchdog fired) or a stats() call unanswered for
``heartbeat_seconds`` (hung) marks the worker dead. A dead worker is replaced after a delay that
doubles with each restart of that group (restart_backoff), never in a hot loop, and the new one
resumes each camera after the last frame the sink committed. Status (per worker: node, GPU,
cameras, frames/s, round p50/p95, restarts, last error) goes to a JSON file every second, to a
named Ray actor that ``segpost fleet status`` reads, and to a line on stderr every
``status_every`` seconds. ``stop`` ends it cleanly: workers finish their round, the sink
flushes and fsyncs.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..io.secrets import Redactor
from . import import_ray
from .config import CameraSpec, FleetConfig
from .sink import RecordSink
from .worker import CameraWorker, worker_options

STATUS_ACTOR = "segpost-fleet-status"
_WAITING = "waiting for the cluster to place it (resources) or still constructing"
NAMESPACE = "segpost"


class StatusBoard:
    """A named actor holding the fleet's latest status, for `segpost fleet status`."""

    def __init__(self):
        self._status: Dict[str, Any] = {}

    def publish(self, status: Dict[str, Any]) -> None:
        self._status = status

    def get(self) -> Dict[str, Any]:
        return self._status


@dataclass
class Slot:
    """One camera group and the worker currently serving it."""

    index: int
    cameras: List[CameraSpec]
    actor: Any = None
    run_ref: Any = None
    stats_ref: Any = None
    stats_sent: float = 0.0
    stats: Dict[str, Any] = field(default_factory=dict)
    state: str = "starting"          # starting (waiting for resources or constructing), running, finished, restarting
    restarts: int = 0
    answered: bool = False           # the actor answered once: it was placed and constructed
    last_error: Optional[str] = None
    restart_at: float = 0.0
    started_at: float = 0.0

    @property
    def name(self) -> str:
        return f"worker-{self.index}"


class Fleet:
    def __init__(self, config: FleetConfig, out: str, *, address: Optional[str] = None, status_every: float = 10.0,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
                 ray_init: Optional[Dict[str, Any]] = None, metrics: Any = None):
        self.config, self.out, self.address, self.status_every = config, out, address, status_every
        self.redactor = Redactor()
        for camera in config.cameras:
            self.redactor.register(camera.source)
        self.log = lambda m: log(self.redactor(m))
        self._ray_init = dict(ray_init or {})
        self.status_path = os.path.join(out, "fleet-status.json") if config.per_camera_files else f"{out}.status.json"
        self.slots = [Slot(i, group) for i, group in enumerate(config.camera_groups())]
        self._started_ray = False
        self._last_line = 0.0
        self.metrics, self._committed_ref = metrics, None
        self.sink = self.board = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        ray = import_ray()
        os.makedirs(self.out if self.config.per_camera_files else os.path.dirname(os.path.abspath(self.out)),
                    exist_ok=True)
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False,
                     include_dashboard=False, **self._ray_init)
            self._started_ray = True
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        on_this_node = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
        self.sink = ray.remote(RecordSink).options(num_cpus=0, max_concurrency=8,
                                                   scheduling_strategy=on_this_node).remote(
            os.path.abspath(self.out), self.config.per_camera_files, self.config.mqtt)
        try:
            ray.get_actor(STATUS_ACTOR, namespace=NAMESPACE)
            another = True
        except ValueError:   # Ray's answer for "no such actor"
            another = False
        if another:
            raise ValueError("another segpost fleet runs on this Ray cluster (its status actor exists)")
        self.board = ray.remote(StatusBoard).options(name=STATUS_ACTOR, namespace=NAMESPACE, num_cpus=0,
                                                     scheduling_strategy=on_this_node).remote()
        resources = ray.cluster_resources()
        self.log(f"segpost fleet: {len(self.config.cameras)} cameras in {len(self.slots)} workers "
                 f"({self.config.cameras_per_worker} per worker, {self.config.gpus_per_worker:g} GPU each) on a Ray "
                 f"cluster of {resources.get('GPU', 0):g} GPUs and {resources.get('CPU', 0):g} CPUs")
        committed = {}
        for slot in self.slots:
            self._launch(slot, committed)

    def _launch(self, slot: Slot, committed: Dict[str, int]) -> None:
        ray = import_ray()
        cameras = [(c.name, c.source, committed.get(c.name, -1) + 1) for c in slot.cameras]
        cls = ray.remote(CameraWorker).options(**worker_options(self.config.gpus_per_worker,
                                                                 self.config.cpus_per_worker))
        slot.actor = cls.remote(slot.name, self.config.pipeline, self.config.pipeline_dir, cameras,
                                self.config.decode, self.config.masks, self.config.stall_seconds,
                                self.config.watchdog_seconds)
        slot.run_ref = slot.actor.run.remote(self.sink)
        slot.stats_ref, slot.stats_sent, slot.answered = None, 0.0, False
        slot.state, slot.started_at = "starting", time.monotonic()
        resumed = {name: start for name, _, start in cameras if start}
        if resumed:
            self.log(f"segpost fleet: {slot.name}: started, resuming {resumed}")

    def _died(self, slot: Slot, why: str) -> None:
        ray = import_ray()
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass
        slot.restarts += 1
        slot.last_error = self.redactor(why)
        first, longest = self.config.restart_backoff
        # A worker that ran a while before dying starts over from the first delay.
        stable = time.monotonic() - slot.started_at > 60.0
        delay = first if stable else min(first * 2 ** (slot.restarts - 1), longest)
        slot.state, slot.restart_at = "restarting", time.monotonic() + delay
        slot.actor = slot.run_ref = slot.stats_ref = None
        self.log(f"segpost fleet: {slot.name} ({', '.join(c.name for c in slot.cameras)}) died: {slot.last_error}; "
                 f"restarting in {delay:.1f} s (restart {slot.restarts})")

    def supervise(self, stop: threading.Event, max_seconds: Optional[float] = None) -> None:
        """Watch, restart and report until every worker finished (file sources), `stop`, or max_seconds."""
        ray = import_ray()
        started = time.monotonic()
        while not stop.is_set() and (max_seconds is None or time.monotonic() - started < max_seconds):
            now = time.monotonic()
            for slot in self.slots:
                if slot.state in ("starting", "running"):
                    done, _ = ray.wait([slot.run_ref], timeout=0)
                    if done:
                        try:
                            summary = ray.get(slot.run_ref)
                            slot.stats = ray.get(slot.actor.stats.remote(), timeout=self.config.heartbeat_seconds)
                            slot.state = "finished"
                            ray.kill(slot.actor, no_restart=True)   # its GPU share and CPUs go back to Ray
                            self.log(f"segpost fleet: {slot.name} finished: {summary['rounds']} rounds")
                        except Exception as exc:  # RayActorError, a worker exception: both mean restart
                            self._died(slot, _short(exc))
                        continue
                    self._heartbeat(slot, now)
                elif slot.state == "restarting" and now >= slot.restart_at:
                    self._launch(slot, ray.get(self.sink.committed.remote()))
            self._publish()
            if all(slot.state == "finished" for slot in self.slots):
                break
            stop.wait(0.25)

    def _heartbeat(self, slot: Slot, now: float) -> None:
        """A worker that answered once and then stops answering is hung; one that never answered
        is still waiting for its resources or constructing (said once, never killed for it)."""
        ray = import_ray()
        if slot.stats_ref is not None:
            done, _ = ray.wait([slot.stats_ref], timeout=0)
            if done:
                try:
                    slot.stats = ray.get(slot.stats_ref)
                except Exception as exc:  # the actor is gone; run() will say so too
                    self._died(slot, _short(exc))
                    return
                slot.stats_ref, slot.answered, slot.state = None, True, "running"
            elif slot.answered and now - slot.stats_sent > self.config.heartbeat_seconds:
                self._died(slot, f"no heartbeat for {self.config.heartbeat_seconds:g} s (hung)")
                return
            elif not slot.answered and now - slot.started_at > 60.0 and slot.last_error != _WAITING:
                slot.last_error = _WAITING
                self.log(f"segpost fleet: {slot.name} has not started after 60 s: {_WAITING} "
                         f"(it needs {self.config.gpus_per_worker:g} GPU and {self.config.cpus_per_worker:g} CPUs; "
                         f"free now: {ray.available_resources()})")
        if slot.stats_ref is None and now - slot.stats_sent >= 1.0:
            slot.stats_ref, slot.stats_sent = slot.actor.stats.remote(), now

    def status(self) -> Dict[str, Any]:
        workers = []
        for slot in self.slots:
            s = slot.stats
            workers.append({"worker": slot.name, "state": slot.state, "node": s.get("node"), "gpus": s.get("gpus"),
                            "device": s.get("device"), "cameras": [c.name for c in slot.cameras],
                            "frames": s.get("frames", 0), "fps": round(s.get("fps", 0.0), 2),
                            "round_ms_p50": s.get("round_ms_p50"), "round_ms_p95": s.get("round_ms_p95"),
                            "restarts": slot.restarts, "last_error": slot.last_error or s.get("last_error"),
                            "pid": s.get("pid"), "last_round_end": s.get("last_round_end")})
        return {"time": round(time.time(), 3), "workers": workers}

    def _publish(self) -> None:
        status = self.status()
        tmp = self.status_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, self.status_path)
        self.board.publish.remote(status)
        if self.metrics is not None:
            self._observe_metrics(status)
        if self.status_every and time.monotonic() - self._last_line >= self.status_every:
            self._last_line = time.monotonic()
            self.log("segpost fleet: " + "; ".join(
                f"{w['worker']} {w['state']} {w['fps']:.1f} fps p50 {_ms(w['round_ms_p50'])} restarts {w['restarts']}"
                for w in status["workers"]))

    def _observe_metrics(self, status: Dict[str, Any]) -> None:
        """Per-camera frames come from the sink's committed indices (asked without waiting)."""
        ray = import_ray()
        committed = {}
        if self._committed_ref is not None:
            done, _ = ray.wait([self._committed_ref], timeout=0)
            if done:
                committed, self._committed_ref = ray.get(self._committed_ref), None
        if self._committed_ref is None:
            self._committed_ref = self.sink.committed.remote()
        self.metrics.observe_fleet(status, committed)

    def shutdown(self, grace_seconds: float = 8.0) -> Dict[str, Any]:
        """Workers finish their round and send their records; the sink flushes, fsyncs, closes."""
        ray = import_ray()
        running = [s for s in self.slots if s.state in ("starting", "running")]
        for slot in running:
            slot.actor.stop.remote()
        refs = [s.run_ref for s in running]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=grace_seconds)
        for slot in running:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass
        stats = ray.get(self.sink.close.remote()) if self.sink is not None else {}
        if self.board is not None:
            self._publish()
            ray.kill(self.board)   # the next fleet on this cluster may take the name
        if self._started_ray:
            ray.shutdown()
        return stats


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def read_status(address: Optional[str] = None, status_file: Optional[str] = None) -> Dict[str, Any]:
    """A running fleet's status: from its status file, or from its Ray cluster."""
    if status_file:
        with open(status_file) as f:
            return json.load(f)
    ray = import_ray()
    ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)
    try:
        board = ray.get_actor(STATUS_ACTOR, namespace=NAMESPACE)
    except ValueError:
        raise ValueError("no segpost fleet runs on this Ray cluster") from None
    return ray.get(board.get.remote())
