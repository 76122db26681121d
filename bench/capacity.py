"""Cameras served per GPU, every_frame against on_change (issue 32's capacity measurement).

    python bench/capacity.py --out DIR                          # GPU: Sam3Model fp16 compiled, ~8.5 min
    python bench/capacity.py --backend synthetic --out DIR      # CPU: tiny synthetic engines, < 60 s

N cameras, each a live-paced source: site-like clips (bench/make_video.py --site: nothing moves
~70% of the time; objects arrive, stand, leave; light drift and sensor noise), written with
OpenCV's mp4v and decoded once by OpenCV into memory, then served at --fps (25) by a paced
Decoder behind segpost's own live CameraSource (it keeps the newest frame and drops the stale
ones, as for an RTSP camera). Decoding is not what is measured: 40 cameras x 25 fps of 1080p
would take a CPU decoder more cores than the GPU's work, so every camera replays decoded frames.
--frames: nv12-gpu (the default on CUDA: NV12 in GPU memory, what NVDEC hands `segpost run
--decode gpu`), bgr (host BGR, what --decode cpu hands it; the pipeline and the change gate upload
every frame), nv12-host. The pipeline is built as `segpost run` builds it (config.build_from_config, CameraRunner with ScheduledPipeline for on_change, RLE masks,
tracking on in both schedules; random weights: top_k per class kept) and runs for --seconds after --warmup per N; the engines are built
(and compiled) once and reused for every N and both schedules.

Per N: each camera's records/s (observed and predicted) against --output-fps, the staleness of
each record (its write time minus the capture time of the newest frame the model saw of that
camera: a model record's own frame, a predicted record's camera's last observed frame), model
frames/s, the share of records predicted. N is served when every camera gets >= 95% of
--output-fps records/s and its staleness p95 is <= --max-staleness (1 s). every_frame runs at most
the engines' batch of cameras (`segpost run` refuses more): the batch, then half of it; on_change
grows N until one is not served, then tries the midpoint. Writes DIR/capacity.json and
DIR/capacity.md and prints progress lines; --max-seconds (480 on the GPU) bounds the whole run,
clips and compile included (no N starts that would end past it).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import tempfile
import threading
import time
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_video import write_site_clip  # noqa: E402  (bench/, this script's folder)
from tables import save_json  # noqa: E402

from segpost.config import build_from_config  # noqa: E402
from segpost.io.decoders import Decoder  # noqa: E402
from segpost.io.sinks import Sink  # noqa: E402
from segpost.io.sources import CameraSource  # noqa: E402
from segpost.pipeline import MultiCameraPipeline  # noqa: E402
from segpost.postprocess import OutputKind  # noqa: E402
from segpost.schedule import ScheduleConfig, ScheduledPipeline  # noqa: E402
from segpost.service.runner import CameraRunner  # noqa: E402
from segpost.track import TrackerConfig  # noqa: E402

TORCH_NAMES = ["person", "hand", "counter", "blow gun"]
SYNTHETIC_NAMES = ["red", "green", "blue", "yellow"]   # the clip's objects are these colour classes
PRESETS = {   # per backend: what a flag left out means
    "torch": dict(size="1080x1920", batch=8, seconds=20.0, warmup=5.0, clip_seconds=20.0, clips=2, max_seconds=480.0,
                  on_change=[8, 16, 24, 32, 40, 48, 64], device="cuda"),
    "synthetic": dict(size="120x160", batch=2, seconds=3.0, warmup=1.5, clip_seconds=8.0, clips=2, max_seconds=55.0,
                      on_change=[2, 4, 8], device="cpu"),
}


def log(message: str) -> None:
    print(f"[capacity {time.strftime('%H:%M:%S')}] {message}", flush=True)


class PacedClip(Decoder):
    """A live camera replaying decoded frames at `fps`, looping, from frame `offset` of the clip:
    read() waits until the next frame's capture time (start + k / fps). Every frame is delivered
    (a camera does not skip); the CameraSource on top drops what the rounds do not take."""

    def __init__(self, frames: List[np.ndarray], fps: float, offset: int):
        self.frames, self.fps, self.offset = frames, float(fps), int(offset)
        self.start = None   # monotonic time of frame 0, set at the first read
        self.k = 0

    def capture_time(self, index: int) -> float:
        return self.start + index / self.fps

    def read(self):
        if self.start is None:
            self.start = time.monotonic()
        delay = self.capture_time(self.k) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        image = self.frames[(self.offset + self.k) % len(self.frames)]
        pts, self.k = self.k / self.fps, self.k + 1
        return pts, image

    def keep(self, image, slot: int):
        return image   # the clip's frames are never written to: nothing to copy

    def describe(self) -> str:
        return f"paced clip replay at {self.fps:g} fps"


class TimedSink(Sink):
    """Keeps (monotonic write time, camera, frame_index, predicted) of every frame record."""

    def __init__(self):
        self.records = []
        self._lock = threading.Lock()

    def write(self, record) -> None:
        if "detections" not in record or "frame_index" not in record:
            return   # source, track and zone events
        with self._lock:
            self.records.append((time.monotonic(), record["camera"], record["frame_index"], bool(record.get("predicted"))))


class TimedRunner(CameraRunner):
    """segpost's CameraRunner, timing the host work of on_change around the model's rounds: the
    gate, the scheduler and the predicted detections (ScheduledPipeline.process less its model
    round), and writing the predicted records (masks to RLE). One thread runs all of it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host_s = {"model_rounds": 0.0, "gate_schedule_predict": 0.0, "write_predicted": 0.0}

    def _scheduled_round(self, frames, got):
        started = time.perf_counter()
        result, predicted = super()._scheduled_round(frames, got)
        model = result.timings_ms["round"] / 1e3
        self.host_s["model_rounds"] += model
        self.host_s["gate_schedule_predict"] += time.perf_counter() - started - model
        return result, predicted

    def _write_predicted(self, round_index, got, predicted) -> None:
        started = time.perf_counter()
        super()._write_predicted(round_index, got, predicted)
        self.host_s["write_predicted"] += time.perf_counter() - started


