"""``segpost demo``: the synthetic multi-camera scene through the whole pipeline, scored against
its ground truth (FPS, latency, VRAM, mask IoU; --soak for long runs)."""
from __future__ import annotations

import json
import sys
import time
from typing import List, Optional

import numpy as np

from ..io.annotate import Trails, mosaic
from ..pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from ..postprocess import OutputKind
from ..synthetic import scene
from ..synthetic.engines import SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder, prompt_for_class
from ..synthetic.evaluation import score_camera
from ..track import TrackerConfig
from .common import Progress, check_output_file, choose_device, rss_bytes


def add_parser(commands) -> None:
    demo = commands.add_parser("demo", help="run the synthetic multi-camera scene and score it against its ground truth")
    demo.add_argument("--cameras", type=int, default=8,
                      help="synthetic cameras, 1 to 64 (one round takes a frame of each)")
    demo.add_argument("--classes", type=int, default=4, help="1 to 4 colour classes")
    demo.add_argument("--objects-per-class", type=int, default=2, help="moving objects of each class in each camera")
    demo.add_argument("--frames", type=int, default=400, help="frames in total (rounds = frames / cameras)")
    demo.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                      help="where the pipeline runs; auto: cuda when segpost's CUDA path works here, else cpu")
    demo.add_argument("--output", choices=("full", "packed", "rle"), default="full",
                      help="how masks come back: full (uint8), packed (1 bit a pixel), rle (COCO run lengths)")
    demo.add_argument("--size", action="append", metavar="WxH",
                      help="camera resolution, repeatable (cycled over cameras); default 1920x1080 and 1280x720 on "
                           "CUDA, 320x240 and 640x480 on the CPU")
    demo.add_argument("--busy-ms", default="0,0", metavar="VE,DEC",
                      help="busy time per call of the synthetic vision encoder and decoder, standing in for real engines")
    demo.add_argument("--eval-every", type=int, default=1, metavar="N", help="score masks against the truth every N rounds (0: never)")
    demo.add_argument("--save", metavar="PATH", help="write the annotated mosaic: .png (last round) or .mp4 (every round)")
    demo.add_argument("--track", action="store_true",
                      help="track identities (segpost.TrackerConfig defaults); --save draws each object's id and trail")
    demo.add_argument("--zones", metavar="FILE",
                      help="zones and lines per camera (segpost.zones' JSON, keyed \"0\", \"1\", ...); turns --track "
                           "on; --save draws them and lights a zone up while a track is inside")
    demo.add_argument("--soak", action="store_true",
                      help="sample VRAM and host RSS every 1000 frames and fail if either grows after warm-up")
    demo.add_argument("--min-iou", type=float, default=None, help="exit with status 1 when the mean mask IoU is lower")
    demo.add_argument("--seed", type=int, default=0, help="the scene's random seed (objects' sizes, paths and speeds)")
    demo.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    demo.set_defaults(handler=run)


