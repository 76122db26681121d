"""``segpost serve``: a Ray Serve application that clients send frames to (HTTP and gRPC).

    {
      "pipeline": "segpost.json",      # a `segpost run` config (file or object); max_cameras = the batch
      "num_replicas": 1,               # or "autoscaling": {"min_replicas": 1, "max_replicas": 4, ...}
      "gpus_per_replica": 1,           # a fraction shares a GPU; 0: CPU replicas
      "batch_wait_ms": 10,             # how long a replica waits to fill a round
      "round_timeout_s": 60,           # a round running longer marks the replica unhealthy: Serve replaces it
      "http_port": 8000, "grpc_port": 9000
    }

Every frame of every request is one item of ``@serve.batch``: frames from many clients fill the
pipeline's rounds (up to its max_cameras), and a request with more frames than that spans several
rounds. Bad input (an undecodable image, a wrong shape, an unknown class) is answered with HTTP
400 or gRPC INVALID_ARGUMENT and a message; the replica goes on serving.

Metrics are Ray metrics (ray.util.metrics), exported with Ray Serve's own on every node's metrics
port (``segpost serve --metrics-port``, or ``ray start --metrics-export-port``), prefixed ``ray_``:
segpost_serve_frames_total, segpost_serve_requests_total{outcome}, segpost_serve_round_seconds,
segpost_serve_round_frames, segpost_serve_detections_total{class}.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import build_from_config
from ..encodings import decode_coco_rle
from . import api, import_ray
from .config import read_app_config

_KNOWN = {"pipeline", "num_replicas", "autoscaling", "gpus_per_replica", "cpus_per_replica", "batch_wait_ms",
          "round_timeout_s", "http_port", "grpc_port"}


class BadRequest(ValueError):
    """The client's fault: 400 / INVALID_ARGUMENT."""


def decode_frame(frame: Dict[str, Any], max_size: Tuple[int, int], index: int) -> np.ndarray:
    """A request frame -> BGR uint8 (H, W, 3), or BadRequest saying why not."""
    if "image" in frame:
        import cv2

        image = cv2.imdecode(np.frombuffer(frame["image"], np.uint8), cv2.IMREAD_COLOR) if frame["image"] else None
        if image is None:
            raise BadRequest(f"frames[{index}]: not a decodable JPEG or PNG image")
    else:
        shape = frame.get("shape")
        if not isinstance(shape, (list, tuple)) or len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise BadRequest(f"frames[{index}]: raw pixels need \"shape\": [H, W, 3], got {shape!r}")
        if len(frame["raw"]) != int(np.prod(shape)):
            raise BadRequest(f"frames[{index}]: {len(frame['raw'])} bytes of pixels do not fill the shape {list(shape)}")
        image = np.frombuffer(frame["raw"], np.uint8).reshape(shape)
    if image.shape[0] > max_size[0] or image.shape[1] > max_size[1]:
        raise BadRequest(f"frames[{index}]: {image.shape[0]}x{image.shape[1]} is larger than this server's "
                         f"max_frame_size {list(max_size)}")
    return np.ascontiguousarray(image)