def make_clips(args, size) -> List[List[np.ndarray]]:
    """The site clips (written once under --work-dir, then reused), decoded into memory as --frames says."""
    import cv2

    folder = os.path.join(args.work_dir, "clips")
    os.makedirs(folder, exist_ok=True)
    clips = []
    for seed in range(args.clips):
        path = os.path.join(folder, f"site-{size[0]}x{size[1]}-{args.clip_seconds:g}s-{seed}.mp4")
        if not os.path.exists(path):
            started = time.perf_counter()
            try:
                moving = write_site_clip(path + ".tmp.mp4", size, fps=int(args.fps), seconds=args.clip_seconds, seed=seed)
            except OSError as exc:   # an OpenCV build without the MPEG-4 encoder: Motion JPEG, which all have
                log(f"{exc}; writing Motion JPEG instead")
                path = path[:-4] + ".avi"
                moving = write_site_clip(path + ".tmp.avi", size, fps=int(args.fps), seconds=args.clip_seconds,
                                         seed=seed, fourcc="MJPG")
            os.replace(path + ".tmp" + path[-4:], path)
            log(f"wrote {path} ({moving:.0%} of frames moving) in {time.perf_counter() - started:.1f} s")
        capture, frames = cv2.VideoCapture(path), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(as_frame(frame, args.frames))
        capture.release()
        if not frames:
            raise OSError(f"OpenCV decoded no frame of {path}")
        clips.append(frames)
    return clips


