"""A fleet worker: one Ray actor per camera group (see the package docstring).

It builds its engines and pipeline at construction (a standby does only that, and waits), then
run() opens its cameras where the sink's output ends and decodes them itself (frames never cross
the network), runs the MultiCameraPipeline on the GPU Ray gave it (CUDA_VISIBLE_DEVICES is set by
Ray: it sees that GPU only), and after every round sends that round's records to the sink and
waits for the sink to take them, so that a worker that dies loses no committed frame and repeats
none (the sink drops what it already has). A watchdog that fires writes an error event per camera
before the process exits, so the output says why the group paused.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections import deque
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..config import build_from_config
from ..io.secrets import Redactor
from ..io.sinks import Sink
from ..io.records import event_record
from ..io.sources import CameraSource, decoder_factory, is_live
from ..pipeline import MultiCameraPipeline
from .._common import cuda_available
from ..postprocess import OutputKind
from ..service.runner import CameraRunner
from .sink import shard_of


WATCHDOG = "segpost: watchdog:"   # how the runner's watchdog message begins


class Camera(NamedTuple):
    """One camera of a worker's group and where it resumes (the coordinator reads it from the sink)."""

    name: str
    source: str
    start_index: int = 0             # its first frame index (after the last one written)
    next_track_id: int = 0           # the tracker's first new id (after the largest one written)
    resumed_from: Optional[float] = None   # a live camera that ran before: wall time of its last write


def gap_event(camera: Camera, record: Dict[str, Any]) -> Dict[str, Any]:
    """The event written before a resumed live camera's first frame: a live stream resumes at its
    newest frame, so the frames it showed while no worker read it are gone (how many is unknown)."""
    seconds = max(0.0, time.time() - camera.resumed_from)
    return event_record("gap", camera.name, record.get("source", ""),
                        f"no frames for {seconds:.1f} s (the worker was replaced or the fleet restarted); "
                        f"resumed at the stream's newest frame", gap_seconds=round(seconds, 3),
                        last_frame_index=camera.start_index - 1, frame_index_after=record.get("frame_index"),
                        frames_missed=None)


class RemoteSink(Sink):
    """Records of a round, sent to the fleet's sink actors (by their camera's shard) when the round
    ends; flush() returns once every shard has written them. A resumed live camera's first frame
    gets its gap event in front of it."""

    def __init__(self, sink_actors: Sequence[Any], gaps: Dict[str, Camera]):
        self._actors, self._gaps = list(sink_actors), dict(gaps)
        self._batch: List[Dict[str, Any]] = []
        self._lock = threading.Lock()

    def write(self, record: Dict[str, Any]) -> None:
        with self._lock:
            camera = self._gaps.get(record.get("camera"))
            if camera is not None and "detections" in record:
                self._batch.append(gap_event(camera, record))
                del self._gaps[camera.name]
            self._batch.append(record)

    def flush(self) -> None:
        import ray

        with self._lock:
            batch, self._batch = self._batch, []
        if not batch:
            return
        shards: Dict[int, List[Dict[str, Any]]] = {}
        for record in batch:
            shards.setdefault(shard_of(record.get("camera"), len(self._actors)), []).append(record)
        ray.get([self._actors[shard].write_batch.remote(records) for shard, records in shards.items()])


