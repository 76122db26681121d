"""What one viewer of the live page costs a round when the frames are NVDEC's, in GPU memory
(issue 31's goals: <= 0.5 ms of GPU time a round and <= 0.1 CPU core with one viewer of 8 cameras).

    python bench/ui_gpu_cost.py --out DIR [--cameras 8] [--rounds 100] [--round-ms 200]

8 cameras of 1080p NV12 frames on the GPU (pitched as NVDEC's), a LiveHub (the page's fps 4,
640 wide, JPEG quality 75) with one viewer watching every camera, and rounds every --round-ms of
a simulated clock (a compiled Sam3Model round takes ~200 ms on an H100): each round the runner's
calls, wants_frame then frame for the cameras due. Two ways to shrink a frame: "gpu" (the
thumbnail kernel on the GPU, only the small image copied: segpost.ui.thumbnail) and "host" (the
whole frame copied to the host, OpenCV's conversion and resize: what the page did before, and
still does without CuPy). Per round: the GPU's busy time (CUPTI via torch.profiler: the kernels'
and copies' device time, over 30 more rounds), the GPU span (CUDA events around the runner's calls
on the thumbnail stream, or the default stream for the host path's copies: it includes the gaps
while the host converts, launches and waits, so it is not GPU work), the runner thread's CPU
time, and the encoder thread's CPU (JPEG + base64 + JSON), waited for each round so none is
skipped. CPU cores = (runner + encoder CPU seconds) / simulated seconds. Writes DIR/ui_gpu_cost.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402

GOAL_GPU_MS, GOAL_CORES = 0.5, 0.1


class Viewer:
    """One viewer watching every camera (the page's WebSocket feed without the socket)."""

    def __init__(self):
        self.watching, self.frames, self.bytes = set(), 0, 0

    def deliver(self, kind, text, camera=None):
        if kind == "frame":
            self.frames += 1
            self.bytes += len(text)


def nv12_frames(cp, cameras: int, h: int, w: int, pad: int = 128):
    import cv2

    from segpost.preprocess import YuvFrame

    rng = np.random.default_rng(0)
    frames = []
    for c in range(cameras):
        y, x = np.mgrid[0:h, 0:w]
        bgr = np.stack([(x + 40 * c) % 256, y * 255 // h, (x + y) % 256], -1).astype(np.uint8)
        bgr = cv2.GaussianBlur(bgr + rng.integers(0, 20, bgr.shape, dtype=np.uint8), (5, 5), 0)
        i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        u, v = i420[h:h + h // 4].reshape(-1), i420[h + h // 4:].reshape(-1)
        nv12 = np.concatenate([i420[:h], np.stack([u, v], 1).reshape(h // 2, w)])
        pitched = cp.zeros((nv12.shape[0], w + pad), np.uint8)
        pitched[:, :w] = cp.asarray(nv12)
        frames.append(YuvFrame(pitched[:, :w], "nv12"))
    cp.cuda.Device().synchronize()
    return frames


def measure(way: str, frames, rounds: int, round_s: float, warm: int = 3, profiled: int = 30) -> dict:
    import cupy as cp

    from segpost.ui.hub import LiveHub

    now = [0.0]
    hub = LiveHub([(c, None) for c in range(len(frames))], fps=4.0, max_width=640, quality=75,
                  clock=lambda: now[0])
    if way == "host":
        hub._gpu = False                        # as without CuPy: the whole frame to the host
    viewer = Viewer()
    hub.add_viewer(viewer)
    hub.watch(viewer, range(len(frames)))
    wall_ms, taken, runner_cpu = [], [], [0.0]

    def run_round(r: int, timed: bool) -> None:
        now[0] = r * round_s
        due = [c for c in range(len(frames)) if hub.wants_frame(c)]
        stream = hub._gpu.stream if hub._gpu else cp.cuda.Stream.null
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(stream)
        cpu = time.thread_time()
        for c in due:
            hub.frame(c, frames[c], {"camera": c, "frame_index": r, "detections": []})
        spent = time.thread_time() - cpu
        end.record(stream)
        end.synchronize()
        if hub.frame_error or (way == "gpu" and r >= warm and not hub._gpu):
            raise RuntimeError(f"the {way} path did not run: {hub.frame_error}")
        if timed:
            wall_ms.append(cp.cuda.get_elapsed_time(start, end))
            runner_cpu[0] += spent
            taken.append(len(due))
        deadline = time.monotonic() + 10   # the encoder keeps up: no frame replaced unencoded
        while hub.encodes < hub.taken and time.monotonic() < deadline:
            time.sleep(0.001)

    row = {"way": way, "cameras": len(frames), "rounds": rounds, "round_ms": round_s * 1e3}
    try:
        for r in range(warm):                   # the kernel's compile, the first buffers
            run_round(r, False)
        encoder_before = hub.encoder_cpu
        for r in range(warm, warm + rounds):
            run_round(r, True)
        encoder_cpu = hub.encoder_cpu - encoder_before
        try:   # the GPU's busy time (kernels and copies, CUPTI), apart from the host's gaps between them
            import torch
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for r in range(warm + rounds, warm + rounds + profiled):
                    run_round(r, False)
                torch.cuda.synchronize()
            ours = [e for e in prof.events() if e.device_type.name == "CUDA"]
            row["gpu_busy_ms_per_round"] = sum(e.device_time for e in ours) / 1e3 / profiled
            row["gpu_busy_by_kind_ms"] = {}
            for e in ours:
                kind = "copies" if "memcpy" in e.name.lower() else "kernels"
                row["gpu_busy_by_kind_ms"][kind] = row["gpu_busy_by_kind_ms"].get(kind, 0.0) + e.device_time / 1e3 / profiled
        except ImportError as exc:
            row["gpu_busy_error"] = f"no CUPTI measure: {exc}"
    finally:
        hub.close()
    seconds = rounds * round_s
    row.update(frames_per_round=float(np.mean(taken)), gpu_span_ms_per_round=float(np.mean(wall_ms)),
               gpu_span_ms_per_round_p95=float(np.percentile(wall_ms, 95)),
               runner_cpu_ms_per_round=runner_cpu[0] / rounds * 1e3, encoder_cpu_ms_per_round=encoder_cpu / rounds * 1e3,
               cpu_cores=(runner_cpu[0] + encoder_cpu) / seconds, frames_shown=viewer.frames,
               kbytes_per_frame=viewer.bytes / max(viewer.frames, 1) / 1e3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--round-ms", type=float, default=200.0)
    parser.add_argument("--size", default="1080x1920")
    args = parser.parse_args()
    import cupy as cp

    os.makedirs(args.out, exist_ok=True)
    h, w = (int(v) for v in args.size.split("x"))
    frames = nv12_frames(cp, args.cameras, h, w)
    rows = []
    for way in ("gpu", "host"):
        print(f"ui_gpu_cost: {args.cameras} cameras of {h}x{w} NV12 on the GPU, one viewer, {way}", file=sys.stderr,
              flush=True)
        rows.append(measure(way, frames, args.rounds, args.round_ms / 1e3))
        print(rows[-1], flush=True)
    save_json(os.path.join(args.out, "ui_gpu_cost.json"), rows)
    def busy(r):
        value = r.get("gpu_busy_ms_per_round")
        return "" if value is None else f"{value:.3f}"

    print_table(["frames shrunk on", "frames/round", "GPU busy ms/round (CUPTI)", f"GPU <= {GOAL_GPU_MS}",
                 "GPU span ms/round (events; p95)", "runner CPU ms/round", "encoder CPU ms/round", "CPU cores",
                 f"cores <= {GOAL_CORES}", "KB/frame"],
                rows, lambda r: [r["way"], f"{r['frames_per_round']:.1f}", busy(r),
                                 "" if r.get("gpu_busy_ms_per_round") is None else
                                 ("yes" if r["gpu_busy_ms_per_round"] <= GOAL_GPU_MS else "NO"),
                                 f"{r['gpu_span_ms_per_round']:.3f} ({r['gpu_span_ms_per_round_p95']:.3f})",
                                 f"{r['runner_cpu_ms_per_round']:.2f}", f"{r['encoder_cpu_ms_per_round']:.2f}",
                                 f"{r['cpu_cores']:.3f}", "yes" if r["cpu_cores"] <= GOAL_CORES else "NO",
                                 f"{r['kbytes_per_frame']:.0f}"], ["way"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
