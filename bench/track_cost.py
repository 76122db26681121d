"""What the tracker adds to a round (issue 25's cost goals: <= 0.3 ms of GPU time and <= 1 ms of
host time for 8 cameras x 4 classes x ~40 detections per class-batch).

    python bench/track_cost.py --out DIR [--device cuda|cpu] [--rounds N]

Engine-shaped outputs (SAM3's 200 queries, 288x288 fp16 mask logits) of moving blobs, query slots
shuffled every frame, go through one Postprocessor per class and a segpost.Tracker, as the
pipeline drives them. Cases: the goal's load and a heavier one (120 detections per class-batch).

GPU time, three ways: "overlapped": CUDA events around the tracker's work on the stream (per
class: pack + mask IoU + the IoU copy; per round: the plan upload + pool refresh), queued behind a
busy kernel so that the host's launch time does not count, while the postprocessors' stage 2
(resize + encode of 40 1080p masks a class) runs beside it on their own streams, as in a round:
the two share the GPU, so this interval counts some of their time too. "isolated": the same
intervals with each class's postprocessor finished before the tracker's work is queued. "kernels":
CUPTI's time of the tracker's three kernels alone (torch.profiler), summed per round; its two small
copies (the IoU matrix, 32 KB a class, and the plan, 10 KB) are left out there.
Host time: update() (association, Kalman, lifecycle, the plan) and the enqueue() calls, per round.
With --device cpu the same rounds run the C++ CPU twin (its pack + IoU timed in enqueue).
Writes DIR/track_cost.json and prints a Markdown table; medians over the timed rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

import segpost
from segpost import TrackerConfig

sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402

QUERIES, MASK, FRAME = 200, (288, 288), (1080, 1920)
GOAL_GPU_MS, GOAL_HOST_MS = 0.3, 1.0
_SPIN = r"""
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now)); } while (now - start < ns);
}
"""


class Blobs:
    """Per class, `per_camera` objects in each camera moving across the frame; each round's
    outputs reuse the same arrays (only the kept slots are redrawn)."""

    def __init__(self, xp, cameras: int, classes: int, per_camera: int, seed: int = 0):
        self.xp, self.cameras, self.classes, self.per_camera = xp, cameras, classes, per_camera
        rng = np.random.default_rng(seed)
        h, w = MASK
        n = cameras * classes * per_camera
        self.start = np.stack([rng.uniform(20, w - 20, n), rng.uniform(20, h - 20, n)], 1)
        self.velocity = rng.uniform(-2, 2, (n, 2))
        self.radius = rng.uniform(8, 24, n)
        self.rng = rng
        self.logits = [xp.full((cameras, QUERIES), -12.0, np.float32) for _ in range(classes)]
        self.boxes = [xp.zeros((cameras, QUERIES, 4), np.float32) for _ in range(classes)]
        self.masks = [xp.full((cameras, QUERIES) + MASK, -5.0, np.float16) for _ in range(classes)]
        y, x = np.mgrid[0:h, 0:w] + 0.5
        self.grid = (xp.asarray(x.astype(np.float32)), xp.asarray(y.astype(np.float32)))
        self.slots = np.zeros((classes, cameras, per_camera), np.int64)

    def draw(self, t: int) -> None:
        xp, (h, w), n = self.xp, MASK, self.per_camera
        centre = self.start + self.velocity * t
        centre = np.abs((centre + [w, h]) % (2 * np.array([w, h])) - [w, h])   # bounce off the edges
        for c in range(self.classes):
            self.logits[c][...] = -12.0
            for f in range(self.cameras):
                self.masks[c][f, xp.asarray(self.slots[c, f])] = -5.0   # last round's objects
                first = (f * self.classes + c) * n
                slots = self.rng.permutation(QUERIES)[:n]   # DETR slots are no identities
                self.slots[c, f] = slots
                index = xp.asarray(slots)
                cx, cy = centre[first: first + n, 0], centre[first: first + n, 1]
                r = self.radius[first: first + n]
                as_grid = lambda v: xp.asarray(v.astype(np.float32))[:, None, None]  # noqa: E731
                d = xp.sqrt((self.grid[0] - as_grid(cx)) ** 2 + (self.grid[1] - as_grid(cy)) ** 2)
                self.masks[c][f, index] = (3.0 * (1 - d / as_grid(r))).astype(np.float16)
                self.logits[c][f, index] = 3.0
                box = np.stack([cx - r, cy - r, cx + r, cy + r], 1) / [w, h, w, h]
                self.boxes[c][f, index] = xp.asarray(np.clip(box, 0, 1).astype(np.float32))


TRACKER_KERNELS = ("pack_masks", "mask_iou", "refresh_pool")


def cupti_ms_per_round(run_round, rounds: int) -> float:
    """The tracker's kernels (CUPTI, via torch.profiler), ms per round."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for t in range(rounds):
            run_round(t)
        torch.cuda.synchronize()
    ours = [e for e in prof.events() if e.device_type.name == "CUDA" and any(k in e.name for k in TRACKER_KERNELS)]
    return sum(e.device_time for e in ours) / 1e3 / rounds


