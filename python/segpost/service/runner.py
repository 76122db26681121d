"""The camera loop: sources -> MultiCameraPipeline -> records -> sinks, for hours or months.

- Each round takes the next frame of every camera that has one (files in order, live streams
  latest first) and runs them as one batch; cameras that fail are reported and the others go on.
- Source events (errors, disconnections, reconnections with their gap) become event records,
  metrics and one stderr line each, with credentials redacted.
- When the pipeline tracks, its track events become records too; a file camera's tracks end
  when the file does, and every camera's at shutdown. Zone events (segpost.zones) follow the
  round's track events, and the zone exits of ended tracks follow their track_ended lines.
- ``stop`` (SIGINT/SIGTERM through ``stop_on_signals``) ends the loop after the round in flight;
  the sinks are flushed and closed and the sources closed.
- A round that fails (an engine's exception) is abandoned by the pipeline; each of its frames
  gets a ``skipped`` line with the error, so every frame is still accounted for, and the next
  round runs. ``max_failed_rounds`` failures in a row (a broken engine, a lost GPU) end the loop
  with the last error, for a supervisor to restart the process.
- A watchdog ends the process with a clear message and exit status 3 when a round does not
  finish within ``watchdog_seconds`` (a hung engine or GPU cannot be interrupted otherwise).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..io.records import (detection_fields, event_record, frame_record, rle_field, track_event_record,
                          zone_event_record)
from ..io.sinks import Sink
from ..io.sources import CameraSource
from .supervision import Watchdog, log_stderr

MAX_FAILED_ROUNDS = 10   # in a row; a transient engine error is one round, a broken engine all of them


class RoundsFailing(RuntimeError):
    """max_failed_rounds rounds failed in a row: the engines or the GPU are not coming back by themselves."""


class CameraRunner:
    """Runs `cameras` (camera id, CameraSource) through `pipeline` into `sinks` (see module docstring).

    Camera ids go into the records as given (`segpost run`: the --source index; the fleet: the
    camera's name); `extra` fields (the fleet's worker and node) are added to every frame record.
    """

    def __init__(self, pipeline, cameras: Sequence[Tuple[Any, CameraSource]], sinks: Sequence[Sink], *,
                 masks: str = "rle", mask_dir: str = "masks", metrics=None, watchdog_seconds: Optional[float] = None,
                 log: Callable[[str], None] = log_stderr, extra: Optional[Dict[str, Any]] = None,
                 on_round: Optional[Callable[[Any], None]] = None, max_failed_rounds: int = MAX_FAILED_ROUNDS,
                 observer=None, scheduled=None):
        if isinstance(max_failed_rounds, bool) or not isinstance(max_failed_rounds, int) or max_failed_rounds < 1:
            raise ValueError(f"max_failed_rounds must be a positive int, got {max_failed_rounds!r}")
        most = getattr(pipeline, "cameras", pipeline.config.max_cameras)
        if len(cameras) > most:
            raise ValueError(f"{len(cameras)} cameras but the pipeline takes at most {most}")
        # on_change: a segpost.schedule.ScheduledPipeline over `pipeline` picks each round's cameras.
        self.scheduled = scheduled
        self.pipeline, self.cameras, self.sinks = pipeline, list(cameras), list(sinks)
        self.masks, self.mask_dir, self.metrics, self.log = masks, mask_dir, metrics, log
        self.extra, self.on_round = dict(extra or {}), on_round
        # observer (the live page): record(r) sees every record written; frame(camera, image, r)
        # gets a frame with its record only when wants_frame(camera) says someone watches.
        self.observer = observer
        self.rounds = 0
        self.failed_rounds = 0      # in all
        self.max_failed_rounds, self._failed_in_a_row = max_failed_rounds, 0
        self.frames: Dict[Any, int] = {camera: 0 for camera, _ in self.cameras}
        self._round_ms: deque = deque(maxlen=100000)
        self._first_round: Optional[float] = None
        self._described = set()
        self._stage = "idle"
        self.watchdog = None if not watchdog_seconds else Watchdog(watchdog_seconds, lambda: self._stage, self.flush,
                                                                   log)

    def write(self, record: Dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)
        if self.observer is not None:
            self.observer.record(record)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def write_track_events(self, events) -> None:
        for event in events:
            camera, source = self.cameras[event.camera]
            self.write(track_event_record(event, camera, source.shown_url))

    def write_zone_events(self, events) -> None:
        """Zone events (segpost.zones.ZoneEvent), keyed by the camera's record name."""
        by_key = {str(camera): (camera, source) for camera, source in self.cameras}
        for event in events:
            camera, source = by_key[event.camera]
            self.write(zone_event_record(event, camera, source.shown_url))
            if self.metrics:
                self.metrics.observe_zone_event(camera, event)

    def finish_tracks(self, slot: Optional[int] = None) -> None:
        """End the tracks of a camera slot (None: all) and write their track_ended, then the
        zone_left / zone_count those ends make."""
        ended = self.pipeline.finish_tracks(slot)
        self.write_track_events(ended)
        self.write_zone_events(self.pipeline.finish_zones(ended))

    def _events(self) -> None:
        for slot, (camera, source) in enumerate(self.cameras):
            if camera not in self._described and source.decoder_description:
                self._described.add(camera)
                self.log(f"segpost: camera {camera}: {source.shown_url}: {source.decoder_description}")
                if self.metrics:
                    self.metrics.describe_camera(camera, source.shown_url, source.decoder_description)
            for event in source.drain_events():
                if event.kind != "finished":
                    self.log(f"segpost: camera {camera}: {event.message}")
                else:   # its tracks end first: "finished" is the camera's last line (recovery reads it there)
                    self.finish_tracks(slot)
                self.write(event_record(event.kind, camera, source.shown_url, event.message, **event.details))
            if self.metrics:
                self.metrics.observe_camera(camera, source.stats)

    def close(self) -> None:
        """Stops the watchdog and the sources' threads (none may outlive the interpreter inside a
        decoder), then closes every sink; a sink that fails to close (a full disk) does not keep
        the others open, and the first such error is raised after all of them."""
        if self.watchdog:
            self.watchdog.close()
        for _, source in self.cameras:
            source.close()
        error = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def run(self, max_rounds: Optional[int] = None, stop: Optional[threading.Event] = None) -> Dict[str, Any]:
        """Rounds until every file source ended (live streams never end), `max_rounds`, or `stop`."""
        stop = stop or threading.Event()
        started = time.monotonic()
        try:
            while not stop.is_set() and (max_rounds is None or self.rounds < max_rounds):
                self._events()
                got = [source.read() for _, source in self.cameras]
                if all(g is None for g in got):
                    if all(source.finished for _, source in self.cameras):
                        break
                    stop.wait(0.002)   # live streams have nothing new yet
                    continue
                self._round(got)
            self._events()
            self.finish_tracks()
        finally:
            self.close()
        summary = {"rounds": self.rounds, "frames": dict(self.frames), "seconds": time.monotonic() - started,
                   "stopped": stop.is_set()}
        if self.scheduled is not None:
            summary["schedule"] = self.scheduled.summary()
        if self._round_ms:
            rounds = np.asarray(self._round_ms)
            busy = time.monotonic() - self._first_round
            summary.update(round_ms_p50=float(np.percentile(rounds, 50)), round_ms_p95=float(np.percentile(rounds, 95)),
                           rounds_per_second=(self.rounds - 1) / busy if self.rounds > 1 and busy > 0 else None)
        return summary

    def _round_failed(self, got: List[Any], exc: Exception) -> None:
        """The pipeline abandoned the round: its frames are written off as skipped, with the error."""
        self.failed_rounds += 1
        self._failed_in_a_row += 1
        error = f"{type(exc).__name__}: {exc}"
        self.log(f"segpost: round {self.rounds} failed ({self._failed_in_a_row} in a row): {error}")
        for slot, frame in enumerate(got):
            if frame is None:
                continue
            camera, source = self.cameras[slot]
            self.write(event_record("skipped", camera, source.shown_url, f"frame {frame.index}: the round failed: {error}",
                                    round=self.rounds, frame_index=frame.index))
            if self.metrics:
                self.metrics.count_error(camera)
        self.rounds += 1
        self._stage = "idle"
        if self.watchdog:
            self.watchdog.round_finished()
        if self._failed_in_a_row >= self.max_failed_rounds:
            raise RoundsFailing(f"{self._failed_in_a_row} rounds failed in a row; the last: {error}") from exc

    def _round(self, got: List[Any]) -> None:
        zones = getattr(self.pipeline, "zones", None)
        if zones is not None:   # zones saved by the live page's editor: swapped in between two rounds
            left = zones.apply_requested()
            if left is not None:
                self.log("segpost: new zones applied from the next round on")
                self.write_zone_events(left)
        frames = [None if g is None else g.image for g in got]
        if self._first_round is None:
            self._first_round = time.monotonic()
        if self.watchdog:
            self.watchdog.round_started()
        self._stage = f"round {self.rounds}: pipeline (preprocess, engines, postprocess)"
        predicted = {}
        try:
            if self.scheduled is None:
                result = self.pipeline.process(frames, frame_ids=[None if g is None else g.index for g in got])
            else:
                result, predicted = self._scheduled_round(frames, got)
        except Exception as exc:
            self._round_failed(got, exc)
            return
        self._failed_in_a_row = 0
        self._round_ms.append(result.timings_ms["round"])
        self._stage = f"round {self.rounds}: writing records"
        for slot, reason in result.skipped.items():
            camera, source = self.cameras[slot]
            self.write(event_record("skipped", camera, source.shown_url, f"frame {got[slot].index} {reason}",
                                    round=result.round_index, frame_index=got[slot].index))
            if self.metrics:
                self.metrics.count_error(camera)
        detections: Dict[str, int] = {}
        for slot, camera_result in sorted(result.cameras.items()):
            camera, source = self.cameras[slot]
            frame = got[slot]
            record = frame_record(result.round_index, camera, source.shown_url, frame.index, camera_result,
                                  self.masks, self.mask_dir, pts=frame.pts, **self.extra)
            self.write(record)
            if self.observer is not None and self.observer.wants_frame(camera):
                self.observer.frame(camera, frame.image, record)
            self.frames[camera] += 1
            for name, frame_result in camera_result.by_class.items():
                detections[name] = detections.get(name, 0) + len(frame_result)
        self._write_predicted(result.round_index, got, predicted)
        self.write_track_events(result.track_events)
        self.write_zone_events(result.zone_events)
        if predicted and self.pipeline.zones is not None:   # predicted frames count for the zones too
            self.write_zone_events(self.pipeline.zones.predicted_events(
                predicted, {slot: got[slot].index for slot in predicted}, time.time()))
        if self.metrics:
            self.metrics.observe_round(result.timings_ms["round"] / 1e3, result.timings_ms,
                                       [self.cameras[slot][0] for slot in result.cameras], detections)
            if self.rounds % 50 == 0:
                self.metrics.observe_memory(self.pipeline.memory_report())
                for index, sink in enumerate(self.sinks):
                    self.metrics.observe_sink(f"{type(sink).__name__}{index}", sink.stats())
        if self.on_round:
            self.on_round(result)
        self.rounds += 1
        self._stage = "idle"
        if self.watchdog:
            self.watchdog.round_finished()

    # -- on_change (segpost.schedule), kept apart from the every_frame path above --------------

    def _scheduled_round(self, frames, got):
        """The scheduler's round: the model's result for the cameras it picked (an empty result
        when it picked none) and predicted detections for the others."""
        from ..pipeline_results import RoundResult

        frame_ids = [None if g is None else g.index for g in got]
        result, predicted = self.scheduled.process(frames, frame_ids, now=time.monotonic())
        if self.metrics:
            last = self.scheduled.last_round
            self.metrics.observe_schedule(*([self.cameras[slot][0] for slot in last[kind]]
                                            for kind in ("model", "predicted", "dropped")), last["staleness"])
        if result is None:
            result = RoundResult(self.rounds, {}, {}, {"round": 0.0})
        return result, predicted

    def _write_predicted(self, round_index: int, got, predicted) -> None:
        from ..schedule import coco_rle

        for slot, detections in sorted(predicted.items()):
            camera, source = self.cameras[slot]
            frame = got[slot]
            items = []
            for d in detections:
                item = detection_fields(d["class"], d["score"], d["box"], d["track_id"], predicted=True,
                                        observed_frame=int(d["observed_frame"]))
                if self.masks == "rle":
                    item["mask"] = rle_field(coco_rle(d["mask"]))
                elif self.masks == "png":
                    item["mask"] = self._predicted_png(camera, frame.index, d, sum(i["class"] == d["class"] for i in items))
                items.append(item)
            shape = getattr(frame.image, "data", frame.image).shape   # BGR (H, W, 3) or YUV 4:2:0 (3H/2, W)
            size = [int(shape[0]), int(shape[1])] if len(shape) == 3 else [int(shape[0]) * 2 // 3, int(shape[1])]
            record = {"round": round_index, "camera": camera, "source": source.shown_url, "frame_index": frame.index,
                      "pts": None if frame.pts is None else round(float(frame.pts), 6), "frame_size": size,
                      "detections": items, "predicted": True, **self.extra}
            self.write(record)
            if self.observer is not None and self.observer.wants_frame(camera):   # the live page: this frame
                self.observer.frame(camera, frame.image, record)                   # with its predicted masks
            self.frames[camera] += 1

    def _predicted_png(self, camera, frame_index: int, detection, k: int) -> str:
        """--masks png: a predicted mask's file, named by camera and frame (a round without the
        model has no round index of the pipeline's own, so the round cannot name it)."""
        import cv2

        os.makedirs(self.mask_dir, exist_ok=True)
        path = os.path.join(self.mask_dir, f"predicted_c{camera}_f{frame_index:06d}_{detection['class']}_{k}.png")
        cv2.imwrite(path, np.asarray(detection["mask"], np.uint8) * 255)
        return path