def run(args) -> int:
    try:
        import cv2  # noqa: F401  (the scene is drawn with it)
    except ImportError:
        raise ValueError("the demo draws its synthetic cameras with OpenCV, which is not installed: "
                         "pip install \"segpost[video]\" (or opencv-python-headless)") from None
    _check_outputs(args)
    device = choose_device(args.device)
    if not 1 <= args.cameras <= 64:
        raise ValueError("--cameras must be in [1, 64]")
    if args.frames < 1:
        raise ValueError("--frames must be positive")
    try:
        busy = [float(v) for v in args.busy_ms.split(",")]
        assert len(busy) == 2 and min(busy) >= 0
    except (ValueError, AssertionError):
        raise ValueError(f"--busy-ms {args.busy_ms!r}: expected two non-negative numbers, e.g. 40,10") from None
    sizes = _sizes(args.size, device)
    camera_sizes = [sizes[i % len(sizes)] for i in range(args.cameras)]
    geometry = SyntheticGeometry() if device == "cuda" else SyntheticGeometry.small()
    names = ["red", "green", "blue", "yellow"][: args.classes]
    if not 1 <= args.classes <= scene.MAX_CLASSES:
        raise ValueError(f"--classes must be in [1, {scene.MAX_CLASSES}]")
    zones = _zones(args.zones, args.cameras, names)
    config = PipelineConfig([ClassPrompt(n, *prompt_for_class(i, geometry)) for i, n in enumerate(names)],
                            max_cameras=args.cameras,
                            max_frame_size=(max(h for h, _ in camera_sizes), max(w for _, w in camera_sizes)),
                            output=OutputKind(args.output),
                            track=TrackerConfig() if args.track or zones is not None else None, zones=zones)
    pipeline = MultiCameraPipeline(SyntheticVisionEncoder(geometry, device=device, busy_ms=busy[0]),
                                   SyntheticDecoder(geometry, device=device, busy_ms=busy[1]), config)
    world = scene.Scene(camera_sizes, num_classes=args.classes, objects_per_class=args.objects_per_class,
                        seed=args.seed)
    rounds = max(1, args.frames // args.cameras)
    total = rounds * args.cameras
    print(f"segpost demo: {args.cameras} cameras x {args.classes} classes, {rounds} rounds on {device}, "
          f"output {args.output}, busy {busy[0]:g}+{busy[1]:g}x{args.classes} ms", file=sys.stderr)
    progress = Progress.on_stderr(total)
    writer, latencies, stage_sums, ious, false_positives = None, [], {}, [], 0
    trails, track_events = Trails(), {"track_started": 0, "track_ended": 0}
    zone_events: dict = {}
    occupied: dict = {}   # camera -> the zones a track is inside after the round (what --save lights)
    vram, rss, failures = [], [], []
    # Frames are drawn straight into the pipeline's pinned staging slots (no copy in submit), the
    # way capture code would decode into them; --save keeps two private sets to draw on instead.
    staging = [pipeline.staging(c, h, w) for c, (h, w) in enumerate(camera_sizes)]
    buffers = [[np.empty((h, w, 3), np.uint8) for h, w in camera_sizes] for _ in range(2)] if args.save else [staging]
    frames, truths = world.render(0, into=buffers[0])
    started = time.perf_counter()
    for r in range(rounds):
        pipeline.submit(frames)
        current, current_truth = frames, truths
        if r + 1 < rounds:  # draw the next round while the GPU works on this one
            frames, truths = world.render(r + 1, into=buffers[(r + 1) % len(buffers)])
        result = pipeline.collect()
        latencies.append(result.timings_ms["round"])
        for key, value in result.timings_ms.items():
            stage_sums[key] = stage_sums.get(key, 0.0) + value
        if args.eval_every and r % args.eval_every == 0:
            for camera, camera_result in result.cameras.items():
                score = score_camera(camera_result, current_truth[camera], names)
                ious.extend(score.ious)
                false_positives += score.false_positives
        for event in result.track_events:
            track_events[event.kind] += 1
        trails.update(result.cameras)
        for event in getattr(result, "zone_events", ()):
            zone_events[event.kind] = zone_events.get(event.kind, 0) + 1
        if zones is not None:
            occupied = {c: sorted({z for (z, _), n in pipeline.zones.monitor.occupancy(str(c)).items() if n > 0})
                        for c in range(args.cameras)}
        if args.save and (args.save.endswith(".mp4") or r == rounds - 1):
            drawn = None if zones is None else {c: (zones.cameras.get(str(c), ()), occupied[c])
                                                for c in range(args.cameras)}
            writer = _save(args.save, writer, current, result, trails, drawn)
        done = (r + 1) * args.cameras
        if args.soak and (r == 0 or done // 1000 != (done - args.cameras) // 1000):
            vram.append(pipeline.memory_report().get("device_used", 0))
            rss.append(rss_bytes())
        progress.update(done, f"mIoU {np.mean(ious):.3f}" if ious else "")
    elapsed = time.perf_counter() - started
    track_events["track_ended"] += len(pipeline.finish_tracks())   # the end of the run ends every track
    if writer is not None:
        writer.release()
    summary = _summary(pipeline, args.cameras, rounds, elapsed, latencies, stage_sums, ious, false_positives)
    if zones is not None:
        summary["zones"] = {"events": zone_events, "occupied_last_round": {str(c): z for c, z in occupied.items()}}
    if args.track or zones is not None:
        summary["tracks"] = {**track_events, "objects": args.cameras * args.classes * args.objects_per_class}
    if args.soak:
        summary.update(_soak_verdict(vram, rss, failures))
    _print_summary(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if failures:
        for failure in failures:
            print(f"segpost demo: soak FAILED: {failure}", file=sys.stderr)
        return 1
    if args.min_iou is not None and summary["mean_iou"] is not None and summary["mean_iou"] < args.min_iou:
        print(f"segpost demo: mean mask IoU {summary['mean_iou']:.4f} is below --min-iou {args.min_iou}", file=sys.stderr)
        return 1
    return 0


def _check_outputs(args) -> None:
    """--save and --json checked before the run, not after it."""
    import cv2

    for flag in ("--save", "--json"):
        if getattr(args, flag[2:]):
            check_output_file(flag, getattr(args, flag[2:]))
    if args.save and not args.save.endswith(".mp4") and not cv2.haveImageWriter(args.save):
        raise ValueError(f"--save {args.save}: OpenCV writes no such file; use .png (the last round's mosaic) or "
                         ".mp4 (every round)")


def _zones(path: Optional[str], cameras: int, names: List[str]):
    """--zones FILE as a ZoneSet (cameras "0".."n-1", the demo's classes); None without it."""
    if path is None:
        return None
    from ..zones import ZoneSet

    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--zones {path}: {exc}") from None
    return ZoneSet.from_value(value, cameras=[str(c) for c in range(cameras)], class_names=names,
                              where=f"--zones {path}")


def _save(path: str, writer, frames, result, trails: Trails, zones=None):
    import cv2

    image = mosaic(frames, result.cameras, trails=trails, zones=zones)
    if path.endswith(".mp4"):
        if writer is None:
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (image.shape[1], image.shape[0]))
            if not writer.isOpened():
                raise ValueError(f"--save {path}: OpenCV cannot write this video")
        writer.write(image)
        return writer
    if not cv2.imwrite(path, image):
        raise ValueError(f"--save {path}: OpenCV cannot write this image (use .png)")
    return writer


def _summary(pipeline, cameras, rounds, elapsed, latencies, stage_sums, ious, false_positives) -> dict:
    latencies = np.asarray(latencies)
    return {
        "device": pipeline.device, "cameras": cameras, "classes": len(pipeline.class_names), "rounds": rounds,
        "fps_per_camera": rounds / elapsed, "throughput_fps": rounds * cameras / elapsed,
        "round_ms_p50": float(np.percentile(latencies, 50)), "round_ms_p95": float(np.percentile(latencies, 95)),
        "stage_ms_mean": {k: v / rounds for k, v in stage_sums.items()},
        "memory_mb": {k: v / 2**20 for k, v in pipeline.memory_report().items()},
        "mean_iou": float(np.mean(ious)) if ious else None, "objects_scored": len(ious),
        "false_positives": false_positives,
    }


def _soak_verdict(vram: List[int], rss: List[int], failures: List[str]) -> dict:
    # VRAM is compared with the first round; RSS after a warm-up sample (imports, caches, allocator pools).
    vram_delta = (max(vram) - vram[0]) / 2**20 if vram else 0.0
    warm = rss[1:] or rss
    rss_delta = (max(warm) - warm[0]) / 2**20 if warm else 0.0
    if round(vram_delta) != 0:
        failures.append(f"VRAM grew by {vram_delta:.1f} MB")
    if rss_delta >= 20:
        failures.append(f"host RSS grew by {rss_delta:.1f} MB after warm-up")
    return {"soak": {"samples": len(vram), "vram_mb": [v / 2**20 for v in vram], "rss_mb": [v / 2**20 for v in rss],
                     "vram_delta_mb": vram_delta, "rss_delta_mb": rss_delta}}


def _print_summary(s: dict) -> None:
    print(f"device {s['device']}: {s['cameras']} cameras x {s['classes']} classes, {s['rounds']} rounds")
    print(f"  {s['fps_per_camera']:.1f} FPS per camera, {s['throughput_fps']:.1f} frames/s in total")
    print(f"  round latency p50 {s['round_ms_p50']:.2f} ms, p95 {s['round_ms_p95']:.2f} ms")
    print("  stages (ms, mean): " + ", ".join(f"{k} {v:.2f}" for k, v in s["stage_ms_mean"].items()))
    print("  memory (MB): " + ", ".join(f"{k} {v:.1f}" for k, v in s["memory_mb"].items()))
    if s["mean_iou"] is not None:
        print(f"  mask IoU vs ground truth: mean {s['mean_iou']:.4f} over {s['objects_scored']} objects, "
              f"{s['false_positives']} false positives")
    if "zones" in s:
        print("  zones: " + (", ".join(f"{k} {v}" for k, v in sorted(s["zones"]["events"].items())) or "no events"))
    if "tracks" in s:
        t = s["tracks"]
        print(f"  tracking: {t['track_started']} tracks confirmed for {t['objects']} objects in the scene, "
              f"{t['track_ended']} ended")
    if "soak" in s:
        print(f"  soak: VRAM delta {s['soak']['vram_delta_mb']:.1f} MB, RSS delta {s['soak']['rss_delta_mb']:.1f} MB "
              f"over {s['soak']['samples']} samples")


def _sizes(values: Optional[List[str]], device: str) -> List[tuple]:
    if not values:
        values = ["1920x1080", "1280x720"] if device == "cuda" else ["320x240", "640x480"]
    sizes = []
    for value in values:
        try:
            w, h = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise ValueError(f"--size {value!r}: expected WIDTHxHEIGHT, e.g. 1920x1080") from None
        if w < 16 or h < 16:
            raise ValueError(f"--size {value!r}: at least 16x16")
        sizes.append((h, w))
    return sizes
