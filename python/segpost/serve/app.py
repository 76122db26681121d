"""``segpost serve``: a Ray Serve application that clients send frames to (HTTP and gRPC).

The config is serve/config.py's model. Every frame of every request is one item of two
``@serve.batch`` stages: decoding (a batch of JPEGs in one nvImageCodec call on the GPU, or OpenCV
threads) and the pipeline round (frames from many clients fill a round, up to max_cameras; a
request with more frames spans several rounds). Each answer names its replica and round.

Before any work: the API key (401 / UNAUTHENTICATED), the body's size (413), the request's shape
and frame count, every image's structure and declared size read from its header (400 /
INVALID_ARGUMENT, nothing decoded). Bad input gets a message; the replica goes on serving.

Metrics are Ray metrics (ray.util.metrics), exported with Ray Serve's own on every node's metrics
port (``segpost serve --metrics-port``, or ``ray start --metrics-export-port``), prefixed ``ray_``:
segpost_serve_frames_total, segpost_serve_requests_total{outcome}, segpost_serve_round_seconds,
segpost_serve_round_frames, segpost_serve_detections_total{class}.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import os
import resource
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config import build_from_config
from ..encodings import decode_coco_rle
from ..io.image_decoder import Decoded, FrameDecoder
from ..io.image_header import ImageError
from ..io.records import detection_record
from ..service.ray_runtime import import_ray
from . import api
from .rounds import RoundBatcher
from .config import ServeConfig, load_serve_config  # noqa: F401 (load_serve_config: the module's API)
from .guard import Limits, RequestError, check_frame

logger = logging.getLogger("segpost.serve")


@dataclasses.dataclass(frozen=True)
class ReplicaOptions:
    limits: Limits = Limits()
    batch_wait_ms: float = 10.0
    round_timeout_s: float = 60.0
    decode: str = "auto"
    decode_threads: int = 4


class SegmentationService:
    """One replica: a MultiCameraPipeline whose rounds are the batches of @serve.batch."""

    def __init__(self, pipeline: Dict[str, Any], pipeline_dir: str, options: ReplicaOptions = ReplicaOptions()):
        import ray
        from ray import serve
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
        self.limits = options.limits
        self.decoder = FrameDecoder(options.decode, device, options.decode_threads, pool_size=4 * config.max_cameras)
        try:
            self.replica = serve.get_replica_context().replica_id.unique_id
        except (RuntimeError, AttributeError):   # constructed outside Serve
            self.replica = f"pid-{os.getpid()}"
        logger.info("segpost serve replica %s: %s", self.replica, self.decoder.why)
        self.rounds, self.batch_sizes, self.round_ms = 0, {}, collections.deque(maxlen=256)
        self.round_timeout_s, self._round_started = options.round_timeout_s, None
        self._frames = metrics.Counter("segpost_serve_frames_total", description="frames segmented")
        self._requests = metrics.Counter("segpost_serve_requests_total", description="requests by outcome",
                                         tag_keys=("outcome",))
        self._round_seconds = metrics.Histogram("segpost_serve_round_seconds", description="pipeline round time",
                                                boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        self._round_frames = metrics.Histogram("segpost_serve_round_frames", description="frames per round",
                                               boundaries=[float(b) for b in range(1, config.max_cameras + 1)])
        self._detections = metrics.Counter("segpost_serve_detections_total", description="detections by class",
                                           tag_keys=("class",))
        # Rounds run one at a time on their own thread, decoding on another: the next frames are
        # decoded while the GPU runs a round.
        self._gpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="segpost round")
        self._decoding = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="segpost decode batch")
        self._decode_batched = self._batched(self._decoding, self.decoder.decode, config.max_cameras, 0.0)
        self._rounds = RoundBatcher(self._gpu, self._process, config.max_cameras, options.batch_wait_ms / 1e3)

    def __del__(self):   # Serve's replica shutdown: nvImageCodec's GPU objects go while CUDA lives
        decoder = getattr(self, "decoder", None)
        if decoder is not None:
            decoder.close()

    @staticmethod
    def _batched(executor, work, max_batch: int, wait_seconds: float):
        """A stage as @serve.batch sees it: one item in, one answer out, `work` on `executor`."""
        from ray import serve

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_seconds)
        async def stage(items: List[Any]) -> List[Any]:
            return await asyncio.get_running_loop().run_in_executor(executor, work, items)

        return stage

    def _process(self, frames: List[Decoded]) -> List[Dict[str, Any]]:
        """One pipeline round; results copied out (they are views valid until the next round)."""
        self._round_started = time.monotonic()
        try:
            result = self.pipeline.process([d.frame for d in frames])
        finally:
            self.decoder.recycle(frames)
        seconds = time.monotonic() - self._round_started
        self._round_seconds.observe(seconds)
        self.round_ms.append(round(seconds * 1e3, 2))
        self._round_started = None
        self.rounds += 1
        self.batch_sizes[len(frames)] = self.batch_sizes.get(len(frames), 0) + 1
        self._frames.inc(len(frames))
        self._round_frames.observe(len(frames))
        for camera in result.cameras.values():
            for name, fr in camera.by_class.items():
                if len(fr):
                    self._detections.inc(len(fr), tags={"class": name})
        return round_answers(result, len(frames), self.replica)

    def check_health(self) -> None:
        """Ray Serve's health check: a round stuck on the GPU makes the replica unhealthy, and Serve
        replaces it (requests waiting on it fail instead of hanging)."""
        started = self._round_started
        if started is not None and time.monotonic() - started > self.round_timeout_s:
            raise RuntimeError(f"a pipeline round has run for {time.monotonic() - started:.0f} s "
                               f"(round_timeout_s {self.round_timeout_s:g}): the engine is hung")

    def stats(self) -> Dict[str, Any]:
        return {"replica": self.replica, "rounds": self.rounds, "tracking": self.pipeline.tracker is not None,
                "decode": self.decoder.choice,
                "decode_why": self.decoder.why, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "recent_round_ms": list(self.round_ms)}

    async def segment(self, frames: Sequence[Dict[str, Any]], classes: Sequence[str], masks: str) -> List[Dict[str, Any]]:
        answers = await self._segment(frames, classes, masks)
        self._requests.inc(tags={"outcome": "ok"})
        return answers

    async def _segment(self, frames: Sequence[Dict[str, Any]], classes: Sequence[str], masks: str) -> List[Dict[str, Any]]:
        if masks not in api.MASK_ENCODINGS:
            raise RequestError(f"masks must be one of {api.MASK_ENCODINGS}, got {masks[:40]!r}")
        unknown = sorted(set(classes) - self.classes)
        if unknown:
            raise RequestError(f"unknown class(es) {[c[:40] for c in unknown[:10]]}; this server knows "
                               f"{sorted(self.classes)}")
        if not frames:
            raise RequestError("the request has no frames")
        loop = asyncio.get_running_loop()   # headers are walked off the event loop (a PNG's CRCs)
        self._rounds.expect(len(frames))   # rounds wait for these while they are checked and decoded
        try:
            checked = await loop.run_in_executor(None, lambda: [check_frame(f, self.max_size, i)
                                                                for i, f in enumerate(frames)])
            decoded = await asyncio.gather(*(self._decode_batched(value) if kind == "image" else _ready(Decoded(value))
                                             for kind, value in checked))
        finally:
            self._rounds.arrived(len(frames))
        failed = [(i, d) for i, d in enumerate(decoded) if isinstance(d, ImageError)]
        if failed:
            self.decoder.recycle(decoded)
            raise RequestError(f"frames[{failed[0][0]}]: {failed[0][1]}")
        answers = await asyncio.gather(*(self._rounds.submit(d) for d in decoded))
        for i, answer in enumerate(answers):
            if "error" in answer:
                raise RequestError(f"frames[{i}]: {answer['error']}")
        wanted = set(classes) or self.classes
        for answer in answers:
            answer["detections"] = [_encoded(d, masks) for d in answer["detections"] if d["class"] in wanted]
        return answers

    def _refused(self, exc: RequestError) -> None:
        self._requests.inc(tags={"outcome": "unauthorized" if exc.status == 401 else "bad_request"})

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/healthz"):   # open: for load balancers; says nothing else
            try:
                self.check_health()
            except RuntimeError as exc:
                return JSONResponse({"status": "hung", "error": str(exc)}, status_code=503)
            return JSONResponse({"status": "ok"})
        try:
            self.limits.check_key(request.headers.get("authorization"))   # before the body is read
            if request.method == "GET" and path.endswith("/stats"):
                return JSONResponse(self.stats())
            if request.method != "POST" or not path.endswith("/segment"):
                return JSONResponse({"error": "POST /segment (JSON), GET /healthz or GET /stats"}, status_code=404)
            body = await self.limits.read_json(request)
            try:
                frames, classes, masks = api.request_from_json(body, self.limits.max_frames)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            return JSONResponse(api.answer_to_json(await self.segment(frames, classes, masks)))
        except RequestError as exc:
            self._refused(exc)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    async def Segment(self, request: Any, grpc_context: Any = None) -> Any:  # noqa: N802 (the RPC's name)
        import grpc

        try:
            metadata = dict(grpc_context.invocation_metadata()) if grpc_context is not None else {}
            self.limits.check_key(metadata.get("authorization"))
            data = request if isinstance(request, bytes) else request.SerializeToString()
            if len(data) > self.limits.max_body_bytes:
                raise RequestError(f"the message is {len(data)} bytes; this server takes at most "
                                   f"{self.limits.max_body_bytes} (max_body_bytes)", 413)
            try:
                frames, classes, masks = api.request_from_bytes(data, self.limits.max_frames)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            return api.answer_to_proto(await self.segment(frames, classes, masks))
        except RequestError as exc:
            self._refused(exc)
            if grpc_context is not None:
                grpc_context.set_code(grpc.StatusCode.UNAUTHENTICATED if exc.status == 401
                                      else grpc.StatusCode.INVALID_ARGUMENT)
                grpc_context.set_details(str(exc))
            return api.SegmentResponse()


def round_answers(result: Any, frames: int, replica: Any) -> List[Dict[str, Any]]:
    """A round's answer for each of its ``frames`` slots: the frame's size and its detections as
    segpost run records them (io/records.py), or the error that skipped it."""
    out = []
    for slot in range(frames):
        if slot in result.skipped:
            out.append({"error": result.skipped[slot]})
            continue
        camera = result.cameras[slot]
        detections = [detection_record(name, fr, k) for name, fr in camera.by_class.items() for k in range(len(fr))]
        out.append({"height": camera.frame_size[0], "width": camera.frame_size[1], "detections": detections,
                    "round_frames": frames, "round": result.round_index, "replica": replica})
    return out


async def _ready(value: Any) -> Any:
    return value


def _encoded(detection: Dict[str, Any], masks: str) -> Dict[str, Any]:
    if masks == "rle" or detection["mask"] is None:
        return detection
    if masks == "none":
        return {**detection, "mask": None}
    dense = decode_coco_rle(detection["mask"])
    return {**detection, "mask": {"size": detection["mask"]["size"],
                                  "packed": np.packbits(dense, bitorder="big").tobytes()}}


def start_serve(config: ServeConfig, *, address: Optional[str] = None, name: str = "segpost",
                metrics_port: Optional[int] = None) -> Dict[str, Any]:
    """Starts Ray (or joins `address`), Serve's HTTP (and gRPC) proxies, and the application; returns
    the endpoints and the replicas' decoding choice. `metrics_port`: where a Ray instance started
    here exports Prometheus metrics (a cluster's nodes export on their own `ray start
    --metrics-export-port`)."""
    ray = import_ray()
    from ray import serve
    from ray.serve.config import HTTPOptions, gRPCOptions

    if not ray.is_initialized():
        if metrics_port is not None and address is not None:
            raise ValueError("--metrics-port applies to a Ray instance segpost starts; on a cluster, each node "
                             "exports metrics on its `ray start --metrics-export-port`")
        # Serve's gRPC proxy takes messages up to this size (its default is 2 GiB); its processes
        # inherit the variable from the Ray instance started here.
        os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(config.max_body_bytes + 4096))
        # "local": a new instance, never one that happens to run on this machine (Ray's default for
        # no address is to join any local instance it finds).
        ray.init(address=address or "local", namespace="segpost", log_to_driver=False, include_dashboard=False,
                 **({"_metrics_export_port": metrics_port} if metrics_port is not None else {}))
    tls = {}
    if config.tls is not None:
        tls = {"ssl_certfile": config.tls.certfile, "ssl_keyfile": config.tls.keyfile,
               "ssl_keyfile_password": config.tls.keyfile_password.get_secret_value()
               if config.tls.keyfile_password else None}
    grpc = {}
    if config.grpc_port is not None:
        grpc["grpc_options"] = gRPCOptions(port=config.grpc_port,
                                           grpc_servicer_functions=[f"{api.__name__}.add_SegmentationServicer_to_server"])
    serve.start(http_options=HTTPOptions(host=config.host, port=config.http_port, **tls), **grpc)
    options = {"ray_actor_options": {"num_gpus": config.gpus_per_replica, "num_cpus": config.cpus_per_replica},
               "max_ongoing_requests": 256, "health_check_period_s": min(10.0, config.round_timeout_s / 2),
               "health_check_timeout_s": 30.0,
               # Serve stops a replica that failed its health check gracefully: its round gets a round's time.
               "graceful_shutdown_timeout_s": config.round_timeout_s}
    if config.autoscaling:
        options["autoscaling_config"] = config.autoscaling
    else:
        options["num_replicas"] = config.num_replicas
    replica = ReplicaOptions(config.limits(), config.batch_wait_ms, config.round_timeout_s, config.decode,
                             config.decode_threads)
    deployment = serve.deployment(SegmentationService, name="segmentation", **options)
    handle = serve.run(deployment.bind(config.pipeline, config.pipeline_dir, replica), name=name, route_prefix="/")
    local = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    local = f"[{local}]" if ":" in local else local
    endpoints: Dict[str, Any] = {"http": f"{'https' if config.tls else 'http'}://{local}:{config.http_port}/segment",
                                 "decode": handle.stats.remote().result()["decode_why"]}
    if config.grpc_port is not None:
        endpoints["grpc"] = f"127.0.0.1:{config.grpc_port}"
    if metrics_port is not None:
        endpoints["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    return endpoints


def stop_serve() -> None:
    from ray import serve

    serve.shutdown()
