"""What zones add to a round (issue 33's cost goals: <= 0.1 ms of GPU time and <= 0.3 ms of host
time for 8 cameras x 4 classes x 40 detections and 8 zones per camera).

    python bench/zone_cost.py --out DIR [--device cuda|cpu] [--rounds N] [--engines numpy,cpp]

The tracker's round of bench/track_cost.py (engine-shaped outputs of moving blobs through one
Postprocessor per class and a segpost.Tracker), then ZoneMasks on the Tracker's packed masks
(one kernel for every class + the overlap copy, on the round's stream) and ZoneMonitor's rules
for every camera. 8 star-shaped zones per camera, random, covering about a third of the frame.

GPU time: CUDA events around ZoneMasks.enqueue on the stream, queued behind a busy kernel so the
host's launch time does not count ("events"), and CUPTI's time of the zone kernel alone
(torch.profiler, "kernel"). Host time, per round: the enqueue call, and the rules (reading each
camera's rows of the overlaps and ZoneMonitor.update_round), medians over the timed rounds, for
each of ZoneMonitor's engines: "numpy" (the rules' numpy twin) and "cpp" (the default, C++).
With --device cpu the same rounds run the C++ CPU twin (its time is then in "enqueue"): a smoke test.
Writes DIR/zone_cost.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import segpost
from segpost import TrackerConfig
from segpost.zones import ZoneMasks, ZoneMonitor, ZoneSet

sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402
from track_cost import _SPIN, FRAME, MASK, QUERIES, Blobs  # noqa: E402

GOAL_GPU_MS, GOAL_HOST_MS = 0.1, 0.3


def star(rng) -> list:
    n = int(rng.integers(4, 9))
    cx, cy = rng.uniform(0.25, 0.75, 2)
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    radii = rng.uniform(0.1, 0.3, n)
    return [[float(np.clip(cx + r * np.cos(a), 0, 1)), float(np.clip(cy + r * np.sin(a), 0, 1))]
            for a, r in zip(angles, radii)]


def zones_for(cameras: int, per_camera: int, classes, seed: int = 0) -> ZoneSet:
    rng = np.random.default_rng(seed)
    return ZoneSet.from_value({str(c): [{"name": f"zone{z}", "polygon": star(rng), "dwell_seconds": 5.0,
                                         "max_count": 3} for z in range(per_camera)] for c in range(cameras)},
                              class_names=classes)


def measure(device: str, cameras: int, classes: int, per_camera: int, zones_per_camera: int, rounds: int,
            rule: str = "mask", engine: str = "cpp") -> dict:
    xp, stream = np, None
    if device == "cuda":
        import cupy as xp

        stream = xp.cuda.Stream(non_blocking=True)
        spin = xp.RawKernel(_SPIN, "spin")
    names = [f"class{c}" for c in range(classes)]
    blobs = Blobs(xp, cameras, classes, per_camera)
    capacity = max(128, cameras * per_camera)
    posts = [segpost.Postprocessor(max_frames=cameras, num_queries=QUERIES, mask_size=MASK, capacity=capacity,
                                   max_frame_size=FRAME, score_threshold=0.3, device=device,
                                   output=segpost.OutputKind.PACKED if device == "cuda" else segpost.OutputKind.LOWRES)
             for _ in range(classes)]
    tracker = segpost.Tracker(TrackerConfig(min_hits=1), cameras=cameras, class_names=names, capacity=capacity,
                              mask_size=MASK, device=device)
    zones = zones_for(cameras, zones_per_camera, names)
    zone_masks = ZoneMasks(zones, tracker=tracker, mask_size=MASK, rule=rule)
    monitor = ZoneMonitor(zones, engine=engine)
    live = list(range(cameras))
    keys = [str(c) for c in live]
    gpu_ms, enqueue_ms, rules_ms, events, detections = [], [], [], [], []
    warm = 5
    def run_round(t, timed=True):
        if device == "cuda":
            with stream:
                blobs.draw(t)
                stream.synchronize()
                spin((1,), (1,), (np.uint64(3_000_000),))   # the host queues everything below meanwhile
        else:
            blobs.draw(t)
        for c, post in enumerate(posts):
            post.enqueue(blobs.logits[c], None, blobs.boxes[c], blobs.masks[c], [FRAME] * cameras, class_id=c,
                         stream=stream)
            tracker.enqueue(c, post, blobs.masks[c], live, stream=stream)
        if device == "cuda":
            marks = [xp.cuda.Event(), xp.cuda.Event()]
            marks[0].record(stream)
        started = time.perf_counter()
        zone_masks.enqueue(posts, live, stream=stream)
        enqueue = time.perf_counter() - started
        if device == "cuda":
            marks[1].record(stream)
        results = [post.result() for post in posts]
        ids, track_events = tracker.update(posts, [t] * cameras, [FRAME] * cameras)
        started = time.perf_counter()
        for e in track_events:   # as PipelineZones.events: confirmed tracks only, the round in one call
            if e.kind == "track_started":
                monitor.confirm(str(e.camera), e.track_id)
        counts = np.array([[len(result[f]) for f in range(cameras)] for result in results], np.int32)
        found = monitor.update_batch(keys, [t] * cameras, [t / 10.0] * cameras, names, counts, ids,
                                     zone_masks.overlap(), confirmed_only=True)
        for e in track_events:
            if e.kind == "track_ended":
                found += monitor.end_track(str(e.camera), e.track_id)
        rules = time.perf_counter() - started
        if timed:
            enqueue_ms.append(enqueue * 1e3)
            rules_ms.append(rules * 1e3)
            events.append(len(found))
            detections.append(sum(r.num_detections for r in results))
            if device == "cuda":
                marks[1].synchronize()
                gpu_ms.append(xp.cuda.get_elapsed_time(marks[0], marks[1]))

    for t in range(warm):
        run_round(t, timed=False)
    for t in range(warm, warm + rounds):
        run_round(t)
    row = {"device": device, "rule": rule, "engine": engine, "cameras": cameras, "classes": classes,
           "detections_per_round": float(np.median(detections)), "zones_per_camera": zones_per_camera,
           "rounds": rounds, "host_enqueue_ms": float(np.median(enqueue_ms)),
           "host_rules_ms": float(np.median(rules_ms)), "host_rules_ms_p95": float(np.percentile(rules_ms, 95)),
           "events_per_round": float(np.mean(events)), "memory": zone_masks.memory_report()}
    if gpu_ms:
        row.update(gpu_ms=float(np.median(gpu_ms)), gpu_ms_p95=float(np.percentile(gpu_ms, 95)))
        try:
            import torch
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for t in range(min(rounds, 30)):
                    run_round(warm + rounds + t, timed=False)
                torch.cuda.synchronize()
            ours = [e for e in prof.events() if e.device_type.name == "CUDA" and "zone_overlap" in e.name]
            row["kernel_ms"] = sum(e.device_time for e in ours) / 1e3 / min(rounds, 30)
        except ImportError as exc:
            row["kernel_ms_error"] = f"no CUPTI measure: {exc}"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 100 cuda, 5 cpu)")
    parser.add_argument("--engines", default="numpy,cpp", help="ZoneMonitor engines to time (default numpy,cpp)")
    args = parser.parse_args()
    device = args.device or ("cuda" if segpost.cuda_available() else "cpu")
    rounds = args.rounds or (100 if device == "cuda" else 5)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for rule in ("mask", "bottom_centre"):
        for engine in args.engines.split(","):
            print(f"zone_cost: 8 cams x 4 classes x 40 per class-batch, 8 zones a camera, rule {rule}, {device}, "
                  f"rules engine {engine}", file=sys.stderr, flush=True)
            row = measure(device, 8, 4, 5, 8, rounds, rule, engine)
            rows.append(row)
            print(json.dumps(row), flush=True)
    save_json(os.path.join(args.out, "zone_cost.json"), rows)

    def cells(r):
        gpu, kernel = r.get("gpu_ms"), r.get("kernel_ms")
        host = r["host_enqueue_ms"] + r["host_rules_ms"]
        return [r["rule"], r.get("engine", "numpy"), r["device"], f"{r['detections_per_round']:.0f}",
                "" if gpu is None else f"{gpu:.3f} (p95 {r['gpu_ms_p95']:.3f})",
                "" if kernel is None else f"{kernel:.4f}",
                "" if gpu is None else ("yes" if gpu <= GOAL_GPU_MS else "NO"),
                f"{r['host_enqueue_ms']:.3f}", f"{r['host_rules_ms']:.3f} (p95 {r['host_rules_ms_p95']:.3f})",
                "yes" if host <= GOAL_HOST_MS else "NO", f"{r['events_per_round']:.1f}"]

    print_table(["rule", "rules engine", "device", "detections/round", "GPU ms/round (events)", "kernel ms (CUPTI)",
                 f"GPU <= {GOAL_GPU_MS}", "host enqueue ms (CPU: the twin)", "host rules ms", f"host <= {GOAL_HOST_MS}",
                 "events/round"], rows, cells, ["rule"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