class CameraWorker:
    """A worker's engines and pipeline for up to `max_cameras` cameras, built at construction;
    run() gets its cameras. A standby is one built ahead, waiting for run()."""

    def __init__(self, worker_id: str, pipeline: Dict[str, Any], pipeline_dir: str, max_cameras: int,
                 decode: str = "auto", masks: str = "rle", stall_seconds: float = 10.0,
                 watchdog_seconds: Optional[float] = 300.0, page_frames: bool = False):
        import ray

        self.worker_id = worker_id
        self.gpus = [str(g) for g in ray.get_gpu_ids()]
        self.node = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.host = socket.gethostname()
        self.device = "cuda" if self.gpus and cuda_available() else "cpu"
        started = time.monotonic()
        vision_encoder, decoder, config = build_from_config(pipeline, pipeline_dir, self.device, where="pipeline")
        config, self.schedule = scheduled_config(config, max_cameras)
        config = dataclasses.replace(config, output=OutputKind.RLE if masks == "rle" else OutputKind.PACKED)
        self.pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
        self.build_seconds = time.monotonic() - started
        self.masks, self.watchdog_seconds, self.stall_seconds = masks, watchdog_seconds, stall_seconds
        self.redactor = Redactor()
        self._open_decoder, self.decoding = decoder_factory(decode if self.device == "cuda" else "cpu",
                                                            timeout_seconds=stall_seconds)
        self.cameras: List[Tuple[str, CameraSource]] = []
        self._stop = threading.Event()
        self._round_ms: deque = deque(maxlen=200)
        self._round_spans: deque = deque(maxlen=200)
        self._frame_times: deque = deque(maxlen=4000)
        self._frames = 0
        self._rounds_between = [None, None]   # wall time of the first and the last round's end
        self._last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._sink: Optional[RemoteSink] = None
        self._scheduled = None
        self.page_frames = page_frames   # segpost fleet --ui: frames for the page, while it asks (frames())
        self._poll: Any = None

    def _on_round(self, result) -> None:
        now = time.monotonic()
        with self._lock:
            self._round_ms.append(result.timings_ms["round"])
            self._round_spans.append((time.time() - result.timings_ms["round"] / 1e3, time.time()))
            self._frames += len(result.cameras)
            self._frame_times.extend([now] * len(result.cameras))
            wall = time.time()
            self._rounds_between = [self._rounds_between[0] or wall, wall]
        self._sink.flush()   # committed before the next round starts

    def run(self, sink_actors: Sequence[Any], cameras: Sequence[Camera], worker_id: Optional[str] = None
            ) -> Dict[str, Any]:
        """Opens `cameras` and runs rounds until the file sources end (live streams never do) or
        stop(); the records of each round reach the sink before the next round. `worker_id`: the
        camera group's name, when a standby takes it over."""
        cameras = [Camera(*camera) for camera in cameras]
        if len(cameras) > self.pipeline.cameras:
            raise ValueError(f"{len(cameras)} cameras for a worker built for {self.pipeline.cameras}")
        self.worker_id = worker_id or self.worker_id
        tracker = self.pipeline.tracker
        for slot, camera in enumerate(cameras):
            if tracker is not None and camera.next_track_id > 0:   # ids stay unique per camera across workers
                tracker.set_next_id(slot, camera.next_track_id)
        if self.pipeline.zones is not None:   # the fleet's "zones" are keyed by camera name, not slot
            self.pipeline.zones.set_camera_keys([c.name for c in cameras])
        self.cameras = [(c.name, CameraSource(c.source, self._open_decoder, redactor=self.redactor,
                                              stall_seconds=self.stall_seconds, start_index=c.start_index))
                        for c in cameras]
        self._sink = RemoteSink(sink_actors, {c.name: c for c in cameras
                                              if c.resumed_from is not None and is_live(c.source)})
        if self.page_frames:
            from ..ui.frame_poll import FramePoll

            self._poll = FramePoll(self.cameras, log=self._log)
        runner = CameraRunner(self.pipeline, self.cameras, [self._sink], masks=self.masks,
                              watchdog_seconds=self.watchdog_seconds, log=self._log, on_round=self._on_round,
                              extra={"worker": self.worker_id, "node": self.node},
                              scheduled=self._scheduled_pipeline(), observer=self._poll)
        try:
            summary = runner.run(stop=self._stop)
        finally:
            if self._poll is not None:
                self._poll.close()
        summary.update(worker=self.worker_id)
        return summary

    def _scheduled_pipeline(self):
        """on_change: a fresh scheduler over the worker's pipeline for this run (None: every_frame)."""
        from ..schedule import ScheduledPipeline

        self._scheduled = None if self.schedule is None else ScheduledPipeline(self.pipeline, self.schedule)
        return self._scheduled

    def _log(self, message: str) -> None:
        message = self.redactor(message)
        if "error" in message or "cannot" in message or "failed" in message or WATCHDOG in message:
            with self._lock:
                self._last_error = message
        if WATCHDOG in message and self._sink is not None:   # the watchdog flushes the sink next, then exits
            for name, source in self.cameras:
                self._sink.write(event_record("error", name, source.shown_url, message, reason="watchdog"))
        print(f"[{self.worker_id}] {message}", flush=True)

    def frames(self, cameras: Sequence[str]) -> Dict[str, str]:
        """The fleet's page asks (about once a second): the latest frame message (JPEG and its
        record, JSON) of each of ``cameras`` this worker runs; they stay watched for a lease."""
        poll = self._poll
        return {} if poll is None else poll.ask(cameras)   # a camera not this worker's is never watched

    def stop(self) -> None:
        """Finish the round in flight, then return from run()."""
        self._stop.set()

    def pid(self) -> int:
        return os.getpid()

    def stats(self) -> Dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            rounds = np.asarray(self._round_ms) if self._round_ms else None
            recent = [t for t in self._frame_times if now - t <= 10.0]
            span = (now - recent[0]) if len(recent) > 1 else 0.0
            return {"worker": self.worker_id, "node": self.node, "node_id": self.node_id, "host": self.host,
                    "pid": os.getpid(),
                    "device": self.device, "gpus": self.gpus,
                    "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "cameras": [name for name, _ in self.cameras], "frames": self._frames,
                    "fps": (len(recent) - 1) / span if span > 0 else 0.0,
                    "round_ms_p50": float(np.percentile(rounds, 50)) if rounds is not None else None,
                    "round_ms_p95": float(np.percentile(rounds, 95)) if rounds is not None else None,
                    "decoding": self.decoding, "last_error": self._last_error,
                    "first_round_end": self._rounds_between[0], "last_round_end": self._rounds_between[1],
                    "round_spans": list(self._round_spans), "build_seconds": self.build_seconds,
                    "memory_bytes": self.pipeline.memory_report(),
                    "schedule": None if self._scheduled is None else self._scheduled.summary(),
                    "page_frames": None if self._poll is None else self._poll.stats()}


def scheduled_config(config, cameras: int):
    """(the worker's PipelineConfig for `cameras` cameras, its on_change ScheduleConfig or None).
    every_frame: a batch of `cameras`. on_change: the engines keep the pipeline's batch
    (max_cameras) and `cameras` are tracked and scheduled, as `segpost run --schedule on_change` does."""
    from ..schedule import most_cameras
    from ..track import TrackerConfig

    schedule = config.schedule
    if schedule is None or schedule.mode != "on_change":
        return dataclasses.replace(config, max_cameras=cameras), None
    if cameras > most_cameras(config.max_cameras, schedule):
        raise ValueError(f"{cameras} cameras for a worker whose engines take {config.max_cameras}: on_change "
                         f"serves at most {most_cameras(config.max_cameras, schedule)}")
    return dataclasses.replace(config, cameras=cameras, max_cameras=min(config.max_cameras, cameras),
                               track=config.track or TrackerConfig()), schedule


def worker_options(gpus: float, cpus: float) -> Dict[str, Any]:
    """Ray actor options of a worker: its GPU share, CPUs, threads for stats() beside run()."""
    return {"num_gpus": gpus, "num_cpus": cpus, "max_concurrency": 4, "scheduling_strategy": "SPREAD"}
