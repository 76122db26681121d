"""Prometheus metrics and a liveness answer over HTTP (``pip install segpost[metrics]``).

    GET /metrics   the Prometheus text format
    GET /healthz   200 "ok" while rounds finish; 503 once none has finished for ``stale_seconds``

Labels are camera names and class names, never URLs (credentials stay out); the info metric
``segpost_camera_info`` carries each camera's redacted source.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, Optional

STAGES = ("preprocess", "vision_encoder", "decoder", "postprocess_enqueue", "gpu_busy")
_ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


def import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ValueError("metrics need prometheus_client (pip install segpost[metrics])") from exc
    return prometheus_client


class Metrics:
    """The counters, gauges and histograms of one process (its own registry)."""

    def __init__(self, stale_seconds: float = 30.0, clock=time.time):
        prom = import_prometheus()
        self._prom, self.stale_seconds, self._clock = prom, stale_seconds, clock
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.frames = prom.Counter("segpost_frames", "Frames processed", ["camera"], registry=r)
        self.fps = prom.Gauge("segpost_camera_fps", "Frames processed per second, over the last 10 s", ["camera"], registry=r)
        self.dropped = prom.Counter("segpost_dropped_frames", "Decoded frames replaced by a newer one before a round "
                                    "took them (live streams)", ["camera"], registry=r)
        self.reconnects = prom.Counter("segpost_reconnects", "Stream reconnections", ["camera"], registry=r)
        self.errors = prom.Counter("segpost_errors", "Camera errors (open, decode, stall, skipped frames)", ["camera"],
                                   registry=r)
        self.camera_info = prom.Info("segpost_camera", "Each camera's source (credentials redacted) and decoder",
                                     ["camera"], registry=r)
        self.round_seconds = prom.Histogram("segpost_round_seconds", "Wall time of a pipeline round",
                                            buckets=_ROUND_BUCKETS, registry=r)
        self.stage_seconds = prom.Histogram("segpost_stage_seconds", "Time of each stage of a round (GPU time on CUDA)",
                                            ["stage"], buckets=_ROUND_BUCKETS, registry=r)
        self.detections = prom.Counter("segpost_detections", "Detections kept", ["class_name"], registry=r)
        self.memory = prom.Gauge("segpost_memory_bytes", "Memory held, by owner (device_used: the whole GPU's use)",
                                 ["owner"], registry=r)
        self.last_round = prom.Gauge("segpost_last_round_timestamp_seconds", "When the last round finished (Unix time)",
                                     registry=r)
        self.sink = prom.Gauge("segpost_sink", "Sink counters (pending, dropped, lines, ...)", ["sink", "counter"],
                               registry=r)
        self._lock = threading.Lock()
        self._window: Dict[str, list] = {}
        self._seen: Dict[tuple, float] = {}
        self._last_round: Optional[float] = None
        self._started = clock()
        self._fleet: Optional[Dict[str, Any]] = None
        self._zones: Optional[Dict[str, Any]] = None

    # -- what the runner reports ---------------------------------------------------------------

    def describe_camera(self, camera: Any, source: str, decoder: str) -> None:
        self.camera_info.labels(camera=str(camera)).info({"source": source, "decoder": decoder})

    def observe_round(self, round_seconds: float, stages: Dict[str, float], frames_by_camera: Iterable[Any],
                      detections_by_class: Dict[str, int]) -> None:
        now = self._clock()
        self.round_seconds.observe(round_seconds)
        for stage in STAGES:
            if stage in stages:
                self.stage_seconds.labels(stage=stage).observe(stages[stage] / 1e3)
        with self._lock:
            for camera in frames_by_camera:
                camera = str(camera)
                self.frames.labels(camera=camera).inc()
                times = self._window.setdefault(camera, [])
                times.append(now)
                while times and now - times[0] > 10.0:
                    times.pop(0)
            for camera, times in self._window.items():
                span = max(now - times[0], 1e-9) if len(times) > 1 else None
                self.fps.labels(camera=camera).set((len(times) - 1) / span if span else 0.0)
            self._last_round = now
        for name, count in detections_by_class.items():
            self.detections.labels(class_name=name).inc(count)
        self.last_round.set(now)

    def observe_camera(self, camera: Any, stats: Dict[str, int]) -> None:
        """A source's running totals (dropped, reconnects, errors) -> counter increments."""
        for key, counter in (("dropped", self.dropped), ("reconnects", self.reconnects), ("errors", self.errors)):
            previous = self._seen.get((camera, key), 0)
            value = int(stats.get(key, 0))
            if value > previous:
                counter.labels(camera=str(camera)).inc(value - previous)
                self._seen[(camera, key)] = value

    def count_error(self, camera: Any) -> None:
        self.errors.labels(camera=str(camera)).inc()

    def observe_fleet(self, status: Dict[str, Any], committed: Dict[Any, int]) -> None:
        """The fleet coordinator's view: per worker its state, frames/s, round p50/p95 and
        restarts; per camera the frames the sink committed; health from the workers' last rounds."""
        if self._fleet is None:
            prom = self._prom
            self._fleet = {key: prom.Gauge(f"segpost_fleet_worker_{key}", help_, ["worker"], registry=self.registry)
                           for key, help_ in (("fps", "Frames per second of the worker, over the last 10 s"),
                                              ("round_ms_p50", "Round time, median of the last 200 rounds"),
                                              ("round_ms_p95", "Round time, 95th percentile of the last 200 rounds"),
                                              ("restarts", "Times the worker was replaced"),
                                              ("running", "1 while the worker runs"))}
        last = None
        for worker in status.get("workers", []):
            name = worker["worker"]
            for key in ("fps", "round_ms_p50", "round_ms_p95", "restarts"):
                if worker.get(key) is not None:
                    self._fleet[key].labels(worker=name).set(worker[key])
            self._fleet["running"].labels(worker=name).set(1.0 if worker["state"] == "running" else 0.0)
            if worker.get("last_round_end"):
                last = max(last or 0.0, worker["last_round_end"])
        for camera, index in committed.items():
            previous = self._seen.get((camera, "committed"), -1)
            if index > previous:
                self.frames.labels(camera=str(camera)).inc(index - previous)
                self._seen[(camera, "committed")] = index
        if last is not None:
            with self._lock:
                self._last_round = last
            self.last_round.set(last)

    def observe_zone_event(self, camera: Any, event: Any) -> None:
        """A zone event (segpost.zones.ZoneEvent) of ``camera`` (its record name): the events
        counter per camera, zone and kind; a zone_count sets its (zone, class)'s occupancy gauge
        and overcrowded flag (the count only changes with those events)."""
        if self._zones is None:   # made at the first zone event: runs without zones show none
            prom, r = self._prom, self.registry
            self._zones = {
                "events": prom.Counter("segpost_zone_events", "Zone events written (zone_entered, zone_left, "
                                       "zone_dwell, zone_count, line_crossed)", ["camera", "zone", "kind"], registry=r),
                "occupancy": prom.Gauge("segpost_zone_occupancy", "Tracks inside the zone now, per class",
                                        ["camera", "zone", "class_name"], registry=r),
                "overcrowded": prom.Gauge("segpost_zone_overcrowded", "1 while the zone holds more than its "
                                          "max_count of the class", ["camera", "zone", "class_name"], registry=r)}
        camera = str(camera)
        self._zones["events"].labels(camera=camera, zone=event.zone, kind=event.kind).inc()
        if event.kind == "zone_count":
            labels = dict(camera=camera, zone=event.zone, class_name=event.class_name)
            self._zones["occupancy"].labels(**labels).set(event.count)
            self._zones["overcrowded"].labels(**labels).set(1.0 if event.overcrowded else 0.0)

    def observe_schedule(self, model: Iterable[Any], predicted: Iterable[Any], dropped: Iterable[Any],
                         staleness: Iterable[float]) -> None:
        """on_change (segpost.schedule): a round's cameras the model saw, those that got a predicted
        record, those whose frame got none (above output_fps), and the staleness (seconds since the
        model saw the camera) of the records written. Per camera: model and predicted frames/s over
        the last 10 s, the share of its frames the model skipped; staleness p50/p95 of the last 1000 records."""
        state = getattr(self, "_schedule", None)
        if state is None:   # created at the first on_change round: every_frame shows none of them
            prom, r = self._prom, self.registry
            state = self._schedule = {
                "model": prom.Counter("segpost_schedule_model_frames", "Frames the model saw (on_change)", ["camera"],
                                      registry=r),
                "predicted": prom.Counter("segpost_schedule_predicted_frames", "Frames given a predicted record "
                                          "(on_change)", ["camera"], registry=r),
                "fps": prom.Gauge("segpost_schedule_fps", "Model and predicted frames per second, over the last 10 s",
                                  ["camera", "kind"], registry=r),
                "skipped": prom.Gauge("segpost_schedule_skipped_share", "Share of the camera's frames the model did "
                                      "not see (predicted or above output_fps)", ["camera"], registry=r),
                "staleness": prom.Gauge("segpost_schedule_staleness_seconds", "Age of the newest observation of the "
                                        "records written (last 1000 records)", ["quantile"], registry=r),
                "windows": {}, "totals": {}, "ages": deque(maxlen=1000)}
        now = self._clock()
        with self._lock:
            for kind, cameras in (("model", model), ("predicted", predicted), ("dropped", dropped)):
                for camera in cameras:
                    camera = str(camera)
                    totals = state["totals"].setdefault(camera, {"model": 0, "predicted": 0, "dropped": 0})
                    totals[kind] += 1
                    if kind != "dropped":
                        state[kind].labels(camera=camera).inc()
                        state["windows"].setdefault((camera, kind), deque()).append(now)
            for (camera, kind), times in state["windows"].items():
                while times and now - times[0] > 10.0:
                    times.popleft()
                span = now - times[0] if len(times) > 1 else 0.0
                state["fps"].labels(camera=camera, kind=kind).set((len(times) - 1) / span if span > 0 else 0.0)
            for camera, totals in state["totals"].items():
                state["skipped"].labels(camera=camera).set(1.0 - totals["model"] / max(sum(totals.values()), 1))
            state["ages"].extend(v for v in staleness if math.isfinite(v))
            ages = sorted(state["ages"])
        for q in (0.5, 0.95):
            if ages:
                state["staleness"].labels(quantile=str(q)).set(ages[min(len(ages) - 1, int(q * len(ages)))])

    def observe_memory(self, report: Dict[str, int]) -> None:
        for owner, value in report.items():
            self.memory.labels(owner=owner).set(value)

    def observe_sink(self, name: str, stats: Dict[str, Any]) -> None:
        for counter, value in stats.items():
            if isinstance(value, (int, float)):
                self.sink.labels(sink=name, counter=counter).set(value)

    # -- what the endpoint answers -------------------------------------------------------------

    def health(self) -> tuple:
        """(healthy, reason)."""
        with self._lock:
            last = self._last_round
        age = self._clock() - (last if last is not None else self._started)
        if age > self.stale_seconds:
            what = "no round has finished" if last is None else "the last round finished"
            return False, f"{what} {age:.1f} s ago (limit {self.stale_seconds:g} s)"
        return True, "ok"

    def exposition(self) -> bytes:
        return self._prom.generate_latest(self.registry)


class MetricsServer:
    """/metrics and /healthz on ``host:port`` (port 0: any free port, see ``.port``), in a thread."""

    def __init__(self, metrics: Metrics, port: int, host: str = "0.0.0.0"):
        self.metrics = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805 (the handler is `self` of the request)
                if handler.path.split("?")[0] == "/metrics":
                    body, status, kind = metrics.exposition(), 200, metrics._prom.CONTENT_TYPE_LATEST
                elif handler.path.split("?")[0] in ("/healthz", "/livez"):
                    healthy, reason = metrics.health()
                    body, status, kind = (reason + "\n").encode(), 200 if healthy else 503, "text/plain; charset=utf-8"
                else:
                    body, status, kind = b"segpost: GET /metrics or /healthz\n", 404, "text/plain; charset=utf-8"
                handler.send_response(status)
                handler.send_header("Content-Type", kind)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805 (scrapes are not news)
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ValueError(f"--metrics-port {port}: cannot listen ({exc.strerror})") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="segpost metrics")
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
