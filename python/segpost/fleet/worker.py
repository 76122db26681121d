"""A fleet worker: one Ray actor per camera group (see the package docstring).

It decodes its own cameras (frames never cross the network), runs a MultiCameraPipeline on the
GPU Ray gave it (CUDA_VISIBLE_DEVICES is set by Ray: it sees that GPU only), and after every
round sends that round's records to the sink and waits for the sink to take them, so that a
worker that dies loses no committed frame and repeats none (the sink drops what it already has).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections import deque
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..config import build_from_config
from ..io.secrets import Redactor
from ..io.sinks import Sink
from ..io.sources import CameraSource, decoder_factory
from ..pipeline import MultiCameraPipeline
from ..postprocess import OutputKind, cuda_available
from ..service.runner import CameraRunner


class RemoteSink(Sink):
    """Records of a round, sent to the fleet's sink actor in one call when the round ends."""

    def __init__(self, sink_actor: Any):
        self._actor, self._batch = sink_actor, []

    def write(self, record: Dict[str, Any]) -> None:
        self._batch.append(record)

    def flush(self) -> None:
        if self._batch:
            import ray

            ray.get(self._actor.write_batch.remote(self._batch))
            self._batch = []


class CameraWorker:
    """`cameras`: (name, source URL, first frame index) per camera of the group."""

    def __init__(self, worker_id: str, pipeline: Dict[str, Any], pipeline_dir: str,
                 cameras: Sequence[Tuple[str, str, int]], decode: str = "auto", masks: str = "rle",
                 stall_seconds: float = 10.0, watchdog_seconds: Optional[float] = 300.0):
        import ray

        self.worker_id = worker_id
        self.gpus = [str(g) for g in ray.get_gpu_ids()]
        self.node = ray.util.get_node_ip_address()
        self.host = socket.gethostname()
        self.device = "cuda" if self.gpus and cuda_available() else "cpu"
        vision_encoder, decoder, config = build_from_config(pipeline, pipeline_dir, self.device, where="pipeline")
        config = dataclasses.replace(config, max_cameras=len(cameras),
                                     output=OutputKind.RLE if masks == "rle" else OutputKind.PACKED)
        self.pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
        self.masks, self.watchdog_seconds = masks, watchdog_seconds
        self.redactor = Redactor()
        open_decoder, self.decoding = decoder_factory(decode if self.device == "cuda" else "cpu",
                                                      timeout_seconds=stall_seconds)
        self.cameras = [(name, CameraSource(url, open_decoder, redactor=self.redactor, stall_seconds=stall_seconds,
                                            start_index=start)) for name, url, start in cameras]
        self._stop = threading.Event()
        self._round_ms: deque = deque(maxlen=200)
        self._frame_times: deque = deque(maxlen=4000)
        self._frames = 0
        self._rounds_between = [None, None]   # wall time of the first and the last round's end
        self._last_error: Optional[str] = None
        self._lock = threading.Lock()

    def _on_round(self, result) -> None:
        now = time.monotonic()
        with self._lock:
            self._round_ms.append(result.timings_ms["round"])
            self._frames += len(result.cameras)
            self._frame_times.extend([now] * len(result.cameras))
            wall = time.time()
            self._rounds_between = [self._rounds_between[0] or wall, wall]
        self._sink.flush()   # committed before the next round starts

    def run(self, sink_actor: Any) -> Dict[str, Any]:
        """Rounds until the file sources end (live streams never do) or stop(); the records of
        each round reach the sink before the next round."""
        self._sink = RemoteSink(sink_actor)
        runner = CameraRunner(self.pipeline, self.cameras, [self._sink], masks=self.masks,
                              watchdog_seconds=self.watchdog_seconds, log=self._log, on_round=self._on_round,
                              extra={"worker": self.worker_id, "node": self.node})
        summary = runner.run(stop=self._stop)
        summary.update(worker=self.worker_id)
        return summary

    def _log(self, message: str) -> None:
        message = self.redactor(message)
        if "error" in message or "cannot" in message or "failed" in message:
            with self._lock:
                self._last_error = message
        print(f"[{self.worker_id}] {message}", flush=True)

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
            return {"worker": self.worker_id, "node": self.node, "host": self.host, "pid": os.getpid(),
                    "device": self.device, "gpus": self.gpus,
                    "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "cameras": [name for name, _ in self.cameras], "frames": self._frames,
                    "fps": (len(recent) - 1) / span if span > 0 else 0.0,
                    "round_ms_p50": float(np.percentile(rounds, 50)) if rounds is not None else None,
                    "round_ms_p95": float(np.percentile(rounds, 95)) if rounds is not None else None,
                    "decoding": self.decoding, "last_error": self._last_error,
                    "first_round_end": self._rounds_between[0], "last_round_end": self._rounds_between[1],
                    "memory_bytes": self.pipeline.memory_report()}


def worker_options(gpus: float, cpus: float) -> Dict[str, Any]:
    """Ray actor options of a worker: its GPU share, CPUs, threads for stats() beside run()."""
    return {"num_gpus": gpus, "num_cpus": cpus, "max_concurrency": 4, "scheduling_strategy": "SPREAD"}