class SegmentationService:
    """One replica: a MultiCameraPipeline whose rounds are the batches of @serve.batch."""

    def __init__(self, pipeline: Dict[str, Any], pipeline_dir: str, batch_wait_ms: float = 10.0,
                 round_timeout_s: float = 60.0):
        import ray
        from ray.util import metrics

        from ..pipeline import MultiCameraPipeline
        from ..postprocess import OutputKind, cuda_available

        device = "cuda" if ray.get_gpu_ids() and cuda_available() else "cpu"
        vision_encoder, decoder, config = build_from_config(pipeline, pipeline_dir, device, where="pipeline")
        # Requests are independent frames from any client, so a config's "track" does not apply here.
        self.pipeline = MultiCameraPipeline(vision_encoder, decoder,
                                            dataclasses.replace(config, output=OutputKind.RLE, track=None))
        self.classes = set(self.pipeline.class_names)
        self.max_size = self.pipeline.max_frame_size
        self.rounds, self.batch_sizes = 0, {}
        self.round_timeout_s, self._round_started = round_timeout_s, None
        self._frames = metrics.Counter("segpost_serve_frames_total", description="frames segmented")
        self._requests = metrics.Counter("segpost_serve_requests_total", description="requests by outcome",
                                         tag_keys=("outcome",))
        self._round_seconds = metrics.Histogram("segpost_serve_round_seconds", description="pipeline round time",
                                                boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        self._round_frames = metrics.Histogram("segpost_serve_round_frames", description="frames per round",
                                               boundaries=[float(b) for b in range(1, config.max_cameras + 1)])
        self._detections = metrics.Counter("segpost_serve_detections_total", description="detections by class",
                                           tag_keys=("class",))
        # Rounds run one at a time on their own thread, never queued behind image decoding.
        self._gpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="segpost round")
        self._batched = self._make_batched(config.max_cameras, batch_wait_ms / 1e3)

    def _make_batched(self, max_batch: int, wait_seconds: float):
        """The round as @serve.batch sees it: one frame in, one answer out, max_batch frames a round."""
        from ray import serve

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_seconds)
        async def round_of(frames: List[np.ndarray]) -> List[Dict[str, Any]]:
            loop = asyncio.get_running_loop()   # the GPU round runs off the event loop
            return await loop.run_in_executor(self._gpu, self._process, frames)

        return round_of

    def _process(self, frames: List[np.ndarray]) -> List[Dict[str, Any]]:
        """One pipeline round; results copied out (they are views valid until the next round)."""
        self._round_started = time.monotonic()
        result = self.pipeline.process(frames)
        self._round_seconds.observe(time.monotonic() - self._round_started)
        self._round_started = None
        self.rounds += 1
        self.batch_sizes[len(frames)] = self.batch_sizes.get(len(frames), 0) + 1
        self._frames.inc(len(frames))
        self._round_frames.observe(len(frames))
        out = []
        for slot in range(len(frames)):
            if slot in result.skipped:
                out.append({"error": result.skipped[slot]})
                continue
            camera = result.cameras[slot]
            detections = []
            for name, fr in camera.by_class.items():
                if len(fr):
                    self._detections.inc(len(fr), tags={"class": name})
                for k in range(len(fr)):
                    rle = fr.masks[k]
                    detections.append({"class": name, "score": round(float(fr.scores[k]), 5),
                                       "box": [round(float(v), 2) for v in fr.boxes[k]],
                                       "mask": None if rle is None else {"size": rle["size"],
                                                                         "counts": rle["counts"].decode("ascii")}})
            out.append({"height": camera.frame_size[0], "width": camera.frame_size[1], "detections": detections,
                        "round_frames": len(frames)})
        return out

    def check_health(self) -> None:
        """Ray Serve's health check: a round stuck on the GPU makes the replica unhealthy, and Serve
        replaces it (requests waiting on it fail instead of hanging)."""
        started = self._round_started
        if started is not None and time.monotonic() - started > self.round_timeout_s:
            raise RuntimeError(f"a pipeline round has run for {time.monotonic() - started:.0f} s "
                               f"(round_timeout_s {self.round_timeout_s:g}): the engine is hung")

    async def segment(self, frames: Sequence[Dict[str, Any]], classes: Sequence[str], masks: str) -> List[Dict[str, Any]]:
        try:
            answers = await self._segment(frames, classes, masks)
        except BadRequest:
            self._requests.inc(tags={"outcome": "bad_request"})
            raise
        self._requests.inc(tags={"outcome": "ok"})
        return answers

    async def _segment(self, frames: Sequence[Dict[str, Any]], classes: Sequence[str], masks: str) -> List[Dict[str, Any]]:
        if masks not in api.MASK_ENCODINGS:
            raise BadRequest(f"masks must be one of {api.MASK_ENCODINGS}, got {masks!r}")
        unknown = sorted(set(classes) - self.classes)
        if unknown:
            raise BadRequest(f"unknown class(es) {unknown}; this server knows {sorted(self.classes)}")
        if not frames:
            raise BadRequest("the request has no frames")
        loop = asyncio.get_running_loop()   # JPEG decoding off the event loop: requests decode in parallel
        images = await asyncio.gather(*(loop.run_in_executor(None, decode_frame, f, self.max_size, i)
                                        for i, f in enumerate(frames)))
        answers = await asyncio.gather(*(self._batched(image) for image in images))
        for i, answer in enumerate(answers):
            if "error" in answer:
                raise BadRequest(f"frames[{i}]: {answer['error']}")
        wanted = set(classes) or self.classes
        for answer in answers:
            answer["detections"] = [_encoded(d, masks) for d in answer["detections"] if d["class"] in wanted]
        return answers

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/healthz"):
            try:
                self.check_health()
            except RuntimeError as exc:
                return JSONResponse({"status": "hung", "error": str(exc), "rounds": self.rounds}, status_code=503)
            return JSONResponse({"status": "ok", "rounds": self.rounds})
        if request.method == "GET" and path.endswith("/stats"):
            from ray import serve

            return JSONResponse({"replica": serve.get_replica_context().replica_id.unique_id, "rounds": self.rounds,
                                 "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}})
        if request.method != "POST" or not path.endswith("/segment"):
            return JSONResponse({"error": "POST /segment (JSON), GET /healthz or GET /stats"}, status_code=404)
        try:
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise BadRequest("the body is not JSON") from None
            try:
                frames, classes, masks = api.request_from_json(body)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            return JSONResponse(api.answer_to_json(await self.segment(frames, classes, masks)))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    async def Segment(self, request: Any, grpc_context: Any = None) -> Any:  # noqa: N802 (the RPC's name)
        import grpc

        try:
            frames, classes, masks = api.request_from_proto(request)
            return api.answer_to_proto(await self.segment(frames, classes, masks))
        except BadRequest as exc:
            if grpc_context is not None:
                grpc_context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                grpc_context.set_details(str(exc))
            return api.SegmentResponse()


def _encoded(detection: Dict[str, Any], masks: str) -> Dict[str, Any]:
    if masks == "rle" or detection["mask"] is None:
        return detection
    if masks == "none":
        return {**detection, "mask": None}
    dense = decode_coco_rle(detection["mask"])
    return {**detection, "mask": {"size": detection["mask"]["size"],
                                  "packed": np.packbits(dense, bitorder="big").tobytes()}}


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    pipeline: Dict[str, Any]
    pipeline_dir: str
    num_replicas: Optional[int] = 1
    autoscaling: Optional[Dict[str, Any]] = None
    gpus_per_replica: float = 1.0
    cpus_per_replica: float = 1.0
    batch_wait_ms: float = 10.0
    round_timeout_s: float = 60.0
    http_port: int = 8000
    grpc_port: int = 9000


def load_serve_config(path: str) -> ServeConfig:
    raw, pipeline, base = read_app_config(path, _KNOWN, "serve config file")
    autoscaling = raw.get("autoscaling")
    if autoscaling is not None and not isinstance(autoscaling, dict):
        raise ValueError(f"{path}: autoscaling must be an object (Ray Serve's autoscaling_config)")
    replicas = None if autoscaling else raw.get("num_replicas", 1)
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise ValueError(f"{path}: num_replicas must be a positive int, got {replicas!r}")
    numbers = {}
    for key, default, low in (("gpus_per_replica", 1.0, 0.0), ("cpus_per_replica", 1.0, 0.0),
                              ("batch_wait_ms", 10.0, 0.0), ("round_timeout_s", 60.0, 1.0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise ValueError(f"{path}: {key} must be a number >= {low}, got {value!r}")
        numbers[key] = float(value)
    ports = {}
    for key, default in (("http_port", 8000), ("grpc_port", 9000)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise ValueError(f"{path}: {key} must be a port number, got {value!r}")
        ports[key] = value
    return ServeConfig(pipeline, base, replicas, autoscaling, **numbers, **ports)


def start_serve(config: ServeConfig, *, address: Optional[str] = None, name: str = "segpost",
                metrics_port: Optional[int] = None) -> Dict[str, str]:
    """Starts Ray (or joins `address`), Serve's HTTP and gRPC proxies, and the application; returns
    the endpoints. `metrics_port`: where a Ray instance started here exports Prometheus metrics (a
    cluster's nodes export on their own `ray start --metrics-export-port`)."""
    ray = import_ray()
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    if not ray.is_initialized():
        if metrics_port is not None and address is not None:
            raise ValueError("--metrics-port applies to a Ray instance segpost starts; on a cluster, each node "
                             "exports metrics on its `ray start --metrics-export-port`")
        ray.init(address=address, namespace="segpost", log_to_driver=False, include_dashboard=False,
                 **({"_metrics_export_port": metrics_port} if metrics_port is not None else {}))
    serve.start(http_options=HTTPOptions(host="0.0.0.0", port=config.http_port),
                grpc_options=gRPCOptions(port=config.grpc_port,
                                         grpc_servicer_functions=[f"{api.__name__}.add_SegmentationServicer_to_server"]))
    options = {"ray_actor_options": {"num_gpus": config.gpus_per_replica, "num_cpus": config.cpus_per_replica},
               "max_ongoing_requests": 256, "health_check_period_s": min(10.0, config.round_timeout_s / 2),
               "health_check_timeout_s": 30.0,
               # Serve stops a replica that failed its health check gracefully: its round gets a round's time.
               "graceful_shutdown_timeout_s": config.round_timeout_s}
    if config.autoscaling:
        options["autoscaling_config"] = config.autoscaling
    else:
        options["num_replicas"] = config.num_replicas
    deployment = serve.deployment(SegmentationService, name="segmentation", **options)
    serve.run(deployment.bind(config.pipeline, config.pipeline_dir, config.batch_wait_ms, config.round_timeout_s),
              name=name,
              route_prefix="/")
    endpoints = {"http": f"http://127.0.0.1:{config.http_port}/segment", "grpc": f"127.0.0.1:{config.grpc_port}"}
    if metrics_port is not None:
        endpoints["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    return endpoints


def stop_serve() -> None:
    from ray import serve

    serve.shutdown()
