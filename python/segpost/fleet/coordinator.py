"""The fleet's coordinator, in the driver process (`segpost fleet`).

It starts the sink actors (one per shard, on this node, restarted by Ray when they die), the
standby workers if any, and one worker actor per camera group (Ray spreads them over GPUs and
nodes), then watches every worker: a run() that ends in an error (the actor died: its process
was killed, its node was lost, its watchdog fired) or a stats() call unanswered for
``heartbeat_seconds`` (hung) marks the worker dead. A dead worker's group goes at once to a ready
standby; without one, or when the group keeps failing, a new worker starts after a delay that
doubles with each consecutive failure (restart_backoff), never in a hot loop. Either way each
camera resumes where the sink's output ends: file cameras after their last written frame, live
cameras at their newest frame, with a gap event; the tracks the dead worker left open get their
``track_ended`` line first (reason "worker lost"). A restarted `segpost fleet` with the same
--out resumes the same way, from the files. Status (per worker: node, GPU, cameras, frames/s,
round p50/p95, restarts, last error; the standbys) goes to a JSON file every second, to a named
Ray actor that ``segpost fleet status`` reads, and to a line on stderr every ``status_every``
seconds. ``stop`` ends it cleanly: workers finish their round, the sinks fsync and close.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from ..io.secrets import Redactor
from ..io.sources import backoff_delay, is_live
from . import import_ray, kill_actor, short_error
from .config import CameraSpec, FleetConfig
from .heartbeat import Heartbeat
from .shards import close_sinks, committed_state, end_open_tracks, sink_name, start_sinks
from .standby import StandbyPool
from .status import NAMESPACE, STATUS_ACTOR, StatusBoard, write_status_file
from .worker import Camera, CameraWorker, worker_options

_WAITING = "waiting for the cluster to place it (resources) or still constructing"
TRACKS_LOST = "worker lost"   # the reason of the track_ended lines the sink writes for a dead worker
STABLE_SECONDS = 60.0   # a worker that ran this long before dying starts its group's backoff over


@dataclass
class Slot:
    """One camera group and the worker currently serving it."""

    index: int
    cameras: List[CameraSpec]
    actor: Any = None
    run_ref: Any = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)   # heartbeat.answered: placed and built
    stats: Dict[str, Any] = field(default_factory=dict)
    state: str = "starting"          # starting (waiting for resources or constructing), running, finished, restarting
    restarts: int = 0
    failures: int = 0                # consecutive deaths, each within STABLE_SECONDS of its start
    last_error: Optional[str] = None
    restart_at: float = 0.0
    started_at: float = 0.0

    @property
    def name(self) -> str:
        return f"worker-{self.index}"


class Fleet:
    def __init__(self, config: FleetConfig, out: str, *, address: Optional[str] = None, status_every: float = 10.0,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
                 ray_init: Optional[Dict[str, Any]] = None, metrics: Any = None, waiting_report_seconds: float = 60.0,
                 page_frames: bool = False):
        self.config, self.out, self.address, self.status_every = config, out, address, status_every
        self.page_frames = page_frames   # the workers keep frames for the fleet's page while it asks
        self.redactor = Redactor()
        for camera in config.cameras:
            self.redactor.register(camera.source)
        self.log = lambda m: log(self.redactor(m))
        self._ray_init = dict(ray_init or {})
        self.status_path = os.path.join(out, "fleet-status.json") if config.per_camera_files else f"{out}.status.json"
        self.slots = [Slot(i, group) for i, group in enumerate(config.camera_groups())]
        self.waiting_report_seconds = waiting_report_seconds
        self._started_ray = False
        self._last_line = 0.0
        self.metrics, self._committed_refs = metrics, None
        self.sinks: List[Any] = []
        self.board = self.standbys = None
        self.last_status: Optional[Dict[str, Any]] = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            # Without an address, a Ray instance of our own: address=None would join whatever
            # cluster Ray's session file last named, a dead one included.
            ray.init(address=self.address or "local", namespace=NAMESPACE, log_to_driver=False,
                     include_dashboard=False, **self._ray_init)
            self._started_ray = True
        os.makedirs(self.out if self.config.per_camera_files else os.path.dirname(os.path.abspath(self.out)),
                    exist_ok=True)
        self._claim_names()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # The sinks write this machine's disk; Ray restarts one that dies and re-sends its calls.
        on_this_node = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        shards = self.config.sink_shards
        self.sinks = start_sinks(self.config, self.out, on_this_node)
        self.board = ray.remote(StatusBoard).options(name=STATUS_ACTOR, namespace=NAMESPACE, num_cpus=0,
                                                     scheduling_strategy=on_this_node).remote()
        resources = ray.cluster_resources()
        self.log(f"segpost fleet: {len(self.config.cameras)} cameras in {len(self.slots)} workers "
                 f"({self.config.cameras_per_worker} per worker, {self.config.gpus_per_worker:g} GPU each, "
                 f"{self.config.standby_workers} standby, {shards} sink shard(s)) on a Ray cluster of "
                 f"{resources.get('GPU', 0):g} GPUs and {resources.get('CPU', 0):g} CPUs")
        self.standbys = StandbyPool(self.config.standby_workers,
                                    lambda: self._new_worker("standby", self.config.standby_gpus),
                                    self.config.heartbeat_seconds, self.config.restart_backoff, self.log)
        state = self.committed_state()
        for slot in self.slots:
            self._launch(slot, state)
        self.standbys.poll(time.monotonic())

    def _claim_names(self) -> None:
        """Refuses to start beside a live fleet on this cluster. A killed fleet's actors die with
        it (Ray ends a dead driver's actors); until their names are free, its sinks may still
        write, so this waits for them."""
        ray = import_ray()
        deadline = time.monotonic() + 60.0
        for name in [STATUS_ACTOR] + [sink_name(shard) for shard in range(self.config.sink_shards)]:
            while True:
                try:
                    actor = ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:   # Ray's answer for "no such actor"
                    break
                try:
                    ray.get(actor.__ray_ready__.remote(), timeout=10)
                except Exception:  # its fleet was killed: the actor is dying
                    if time.monotonic() > deadline:
                        raise ValueError(f"a killed segpost fleet's actor {name} is still on this Ray cluster after "
                                         "60 s; try again") from None
                    time.sleep(0.2)
                    continue
                raise ValueError(f"another segpost fleet runs on this Ray cluster (its actor {name} answers)")

    def committed_state(self) -> Dict[str, Dict[str, Any]]:
        """Per camera, where the sinks' output ends (RecordSink.committed_state)."""
        return committed_state(self.sinks)

    def _new_worker(self, name: str, gpus: float) -> Any:
        ray = import_ray()
        cls = ray.remote(CameraWorker).options(**worker_options(gpus, self.config.cpus_per_worker))
        return cls.remote(name, self.config.pipeline, self.config.pipeline_dir, self.config.cameras_per_worker,
                          self.config.decode, self.config.masks, self.config.stall_seconds,
                          self.config.watchdog_seconds, self.page_frames)

    def frames(self, timeout: float = 2.0) -> Dict[str, str]:
        """Each running worker's latest frame messages of its cameras (the fleet's page, once a
        second while it is open): camera name -> JSON text. A worker that does not answer in
        ``timeout`` is left out of this answer."""
        ray = import_ray()
        asked = {}
        for slot in self.slots:
            if slot.state == "running" and slot.actor is not None:
                asked[slot.actor.frames.remote([c.name for c in slot.cameras])] = slot.name
        if not asked:
            return {}
        ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=timeout)
        found: Dict[str, str] = {}
        for ref in ready:
            try:
                found.update(ray.get(ref, timeout=0))
            except Exception as exc:   # a worker dying now: its frames come back with its restart
                self.log(f"segpost fleet: {asked[ref]}: frames for the page: {type(exc).__name__}")
        return found

    def _cameras(self, slot: Slot, state: Dict[str, Dict[str, Any]]) -> List[Camera]:
        """The group's cameras and where each resumes; file cameras whose output is complete are left out."""
        cameras = []
        for c in slot.cameras:
            s = state.get(c.name, {})
            last = s.get("last_frame", -1)
            if s.get("finished") and not is_live(c.source):
                continue
            cameras.append(Camera(c.name, c.source, last + 1, s.get("next_track_id", 0),
                                  s.get("last_time") if last >= 0 else None))
        return cameras

    def _launch(self, slot: Slot, state: Dict[str, Dict[str, Any]]) -> None:
        cameras = self._cameras(slot, state)
        if not cameras:
            slot.state = "finished"
            self.log(f"segpost fleet: {slot.name}: every camera's output is complete already")
            return
        if not self._end_open_tracks(slot):
            return
        actor = self.standbys.take() if self.standbys is not None else None
        slot.actor = actor if actor is not None else self._new_worker(slot.name, self.config.gpus_per_worker)
        slot.run_ref = slot.actor.run.remote(self.sinks, cameras, slot.name)
        slot.heartbeat = Heartbeat(answered=actor is not None)
        slot.state, slot.started_at = ("running" if actor is not None else "starting"), time.monotonic()
        resumed = {c.name: c.start_index for c in cameras if c.start_index}
        if actor is not None or resumed:
            self.log(f"segpost fleet: {slot.name}: {'a standby took over' if actor is not None else 'started'}"
                     + (f", resuming {resumed}" if resumed else ""))

    def _died(self, slot: Slot, why: str) -> None:
        kill_actor(slot.actor)
        slot.restarts += 1
        slot.last_error = self.redactor(why)
        now = time.monotonic()
        slot.failures = 1 if now - slot.started_at > STABLE_SECONDS else slot.failures + 1
        slot.actor = slot.run_ref = None
        group = ", ".join(c.name for c in slot.cameras)
        if slot.failures == 1 and self.standbys.has_ready():
            self.log(f"segpost fleet: {slot.name} ({group}) died: {slot.last_error}; a standby takes over "
                     f"(restart {slot.restarts})")
            self._launch(slot, self.committed_state())
            return
        delay = backoff_delay(slot.failures, *self.config.restart_backoff)
        slot.state, slot.restart_at = "restarting", now + delay
        self.log(f"segpost fleet: {slot.name} ({group}) died: {slot.last_error}; restarting in {delay:.1f} s "
                 f"(restart {slot.restarts})")

    def _end_open_tracks(self, slot: Slot) -> bool:
        """The tracks the group's last worker (or an earlier fleet) left open end where its output
        did, before a worker takes the cameras again; False when the sinks could not write them
        (a full disk): the launch is tried again later."""
        try:
            ended = end_open_tracks(self.sinks, [c.name for c in slot.cameras], TRACKS_LOST)
        except Exception as exc:   # a sink's write failed, or the sink is restarting
            slot.failures += 1
            slot.last_error = self.redactor(short_error(exc))
            delay = backoff_delay(slot.failures, *self.config.restart_backoff)
            slot.state, slot.restart_at = "restarting", time.monotonic() + delay
            self.log(f"segpost fleet: {slot.name}: the tracks its last worker left open could not be ended "
                     f"({slot.last_error}); trying again in {delay:.1f} s")
            return False
        if ended:
            self.log(f"segpost fleet: {slot.name}: {ended} track(s) its last worker left open ended ({TRACKS_LOST})")
        return True

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
                        self._ended(slot)
                        continue
                    self._heartbeat(slot, now)
                elif slot.state == "restarting" and now >= slot.restart_at:
                    self._launch(slot, self.committed_state())
            self.standbys.poll(now)
            self._publish()
            if all(slot.state == "finished" for slot in self.slots):
                break
            stop.wait(0.25)

    def _ended(self, slot: Slot) -> None:
        ray = import_ray()
        try:
            summary = ray.get(slot.run_ref)
            slot.stats = ray.get(slot.actor.stats.remote(), timeout=self.config.heartbeat_seconds)
        except Exception as exc:  # RayActorError, a worker exception: both mean restart
            self._died(slot, short_error(exc))
            return
        slot.state = "finished"
        kill_actor(slot.actor)   # its GPU share and CPUs go back to Ray
        self.log(f"segpost fleet: {slot.name} finished: {summary['rounds']} rounds")

    def _heartbeat(self, slot: Slot, now: float) -> None:
        """A worker that answered once and then stops answering is hung; one that never answered
        is still waiting for its resources or constructing (said once, never killed for it)."""
        beat = slot.heartbeat
        try:
            answer = beat.poll(slot.actor, now)
        except Exception as exc:  # the actor is gone; run() will say so too
            self._died(slot, short_error(exc))
            return
        if answer is not None:
            slot.stats, slot.state = answer, "running"
        elif beat.answered and beat.silent(now) > self.config.heartbeat_seconds:
            self._died(slot, f"no heartbeat for {self.config.heartbeat_seconds:g} s (hung)")
        elif not beat.answered and now - slot.started_at > self.waiting_report_seconds and slot.last_error != _WAITING:
            slot.last_error = _WAITING
            self.log(f"segpost fleet: {slot.name} has not started after {self.waiting_report_seconds:g} s: "
                     f"{_WAITING} (it needs {self.config.gpus_per_worker:g} GPU and "
                     f"{self.config.cpus_per_worker:g} CPUs; free now: {import_ray().available_resources()})")

    def status(self) -> Dict[str, Any]:
        workers = []
        for slot in self.slots:
            s = slot.stats
            workers.append({"worker": slot.name, "state": slot.state, "node": s.get("node"), "gpus": s.get("gpus"),
                            "device": s.get("device"), "cameras": [c.name for c in slot.cameras],
                            "frames": s.get("frames", 0), "fps": round(s.get("fps", 0.0), 2),
                            "round_ms_p50": s.get("round_ms_p50"), "round_ms_p95": s.get("round_ms_p95"),
                            "restarts": slot.restarts, "last_error": slot.last_error or s.get("last_error"),
                            "pid": s.get("pid"), "last_round_end": s.get("last_round_end"),
                            "page_frames": s.get("page_frames")})
        standbys = self.standbys.status() if self.standbys is not None else []
        return {"time": round(time.time(), 3), "workers": workers, "standbys": standbys}

    def _publish(self, committed: Optional[Dict[str, int]] = None) -> None:
        """committed: the sinks' final committed indices (at shutdown), else asked without waiting."""
        status = self.status()
        self.last_status = status   # read by the fleet's page (segpost fleet --ui), replaced whole
        write_status_file(self.status_path, status)
        self.board.publish.remote(status)
        if self.metrics is not None:
            self._observe_metrics(status, committed)
        if self.status_every and time.monotonic() - self._last_line >= self.status_every:
            self._last_line = time.monotonic()
            ready = sum(s["state"] == "ready" for s in status["standbys"])
            self.log("segpost fleet: " + "; ".join(
                f"{w['worker']} {w['state']} {w['fps']:.1f} fps p50 {_ms(w['round_ms_p50'])} restarts {w['restarts']}"
                for w in status["workers"]) + (f"; standbys ready {ready}/{self.config.standby_workers}"
                                               if self.config.standby_workers else ""))

    def _observe_metrics(self, status: Dict[str, Any], final: Optional[Dict[str, int]] = None) -> None:
        """Per-camera frames come from the sinks' committed indices (asked without waiting)."""
        if final is not None:
            self.metrics.observe_fleet(status, final)
            return
        ray = import_ray()
        committed: Dict[str, int] = {}
        if self._committed_refs is not None:
            done, _ = ray.wait(self._committed_refs, num_returns=len(self._committed_refs), timeout=0)
            if len(done) == len(self._committed_refs):
                for shard in ray.get(self._committed_refs):
                    committed.update(shard)
                self._committed_refs = None
        if self._committed_refs is None:
            self._committed_refs = [sink.committed.remote() for sink in self.sinks]
        self.metrics.observe_fleet(status, committed)

    def shutdown(self, grace_seconds: float = 8.0) -> Dict[str, Any]:
        """Workers finish their round and send their records; the sinks fsync and close."""
        ray = import_ray()
        running = [s for s in self.slots if s.state in ("starting", "running") and s.actor is not None]
        for slot in running:
            slot.actor.stop.remote()
        refs = [s.run_ref for s in running]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=grace_seconds)
        for slot in running:
            kill_actor(slot.actor)
        if self.standbys is not None:
            self.standbys.shutdown()
        committed: Dict[str, int] = {}
        stats: Dict[str, Any] = {}
        # Bounded: a sink whose node or Ray's own processes are going away (the whole process
        # group was signalled) must not keep the fleet from exiting; its files are fsynced by
        # the sink's timer and its last lines, at worst, written again by the next fleet.
        try:
            committed, stats = close_sinks(self.sinks, committed_too=self.metrics is not None)
        except Exception as exc:
            self.log(f"segpost fleet: the sinks did not answer at shutdown ({short_error(exc)}); "
                     "their files hold what they acknowledged")
        for sink in self.sinks:
            kill_actor(sink)   # the names go free for the next fleet on this cluster
        if self.board is not None:
            self._publish(committed)
            ray.kill(self.board)   # the next fleet on this cluster may take the name
        if self._started_ray:
            ray.shutdown()
        return stats


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f} ms"
