"""MultiCameraPipeline: F cameras x C classes through a vision encoder, a decoder and segpost.

Plan C of the users (../docs/background.md), with the CPU work moved to the GPU: frames go up
through pinned staging and one fused preprocessing kernel, the vision encoder runs once at batch
F, its output buffers are bound as the decoder's inputs (zero copy), and the decoder runs once
per class with that class's prompt (replicated F times at construction). After each decoder,
the class's Postprocessor compacts on the same stream, so the next class may overwrite
pred_masks; its resize and host copy run on the Postprocessor's own stream, under the next
decoder. Every buffer is allocated in the constructor.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .engines.base import Engine, EngineError
from .engines.contract import DECODER_OUTPUTS, FPN_TENSORS, Geometry, check_engines, padded_prompt
from .pipeline_config import ClassPrompt, PipelineConfig, resolve_classes_per_call  # noqa: F401  (re-exported)
from .pipeline_results import CameraResult, Detection, RoundResult  # noqa: F401  (re-exported)
from ._common import StageClock, size_pair
from .postprocess import Postprocessor
from .preprocess import RESIZE_FILTERS, Preprocessor, checked_frame
from .results import BatchResult
from .track import FrameIds, TrackEvent, Tracker


class MultiCameraPipeline:
    """Runs rounds of up to ``config.max_cameras`` frames (one per camera) through both engines.

    ``process(frames)`` = ``submit(frames)`` + ``collect()``; between the two the caller may
    prepare the next round's frames while the GPU works. ``frames[i]`` is camera i's frame, or
    None when camera i has nothing this round (a smaller batch runs). A frame is a BGR uint8
    (H, W, 3) array or a ``segpost.YuvFrame`` (NV12/I420, as decoders give them), in host memory
    (uploaded through pinned staging) or device memory (CuPy, torch, DLPack: read in place, never
    staged through the host). A frame that is not a usable image is reported in
    ``RoundResult.skipped`` and the other cameras still run.
    Results are views into buffers reused by the next round: copy what you keep.
    One pipeline per thread; two pipelines may share a GPU.
    """

    def __init__(self, vision_encoder: Engine, decoder: Engine, config: PipelineConfig):
        self.geometry: Geometry = check_engines(vision_encoder, decoder)
        if not isinstance(config.max_cameras, int) or not 1 <= config.max_cameras <= 64:
            raise ValueError(f"max_cameras must be an int in [1, 64], got {config.max_cameras!r}")
        if not config.classes:
            raise ValueError("the config names no classes")
        names = [c.name for c in config.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        self.config, self.vision_encoder, self.decoder = config, vision_encoder, decoder
        self.device = vision_encoder.device
        self.class_names = tuple(names)
        cameras, g = config.max_cameras, self.geometry
        self.max_frame_size = size_pair("max_frame_size", config.max_frame_size)
        if self.device == "cuda":
            import cupy

            self.xp = cupy
            self._stream = cupy.cuda.Stream(non_blocking=True)
        else:
            self.xp, self._stream = np, None
        xp = self.xp
        if config.resize not in RESIZE_FILTERS:
            raise ValueError(f"resize must be one of {sorted(RESIZE_FILTERS)}, got {config.resize!r}")
        self._pre = Preprocessor(max_frames=cameras, max_frame_size=self.max_frame_size,
                                 out_size=(g.image_size, g.image_size), dtype=g.image_dtype, device=self.device,
                                 resize=config.resize)
        for engine, batch in ((vision_encoder, cameras),):
            if engine.max_batch is not None and engine.max_batch < batch:
                raise EngineError(f"{engine.name} takes batches up to {engine.max_batch}; the pipeline needs {batch} "
                                  "(max_cameras): rebuild it with a larger max batch or lower max_cameras")
        k = resolve_classes_per_call(config.classes_per_call, len(names), cameras, decoder.max_batch, decoder.name)
        self.classes_per_call = k
        # Decoder rows are class-major: in a call, rows j*n .. j*n + n - 1 are the n cameras of the
        # call's class j. The encoder writes the first n rows of the FPN buffers; the other k - 1
        # slices are device copies of them.
        self._buffers: Dict[str, Any] = {"images": self._pre.output}
        outputs = [n for n in DECODER_OUTPUTS if n in decoder.tensors]   # presence_logits is optional
        for name in FPN_TENSORS + tuple(outputs):
            owner = vision_encoder if name in FPN_TENSORS else decoder
            spec = owner.tensors[name]
            self._buffers[name] = xp.zeros(spec.with_batch(cameras * k), spec.dtype)
        self._class_prompts = [self._prompt_rows(c) for c in config.classes]
        self._prompts = [self._prompt_buffers(cameras * k) for _ in range(len(names) // k)]
        self._prompt_cameras = 0   # the camera count the prompt buffers are laid out for
        vision_encoder.set_tensor_address("images", self._buffers["images"])
        for name in FPN_TENSORS:
            vision_encoder.set_tensor_address(name, self._buffers[name])   # the same buffer on both sides
            decoder.set_tensor_address(name, self._buffers[name])
        for name in outputs:
            decoder.set_tensor_address(name, self._buffers[name])
        self._bind_prompts(*self._prompts[0])
        vision_encoder.prepare()
        decoder.prepare()
        post = config.postprocess_config(max_frames=cameras, num_queries=g.num_queries, mask_size=g.mask_size,
                                         device=self.device)
        self._post = [Postprocessor(post) for _ in config.classes]
        self.cameras = cameras if config.cameras is None else int(config.cameras)
        if self.cameras < cameras:
            raise ValueError(f"cameras ({config.cameras}) must be at least max_cameras ({cameras})")
        self.tracker = None if config.track is None else Tracker(
            config.track, cameras=self.cameras, class_names=names, capacity=config.capacity, mask_size=g.mask_size,
            device=self.device)
        self.zones = None
        if config.zones is not None:   # zones read the tracker's packed masks (segpost.zones)
            from .zones import PipelineZones

            self.zones = PipelineZones(config.zones, self, rule=config.zone_rule)
        self._frame_ids = FrameIds(self.cameras)
        calls = range(len(self._prompts))
        self._clock = StageClock(["start", "preprocessed", "encoded", "features_copied"]
                                 + [f"{stage}{call}" for call in calls for stage in ("decoded", "compacted")],
                                 self._stream)
        self._pending: Optional[tuple] = None
        self._rounds = 0

    def _prompt_rows(self, prompt: ClassPrompt) -> Tuple[Any, Any]:
        """A class's prompt padded to the decoder's P tokens: features [P, D] and mask [P], on the device."""
        padded, valid = padded_prompt(prompt.name, prompt.features, prompt.mask, self.geometry, self.decoder.name)
        return self.xp.asarray(padded.astype(self._prompt_dtypes[0])), self.xp.asarray(valid.astype(self._prompt_dtypes[1]))

    @property
    def _prompt_dtypes(self) -> Tuple[np.dtype, np.dtype]:
        """prompt_features' and prompt_mask's (a decoder without that input gets an unbound bool mask)."""
        mask = self.decoder.tensors.get("prompt_mask")
        return self.decoder.tensors["prompt_features"].dtype, mask.dtype if mask is not None else np.dtype(np.bool_)

    def _prompt_buffers(self, rows: int) -> Tuple[Any, Any]:
        g, xp = self.geometry, self.xp
        return (xp.zeros((rows, g.prompt_length, g.prompt_width), self._prompt_dtypes[0]),
                xp.zeros((rows, g.prompt_length), self._prompt_dtypes[1]))

    def _bind_prompts(self, features: Any, mask: Any) -> None:
        self.decoder.set_tensor_address("prompt_features", features)
        if self.geometry.prompt_mask:
            self.decoder.set_tensor_address("prompt_mask", mask)

    def _lay_out_prompts(self, n: int) -> None:
        """Fill each call's prompt buffers for n cameras (rows j*n .. j*n + n - 1: class j of the
        call); done again only when the camera count changes. On the pipeline's stream."""
        if n == self._prompt_cameras:
            return
        k = self.classes_per_call
        with self._on_stream():
            for call, (features, mask) in enumerate(self._prompts):
                for j in range(k):
                    class_features, class_mask = self._class_prompts[call * k + j]
                    features[j * n:(j + 1) * n] = class_features
                    mask[j * n:(j + 1) * n] = class_mask
        self._prompt_cameras = n

    def _replicate_features(self, n: int) -> None:
        """FPN rows 0 .. n-1 (the encoder's output) copied to the call's other k - 1 class slices."""
        with self._on_stream():
            for name in FPN_TENSORS:
                buffer = self._buffers[name]
                for j in range(1, self.classes_per_call):
                    buffer[j * n:(j + 1) * n] = buffer[:n]

    def _on_stream(self):
        return self._stream if self._stream is not None else contextlib.nullcontext()

    # -- running -----------------------------------------------------------------------------

    def process(self, frames: Sequence[Any], frame_ids: Optional[Sequence[Optional[int]]] = None) -> RoundResult:
        self.submit(frames, frame_ids)
        return self.collect()

    def submit(self, frames: Sequence[Any], frame_ids: Optional[Sequence[Optional[int]]] = None) -> None:
        """Queue a round. When this returns, the frames may be reused: host frames have been
        uploaded, device frames read. ``frame_ids``: each camera's frame index, for the track
        events (default: how many frames the camera was given before)."""
        if self._pending is not None:
            raise RuntimeError("submit() called twice: collect() the previous round first")
        if not isinstance(frames, (list, tuple)) or len(frames) > self.cameras:
            raise ValueError(f"frames must be a list of at most {self.cameras} entries (one per camera, "
                             f"None for a camera without a frame), got {type(frames).__name__} of {len(frames) if hasattr(frames, '__len__') else '?'}")
        if sum(f is not None for f in frames) > self.config.max_cameras:
            raise ValueError(f"a round takes at most {self.config.max_cameras} frames (max_cameras)")
        ids = self._frame_ids.round(frames, frame_ids)
        live, infos, skipped = [], [], {}
        for camera, frame in enumerate(frames):
            if frame is None:
                continue
            try:
                infos.append(checked_frame(frame, self.max_frame_size, self.device))
            except ValueError as exc:
                skipped[camera] = f"frame {exc}"
                continue
            live.append(camera)
        started = time.perf_counter()
        frame_sizes = [(info.height, info.width) for info in infos]
        if live:
            try:
                with self._abandoned_on_error():
                    self._enqueue_round(infos, live, frame_sizes)
                    self._pre.wait_released()   # so the caller may refill its frames or the staging slots now
            except BaseException:
                self._rounds += 1   # the failed round keeps its index, as one that fails in collect()
                raise
        self._pending = (live, skipped, started, [ids[c] for c in live], frame_sizes)

    @contextlib.contextmanager
    def _abandoned_on_error(self):
        """A round that raises part-way (an engine's transient error, a bad result) is abandoned:
        its queued work is waited for, every Postprocessor and the tracker forget it, and the
        error goes to the caller; the next round starts afresh."""
        try:
            yield
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        self._pending = None
        cleanups = [] if self._stream is None else [self._stream.synchronize]
        cleanups += [post.abandon for post in self._post]
        if self.tracker is not None:
            cleanups.append(self.tracker.abandon_round)
        for cleanup in cleanups:   # each one, even when another fails (a sticky CUDA error)
            with contextlib.suppress(Exception):
                cleanup()

    def staging(self, camera: int, height: int, width: int) -> np.ndarray:
        """Camera's pinned (height, width, 3) uint8 slot: decode its next frame straight into it
        and pass it to submit(), which then copies nothing. Writable again once submit() returns."""
        if not 0 <= camera < self.config.max_cameras or self.cameras > self.config.max_cameras:
            raise ValueError(f"camera {camera} outside 0 .. {self.config.max_cameras - 1}, or more cameras than "
                             "staging slots (a scheduled pipeline)")
        return self._pre.staging(camera, height, width)


    def _enqueue_round(self, frames: List[Any], cameras: List[int], sizes: List[Tuple[int, int]]) -> None:
        """`frames`: the live cameras' frames as checked_frame described them; `sizes`: their (height, width)."""
        n, g, k = len(frames), self.geometry, self.classes_per_call
        stream = 0 if self._stream is None else self._stream.ptr
        self._lay_out_prompts(n)
        self._clock.mark("start")
        # Staging slot = camera, unless cameras outnumber the slots (a scheduler's round).
        self._pre.run_checked(frames, stream=stream, slots=None if self.cameras > self.config.max_cameras else cameras)
        self._clock.mark("preprocessed")
        self.vision_encoder.set_input_shape("images", (n, 3, g.image_size, g.image_size))
        self.vision_encoder.enqueue(stream)
        self._clock.mark("encoded")
        self._replicate_features(n)
        self._clock.mark("features_copied")
        for name in FPN_TENSORS:
            self.decoder.set_input_shape(name, self.decoder.tensors[name].with_batch(n * k))
        self.decoder.set_input_shape("prompt_features", (n * k, g.prompt_length, g.prompt_width))
        if g.prompt_mask:
            self.decoder.set_input_shape("prompt_mask", (n * k, g.prompt_length))
        out = self._buffers
        presence = out.get("presence_logits")   # None: score = sigmoid(logit)
        for call, (features, mask) in enumerate(self._prompts):
            self._bind_prompts(features, mask)
            self.decoder.enqueue(stream)
            self._clock.mark(f"decoded{call}")
            # Compaction reads pred_masks on this stream before the next call overwrites it; each
            # class reads its own slice of the call's rows in place.
            for j in range(k):
                rows, post = slice(j * n, (j + 1) * n), self._post[call * k + j]
                masks = out["pred_masks"][rows]
                post.enqueue(out["pred_logits"][rows], None if presence is None else presence[rows],
                             out["pred_boxes"][rows], masks, sizes, class_id=call * k + j, stream=stream)
                if self.tracker is not None:   # before the next call overwrites pred_masks, as compaction
                    self.tracker.enqueue(call * k + j, post, masks, cameras, stream=stream)
            self._clock.mark(f"compacted{call}")
        if self.zones is not None:   # after every class's tracker.enqueue, on the round's stream
            self.zones.enqueue(cameras, stream=stream)

    def collect(self) -> RoundResult:
        """Wait for the submitted round and return its results."""
        if self._pending is None:
            raise RuntimeError("collect() without a submitted round")
        live, skipped, started, frame_ids, frame_sizes = self._pending
        self._pending = None
        index = self._rounds
        self._rounds += 1
        if not live:
            return RoundResult(index, {}, skipped, {"round": (time.perf_counter() - started) * 1e3})
        with self._abandoned_on_error():
            batches: List[BatchResult] = [post.result() for post in self._post]
            timings = self._timings()
            events: Tuple[TrackEvent, ...] = ()
            if self.tracker is not None:
                tracked = time.perf_counter()
                batches, events = self.tracker.track_round(self._post, batches, frame_ids, frame_sizes)
                timings["track_update"] = (time.perf_counter() - tracked) * 1e3
        timings["round"] = (time.perf_counter() - started) * 1e3
        cameras = {}
        for b, camera in enumerate(live):
            frame_results = {name: batches[c][b] for c, name in enumerate(self.class_names)}
            sizes = next(iter(frame_results.values())).masks.shape[1:]
            cameras[camera] = CameraResult(camera, tuple(int(v) for v in sizes), frame_results)
        overflow = tuple(name for name, batch in zip(self.class_names, batches) if batch.overflow or batch.mask_overflow)
        result = RoundResult(index, cameras, skipped, timings, overflow, events)
        if self.zones is not None:   # times: when the round was collected (the pipeline knows no frame times)
            now = time.time()
            with self._abandoned_on_error():
                zone_events = self.zones.events(result, dict(zip(live, frame_ids)), {c: now for c in live})
            result = dataclasses.replace(result, zone_events=tuple(zone_events))
        return result

    def finish_tracks(self, camera: Optional[int] = None) -> Tuple[TrackEvent, ...]:
        """End the live tracks of camera slot ``camera`` (None: every camera), e.g. at the end of
        a file or at shutdown: their ``track_ended`` events. () when the pipeline does not track."""
        return () if self.tracker is None else self.tracker.finish(camera)

    def finish_zones(self, track_events: Sequence[TrackEvent]) -> Tuple[Any, ...]:
        """The zone_left / zone_count events of the tracks ``track_events`` ended (finish_tracks'
        events). () when the pipeline has no zones."""
        return () if self.zones is None else tuple(self.zones.end_tracks(track_events))

    def _timings(self) -> Dict[str, float]:
        span, calls = self._clock.spans(), range(len(self._prompts))
        called_from = ["features_copied"] + [f"compacted{call}" for call in calls][:-1]   # each decoder call's start
        return {"preprocess": span("start", "preprocessed"), "vision_encoder": span("preprocessed", "encoded"),
                "feature_copies": span("encoded", "features_copied"),
                "decoder": sum(span(called_from[call], f"decoded{call}") for call in calls),
                "postprocess_enqueue": sum(span(f"decoded{call}", f"compacted{call}") for call in calls),
                "gpu_busy": span("start", f"compacted{len(calls) - 1}")}

    # -- reporting ---------------------------------------------------------------------------

    def memory_report(self) -> Dict[str, int]:
        """Bytes by owner, all allocated at construction; ``device_used`` is the whole GPU's use."""
        io = sum(int(b.nbytes) for b in self._buffers.values()) + sum(int(f.nbytes + m.nbytes) for f, m in self._prompts)
        io += sum(int(f.nbytes + m.nbytes) for f, m in self._class_prompts)
        posts = [p.memory_report() for p in self._post]
        report = {"engines": self.vision_encoder.memory_bytes() + self.decoder.memory_bytes(),
                  "io_buffers": io, "postprocess": sum(p["device"] for p in posts),
                  "preprocess": self._pre.device_bytes,
                  "pinned_host": sum(p["pinned_host"] for p in posts) + self._pre.pinned_bytes}
        if self.tracker is not None:
            tracker = self.tracker.memory_report()
            report["tracker"] = tracker["device"]
            report["pinned_host"] += tracker["pinned_host"]
        if self.device == "cuda":
            free, total = self.xp.cuda.runtime.memGetInfo()
            report["device_used"] = int(total - free)
        return report

    vram_report = memory_report