def as_frame(bgr: np.ndarray, kind: str):
    """A decoded BGR frame as --frames hands it to the pipeline (shared by the cameras of its clip,
    never written to)."""
    if kind == "bgr":
        return bgr
    import cv2

    from segpost.preprocess import YuvFrame

    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)   # Y, then U and V planes of H/2 x W/2
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    nv12 = np.concatenate([i420[:h], np.stack([u, v], axis=-1).reshape(h // 2, w)])   # Y, then U V interleaved
    if kind == "nv12-gpu":
        import cupy

        nv12 = cupy.asarray(nv12)
    return YuvFrame(nv12, "nv12")


def engine_config(args, size) -> dict:
    if args.backend == "torch":
        return {"backend": "torch", "classes": TORCH_NAMES, "max_cameras": args.batch, "max_frame_size": list(size),
                "compile": args.compile, "classes_per_call": "all", "dtype": "float16",
                "compile_cache": os.path.abspath(os.path.join(args.work_dir, "compile-cache")),
                # Random weights score at random: keep the top_k best per camera and class.
                "score_threshold": 0.0, "top_k": args.top_k}
    return {"backend": "synthetic", "classes": SYNTHETIC_NAMES, "max_cameras": args.batch, "max_frame_size": list(size),
            "busy_ms": [float(v) for v in args.busy_ms.split(",")], "classes_per_call": "all"}


def tiny_engines(args, size):
    """A tiny random Sam3Model's engines and the config engine_config would give (dev checks)."""
    from segpost.engines.sam3_onnx import tiny_sam3_config
    from segpost.engines.torch_sam3 import Sam3Torch
    from segpost.pipeline import ClassPrompt, PipelineConfig

    sam3 = Sam3Torch(None, dtype=np.float32, device=args.device, config=tiny_sam3_config(), seed=3,
                     compile=args.compile)
    prompts = [ClassPrompt(*p) for p in sam3.text_prompts(TORCH_NAMES)]
    config = PipelineConfig(prompts, max_cameras=args.batch, max_frame_size=size, score_threshold=0.0,
                            top_k=args.top_k, classes_per_call="all")
    return sam3.vision_encoder, sam3.decoder, config


def gpu_memory() -> Dict[str, int]:
    """What the GPU holds now, by allocator: the N's pipeline (CuPy), the engines (torch), the device."""
    held: Dict[str, int] = {}
    try:
        import cupy

        held["cupy_pool"] = int(cupy.get_default_memory_pool().total_bytes())
        free, total = cupy.cuda.runtime.memGetInfo()
        held["device_used"] = int(total - free)
    except Exception:   # no CUDA (the synthetic backend on a CPU)
        return held
    try:
        import torch

        held["torch_reserved"] = int(torch.cuda.memory_reserved())
    except Exception:
        pass
    return held


def release_cached_gpu_memory() -> None:
    """Give the allocators' cached blocks back between two N: CuPy's pool and torch's caching
    allocator each keep what they freed, so a larger N's pipeline (CuPy) found the GPU full of
    torch's cache (an OutOfMemoryError at N = 28 on the H100, 2026-12-07)."""
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def host_costs(size, repeats: int = 10) -> dict:
    """ms on this host's CPU per predicted mask at the clips' size: moving it (RunLengthMask.moved,
    what TrackMotion.predict does per track) and its COCO RLE (what a predicted record's mask costs)."""
    from segpost.encodings import RunLengthMask
    from segpost.schedule import coco_rle

    h, w = size
    mask = np.zeros(size, bool)
    mask[h // 4:h // 2, w // 4:w // 2] = True
    runs = RunLengthMask.of_dense(mask)
    started = time.perf_counter()
    for _ in range(repeats):
        moved = runs.moved(3, 2)
    middle = time.perf_counter()
    for _ in range(repeats):
        coco_rle(moved)
    return {"shift_ms": (middle - started) / repeats * 1e3, "rle_ms": (time.perf_counter() - middle) / repeats * 1e3}


def run_one(args, engines, clips, schedule: str, n: int) -> dict:
    """N cameras for --warmup + --seconds under `schedule`; the row of numbers."""
    vision_encoder, decoder, config = engines
    on_change = schedule == "on_change"
    sched = ScheduleConfig(**{**json.loads(args.schedule_json), "mode": schedule, "output_fps": args.output_fps,
                              "max_interval": args.max_interval})
    # As `segpost run`: on_change keeps the engines' batch and tracks every source. every_frame runs the
    # engines' batch too (a compiled engine runs it whatever the cameras: nothing recompiles).
    batch = min(args.batch, n) if on_change else args.batch
    cfg = dataclasses.replace(config, max_cameras=batch, cameras=n if on_change else None,
                              track=config.track or TrackerConfig(),
                              output=OutputKind.RLE if args.masks == "rle" else OutputKind.PACKED)
    pipeline = MultiCameraPipeline(vision_encoder, decoder, cfg)
    scheduled = ScheduledPipeline(pipeline, sched) if on_change else None
    pacers = [PacedClip(clips[c % len(clips)], args.fps, (c * 53) % len(clips[c % len(clips)])) for c in range(n)]
    sources = [(c, CameraSource(f"paced://camera{c}", (lambda url, p=p: p), live=True, stall_seconds=30.0))
               for c, p in enumerate(pacers)]
    sink = TimedSink()
    rounds = []   # (monotonic end, model frames, round ms, tiers) of rounds that ran the model

    def on_round(result):
        if result.cameras or result.skipped:
            tiers = list(scheduled.scheduler.last_tiers) if scheduled is not None else []
            rounds.append((time.monotonic(), len(result.cameras), result.timings_ms["round"], tiers))

    messages = []
    runner = TimedRunner(pipeline, sources, [sink], masks=args.masks, scheduled=scheduled, on_round=on_round,
                          log=messages.append, watchdog_seconds=None)
    stop = threading.Event()
    started, cpu = time.monotonic(), os.times()
    timer = threading.Timer(args.warmup + args.seconds, stop.set)
    timer.start()
    try:
        summary = runner.run(stop=stop)
    finally:
        timer.cancel()
    cpu_s = sum(os.times()[:2]) - sum(cpu[:2])
    memory = gpu_memory()   # with this N's pipeline alive
    t0, t1 = started + args.warmup, started + args.warmup + args.seconds
    row = measure(args, sink.records, rounds, pacers, n, t0, t1)
    # Over the whole run: every frame a model round took gets one model record (the check of the counts).
    row.update(model_records_all=sum(1 for r in sink.records if not r[3]),
               predicted_records_all=sum(1 for r in sink.records if r[3]),
               model_round_frames_all=int(sum(r[1] for r in rounds)),
               cpu_cores=cpu_s / (time.monotonic() - started),
               # seconds per second of the run (the runner's one thread): on_change's host work next to its rounds
               host_share={k: v / (time.monotonic() - started) for k, v in runner.host_s.items()} if on_change else None)
    row.update(schedule=schedule, cameras=n, batch=batch, rounds_all=summary["rounds"], gpu_memory=memory,
               dropped_frames=sum(s.stats["dropped"] for _, s in sources),
               messages=[m for m in messages if "paced clip" not in m][:5])
    if scheduled is not None:
        row["scheduler"] = scheduled.summary()
    return row


def measure(args, records, rounds, pacers, n: int, t0: float, t1: float) -> dict:
    """The row of one run from its records written in [t0, t1)."""
    seconds = t1 - t0
    last_seen: Dict[int, int] = {}   # camera -> frame index of the newest model record
    per_camera = {c: {"records": 0, "model": 0, "predicted": 0, "staleness": []} for c in range(n)}
    for at, camera, index, predicted in records:   # in write order
        if not predicted:
            last_seen[camera] = index
        if not t0 <= at < t1:
            continue
        cam = per_camera[camera]
        cam["records"] += 1
        cam["predicted" if predicted else "model"] += 1
        seen = last_seen.get(camera)
        cam["staleness"].append(np.inf if seen is None else at - pacers[camera].capture_time(seen))
    rates = [per_camera[c]["records"] / seconds for c in range(n)]
    # A record before its camera's first observation is infinitely stale: "higher" keeps inf out of
    # the interpolation (inf - inf); the pooled percentiles are over the observed ones, counted apart.
    p95s = [float(np.percentile(per_camera[c]["staleness"], 95, method="higher")) if per_camera[c]["staleness"]
            else np.inf for c in range(n)]
    everything = [s for c in range(n) for s in per_camera[c]["staleness"]]
    pooled = [s for s in everything if np.isfinite(s)]
    model = sum(per_camera[c]["model"] for c in range(n))
    predicted = sum(per_camera[c]["predicted"] for c in range(n))
    window = [r for r in rounds if t0 <= r[0] < t1]
    tiers: Dict[str, int] = {}
    for r in window:
        for tier in r[3]:
            tiers[tier] = tiers.get(tier, 0) + 1
    served = min(rates) >= 0.95 * args.output_fps and max(p95s) <= args.max_staleness
    finite = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731  (JSON has no inf)
    staleness_ok = max(p95s) <= args.max_staleness
    return {"served": bool(served), "seconds": seconds,
            # The highest output rate these records meet (>= 95% of it), where the staleness is met: the
            # runner's one thread writes a camera at most one record per round, so a round near
            # 1 / --output-fps decides it; this says how far off a run that was not served was.
            "output_fps_met": float(min(rates)) / 0.95 if staleness_ok else 0.0,
            "records_per_s": [round(r, 3) for r in rates], "records_per_s_min": float(min(rates)), "records_per_s_mean": float(np.mean(rates)),
            "target_per_s": args.output_fps,
            "staleness_p50_s": finite(np.percentile(pooled, 50)) if pooled else None,
            "staleness_p95_s": finite(np.percentile(pooled, 95)) if pooled else None,
            "staleness_p95_worst_camera_s": finite(max(p95s)), "records_before_observed": len(everything) - len(pooled),
            "model_frames_per_s": model / seconds, "model_frames_per_camera_s": model / seconds / n,
            "predicted_share": predicted / (model + predicted) if model + predicted else 0.0,
            "model_records": model, "predicted_records": predicted,
            "model_rounds": len(window), "model_round_frames": int(sum(r[1] for r in window)),
            "round_ms_p50": float(np.percentile([r[2] for r in window], 50)) if window else None,
            "round_ms_p95": float(np.percentile([r[2] for r in window], 95)) if window else None,
            "tiers": tiers}


def _f(value, spec: str = "{:.2f}") -> str:
    return "-" if value is None else spec.format(value)


def print_row(row: dict) -> None:
    log(f"{row['schedule']:11s} N={row['cameras']:3d}: {'SERVED' if row['served'] else 'not served'}; records/s "
        f"min {row['records_per_s_min']:.2f} mean {row['records_per_s_mean']:.2f} (target {row['target_per_s']:g}); "
        f"staleness p50 {_f(row['staleness_p50_s'])} p95 {_f(row['staleness_p95_s'])} worst camera p95 "
        f"{_f(row['staleness_p95_worst_camera_s'])} s; model {row['model_frames_per_s']:.1f} frames/s "
        f"({row['model_rounds']} rounds, p50 {_f(row['round_ms_p50'], '{:.0f}')} ms); predicted {row['predicted_share']:.0%}; "
        f"tiers {row['tiers']}; CPU {row['cpu_cores']:.1f} cores"
        + (f"; runner thread: {', '.join(f'{k} {v:.0%}' for k, v in row['host_share'].items())}" if row["host_share"] else "")
        + (f"; GPU memory (GiB) {', '.join(f'{k} {v / 2**30:.1f}' for k, v in row['gpu_memory'].items())}"
           if row.get("gpu_memory") else ""))


def markdown(result: dict) -> str:
    fmt = _f
    lines = [f"Capacity: {result['backend']} ({result['engine']}), batch {result['batch']}, {result['size']} "
             f"clips at {result['fps']:g} fps, output {result['output_fps']:g} records/s per camera, staleness p95 "
             f"<= {result['max_staleness']:g} s, on_change max_interval {result['max_interval']:g} s; frames "
             f"{result['frames']}, masks {result['masks']}; host per predicted mask: shift "
             f"{result['host_ms_per_predicted_mask']['shift_ms']:.2f} ms, RLE {result['host_ms_per_predicted_mask']['rle_ms']:.2f} ms",
             "", "| schedule | cameras | served | records/s min / mean | staleness p50 / p95 / worst camera p95 (s) "
             "| output fps met | model frames/s | round p50 (ms) | predicted | tiers (overdue/changed/tracks/fill) | CPU cores "
             "| runner thread: model rounds / gate+predict / write predicted |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['schedule']} | {r['cameras']} | error: {' '.join(str(r['error']).split())[-150:]} |"
                         + " |" * 9)
            continue
        t = r["tiers"]
        lines.append(f"| {r['schedule']} | {r['cameras']} | {'yes' if r['served'] else 'no'} | "
                     f"{r['records_per_s_min']:.2f} / {r['records_per_s_mean']:.2f} | {fmt(r['staleness_p50_s'])} / "
                     f"{fmt(r['staleness_p95_s'])} / {fmt(r['staleness_p95_worst_camera_s'])} | {r['output_fps_met']:.2f} | "
                     f"{r['model_frames_per_s']:.1f} | {fmt(r['round_ms_p50'], '{:.0f}')} | {r['predicted_share']:.0%} | "
                     f"{'/'.join(str(t.get(k, 0)) for k in ('overdue', 'changed', 'tracks', 'fill'))} | {r['cpu_cores']:.1f} | "
                     + (" / ".join(f"{v:.0%}" for v in r["host_share"].values()) if r["host_share"] else "-") + " |")
    best = result["largest_served"]
    ratio = result["ratio"]
    lines += ["", f"Largest N served: every_frame {best.get('every_frame')}, on_change {best.get('on_change')}"
              + (f"; ratio {ratio:.2f}x" if ratio else "")]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("torch", "synthetic"), default="torch",
                        help="torch: Sam3Model fp16 (random weights) on the GPU; synthetic: the synthetic engines "
                             "(tiny sizes on the CPU: checks the script)")
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None)
    parser.add_argument("--compile", default="default", help="torch: torch.compile mode (off, default, max-autotune)")
    parser.add_argument("--size", default=None, help="HxW of the clips (torch 1080x1920, synthetic 120x160)")
    parser.add_argument("--batch", type=int, default=None, help="the engines' batch, max_cameras (torch 8)")
    parser.add_argument("--fps", type=float, default=25.0, help="each camera's frame rate")
    parser.add_argument("--output-fps", type=float, default=5.0, help="records/s each camera must get (Frigate's 5)")
    parser.add_argument("--max-staleness", type=float, default=1.0, help="seconds: staleness p95 a served camera keeps")
    parser.add_argument("--max-interval", type=float, default=0.75,
                        help="on_change: every camera seen by the model at least this often (s); staleness p95 <= "
                             "1 s needs it below 1 s (a static camera's predicted records age up to max_interval + "
                             "the round's latency)")
    parser.add_argument("--schedule-json", default="{}", help="other ScheduleConfig fields, e.g. '{\"fill\": true}'")
    parser.add_argument("--every-frame-cameras", type=int, nargs="+", default=None,
                        help="every_frame N (default: the batch, then half of it if the batch is not served)")
    parser.add_argument("--on-change-cameras", type=int, nargs="+", default=None,
                        help="on_change N, growing (torch 8 16 24 32 40 48 64)")
    parser.add_argument("--schedules", nargs="+", default=["every_frame", "on_change"],
                        choices=("every_frame", "on_change"))
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per N (torch 20)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds per N before measuring (torch 5)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="the whole run's budget from start (torch 480): no N starts that would end past it")
    parser.add_argument("--clips", type=int, default=None, help="distinct site clips (cameras take turns)")
    parser.add_argument("--clip-seconds", type=float, default=None)
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "segpost-capacity"),
                        help="where the clips (reused when there) and the compile cache go; --out gets the results only")
    parser.add_argument("--frames", choices=("nv12-gpu", "bgr", "nv12-host"), default=None,
                        help="what each camera hands the pipeline (default: nv12-gpu on CUDA, bgr on the CPU)")
    parser.add_argument("--masks", choices=("rle", "none"), default="rle", help="as segpost run --masks")
    parser.add_argument("--top-k", type=int, default=1,
                        help="torch: detections kept per camera and class (1: 4 objects a camera, each a track "
                             "predicted between the model's looks)")
    parser.add_argument("--tiny-model", action="store_true",
                        help="torch: a tiny random Sam3Model (float32; checks the torch path on a CPU in seconds)")
    parser.add_argument("--busy-ms", default="10,5", help="synthetic: encoder, decoder busy ms per call")
    args = parser.parse_args()
    began = time.monotonic()
    preset = PRESETS[args.backend]
    for key in ("size", "batch", "seconds", "warmup", "clip_seconds", "clips", "max_seconds", "device"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    size = tuple(int(v) for v in args.size.split("x"))
    args.frames = args.frames or ("nv12-gpu" if args.device == "cuda" else "bgr")
    os.makedirs(args.out, exist_ok=True)
    clips = make_clips(args, size)
    log(f"{len(clips)} clips of {len(clips[0])} frames {size[0]}x{size[1]} in memory "
        f"({sum(getattr(f, 'data', f).nbytes for c in clips for f in c) / 2**30:.2f} GiB, {args.frames}); building the engines ({args.backend})")
    started = time.perf_counter()
    engines = tiny_engines(args, size) if args.tiny_model else build_from_config(
        engine_config(args, size), args.out, device=args.device, where="capacity")
    # The first pipeline binds the buffers: a compiled engine compiles here, once.
    MultiCameraPipeline(engines[0], engines[1], dataclasses.replace(engines[2], max_cameras=args.batch))
    build_s = time.perf_counter() - started
    log(f"engines ready in {build_s:.1f} s")

    costs = host_costs(size)
    log(f"host cost per predicted mask at {size[0]}x{size[1]}: shift {costs['shift_ms']:.2f} ms, "
        f"RLE {costs['rle_ms']:.2f} ms")
    per_run = args.warmup + args.seconds + 5.0   # + building the pipeline and closing the sources

    def budget_left() -> bool:
        return time.monotonic() - began + per_run <= args.max_seconds

    rows, largest, skipped = [], {}, []

    def attempt(schedule: str, n: int):
        if not budget_left():
            skipped.append(f"{schedule} N={n}")
            log(f"{schedule} N={n}: skipped, the --max-seconds budget ({args.max_seconds:g} s) would run out")
            return None
        try:
            row = run_one(args, engines, clips, schedule, n)
        except Exception as exc:   # report the N and go on
            row = {"schedule": schedule, "cameras": n, "served": False, "error": f"{type(exc).__name__}: {exc}"[:500],
                   "gpu_memory": gpu_memory()}
            log(f"{schedule} N={n}: error: {row['error']} (GPU memory held: {row['gpu_memory']})")
            rows.append(row)
            return row
        finally:
            gc.collect()   # the next N's pipeline binds the engines again: this one's buffers go first
            release_cached_gpu_memory()
        rows.append(row)
        print_row(row)
        if row["served"]:
            largest[schedule] = max(largest.get(schedule, 0), n)
        return row

    if "every_frame" in args.schedules:
        # A compiled engine runs its whole batch whatever the cameras: below the batch each camera gets
        # the same rounds, so one try at half the batch shows it (a smaller batch needs another compile).
        candidates = args.every_frame_cameras or sorted({args.batch, max(args.batch // 2, 1)}, reverse=True)
        for n in candidates:
            if n > args.batch:
                log(f"every_frame N={n}: skipped, more cameras than the engines' batch ({args.batch})")
                continue
            row = attempt("every_frame", n)
            if row is None or (args.every_frame_cameras is None and row["served"]):
                break
    if "on_change" in args.schedules:
        candidates = args.on_change_cameras or preset["on_change"]
        last_served = None
        for n in candidates:
            row = attempt("on_change", n)
            if row is None:
                break
            if row["served"]:
                last_served = n
                continue
            if last_served is not None and n - last_served > 1:   # one try between the last served N and this one
                attempt("on_change", (last_served + n) // 2)
            break
    ef, oc = largest.get("every_frame"), largest.get("on_change")
    result = {"backend": args.backend, "engine": f"{'tiny ' if args.tiny_model else ''}compile {args.compile}, "
              f"top_k {args.top_k}"
              if args.backend == "torch" else f"busy_ms {args.busy_ms}", "device": args.device,
              "batch": args.batch, "size": args.size, "fps": args.fps, "output_fps": args.output_fps,
              "max_staleness": args.max_staleness, "max_interval": args.max_interval, "seconds": args.seconds,
              "warmup": args.warmup, "masks": args.masks, "frames": args.frames,
              "host_ms_per_predicted_mask": costs, "build_s": build_s, "largest_served": largest,
              "ratio": oc / ef if ef and oc else None, "skipped_for_budget": skipped, "rows": rows,
              "wall_s": time.monotonic() - began}
    save_json(os.path.join(args.out, "capacity.json"), result)
    table = markdown(result)
    with open(os.path.join(args.out, "capacity.md"), "w") as f:
        f.write(table)
    print("\n" + table, flush=True)
    log(f"done in {result['wall_s']:.0f} s: {os.path.join(args.out, 'capacity.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