def measure(device: str, cameras: int, classes: int, per_camera: int, rounds: int) -> dict:
    xp = np
    if device == "cuda":
        import cupy as xp

        stream = xp.cuda.Stream(non_blocking=True)
        spin = xp.RawKernel(_SPIN, "spin")
    blobs = Blobs(xp, cameras, classes, per_camera)
    capacity = 128 if cameras * per_camera <= 128 else cameras * per_camera
    posts = [segpost.Postprocessor(max_frames=cameras, num_queries=QUERIES, mask_size=MASK, capacity=capacity,
                                   max_frame_size=FRAME, score_threshold=0.3, device=device,
                                   # LOWRES on the CPU: the twin's 1080p resize would dominate the run's time
                                   output=segpost.OutputKind.PACKED if device == "cuda" else segpost.OutputKind.LOWRES)
             for _ in range(classes)]
    tracker = segpost.Tracker(TrackerConfig(), cameras=cameras, class_names=[f"class{c}" for c in range(classes)],
                              capacity=capacity, mask_size=MASK, device=device)
    live = list(range(cameras))
    gpu_ms, isolated_ms, update_ms, enqueue_ms, detections, tracked = [], [], [], [], [], []
    warm = 5

    def run_round(t, isolated=False, timed=None):
        """One round as the pipeline drives it; `isolated`: each postprocessor finishes before the
        tracker's work on its class is queued. Returns (results, ids, host enqueue s, update s)."""
        if device == "cuda":
            events = [xp.cuda.Event() for _ in range(2 * classes + 2)]
            with stream:   # the outputs are drawn on the stream the round runs on
                blobs.draw(t)
                stream.synchronize()
                spin((1,), (1,), (np.uint64(5_000_000),))   # the host queues everything below meanwhile
        else:
            blobs.draw(t)
        host, results = 0.0, [None] * classes
        for c, post in enumerate(posts):
            post.enqueue(blobs.logits[c], None, blobs.boxes[c], blobs.masks[c], [FRAME] * cameras, class_id=c,
                         stream=stream if device == "cuda" else None)
            if isolated:
                results[c] = post.result()
                if device == "cuda":   # the GPU idles now: a short busy kernel hides the host's launches again
                    with stream:
                        spin((1,), (1,), (np.uint64(300_000),))
            if device == "cuda":
                events[2 * c].record(stream)
            started = time.perf_counter()
            tracker.enqueue(c, post, blobs.masks[c], live, stream=stream if device == "cuda" else None)
            host += time.perf_counter() - started
            if device == "cuda":
                events[2 * c + 1].record(stream)
        results = results if isolated else [post.result() for post in posts]
        if device == "cuda":
            with stream:
                spin((1,), (1,), (np.uint64(5_000_000),))
            events[-2].record(stream)
        started = time.perf_counter()
        ids, _ = tracker.update(posts, [t] * cameras, [FRAME] * cameras)
        update = time.perf_counter() - started
        if device == "cuda" and timed is not None:
            events[-1].record(stream)
            events[-1].synchronize()
            timed.append(sum(xp.cuda.get_elapsed_time(events[i], events[i + 1]) for i in range(0, 2 * classes + 2, 2)))
        return results, ids, host, update

    for t in range(warm + rounds):
        results, ids, host, update = run_round(t, timed=gpu_ms if t >= warm else None)
        if t < warm:
            continue
        update_ms.append(update * 1e3)
        enqueue_ms.append(host * 1e3)
        n = [r.num_detections for r in results]
        detections.append(sum(n))
        tracked.append(sum(int(np.count_nonzero(ids[c, :n[c]] >= 0)) for c in range(classes)))
    row = {"device": device, "cameras": cameras, "classes": classes, "detections_per_class_batch": cameras * per_camera,
           "rounds": rounds, "detections_per_round": float(np.median(detections)),
           "tracked_per_round": float(np.median(tracked)),
           "host_update_ms": float(np.median(update_ms)), "host_update_ms_p95": float(np.percentile(update_ms, 95)),
           "host_enqueue_ms": float(np.median(enqueue_ms)), "memory": tracker.memory_report()}
    if gpu_ms:
        start = warm + rounds
        for t in range(start, start + rounds):
            run_round(t, isolated=True, timed=isolated_ms)
        row.update(gpu_ms=float(np.median(gpu_ms)), gpu_ms_p95=float(np.percentile(gpu_ms, 95)),
                   isolated_gpu_ms=float(np.median(isolated_ms)),
                   isolated_gpu_ms_p95=float(np.percentile(isolated_ms, 95)))
        try:
            row["kernel_ms"] = cupti_ms_per_round(lambda t: run_round(start + rounds + t), min(rounds, 30))
        except ImportError as exc:
            row["kernel_ms_error"] = f"no CUPTI measure: {exc}"
    return row


def host_ms(row: dict) -> float:
    """The host time the tracker adds to a GPU round: update() and the enqueue() launches. On the
    CPU, enqueue() is the twin's computing, not host overhead of the GPU path: update() alone."""
    return row["host_update_ms"] + (row["host_enqueue_ms"] if row["device"] == "cuda" else 0.0)


class Timeout(Exception):
    pass


def with_timeout(seconds: int, fn, *args):
    def expired(signum, frame):
        raise Timeout(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 100 cuda, 10 cpu)")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per case")
    args = parser.parse_args()
    device = args.device or ("cuda" if segpost.cuda_available() else "cpu")
    rounds = args.rounds or (100 if device == "cuda" else 10)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for label, per_camera in (("goal: 8 cams x 4 classes x 40 per class-batch", 5), ("heavier: x 120", 15)):
        print(f"track_cost: {label} on {device}, {rounds} rounds", file=sys.stderr, flush=True)
        try:
            row = with_timeout(args.timeout, measure, device, 8, 4, per_camera, rounds)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the next case still runs
            row = {"error": f"{type(exc).__name__}: {exc}"}
        row["case"] = label
        rows.append(row)
        print(json.dumps(row), flush=True)
    save_json(os.path.join(args.out, "track_cost.json"), rows)

    def cells(r):
        gpu, alone, kernels = r.get("gpu_ms"), r.get("isolated_gpu_ms"), r.get("kernel_ms")
        return [r["case"], r["device"], f"{r['detections_per_round']:.0f}", f"{r['tracked_per_round']:.0f}",
                "" if gpu is None else f"{gpu:.3f} (p95 {r['gpu_ms_p95']:.3f})",
                "" if alone is None else f"{alone:.3f} (p95 {r['isolated_gpu_ms_p95']:.3f})",
                "" if kernels is None else f"{kernels:.3f}",
                "" if alone is None else ("yes" if alone <= GOAL_GPU_MS else "NO"),
                f"{r['host_update_ms']:.3f} (p95 {r['host_update_ms_p95']:.3f})", f"{r['host_enqueue_ms']:.3f}",
                "yes" if host_ms(r) <= GOAL_HOST_MS else "NO",
                f"{r['memory']['device'] / 2**20:.1f}"]

    print_table(["case", "device", "detections/round", "with a track id", "GPU ms/round overlapped",
                 "GPU ms/round isolated", "kernels ms/round (CUPTI)", f"isolated <= {GOAL_GPU_MS}",
                 "host update() ms", "host enqueue() ms (CPU: the twin's pack + IoU)", f"host <= {GOAL_HOST_MS}",
                 "tracker VRAM (MB)"],
                rows, cells, ["case"])
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
