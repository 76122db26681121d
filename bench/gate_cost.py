"""What the change gate costs per camera per frame (issue 32's goal: <= 0.05 ms on an H100).

    python bench/gate_cost.py --out DIR [--device cuda|cpu] [--calls N]

Device frames (1080p BGR as uploaded, and NV12 as NVDEC writes it, pitched) of a textured scene
with noise, for 8, 24 and 64 cameras per ChangeGate.measure call (its 32x32 grid and compare
against each camera's reference). GPU: CUDA events around each measure() call on the null
stream (the two kernels, the reference-index upload and the counts' copy back), divided by the
cameras; host: the call's wall time. With --device cpu, host frames through the C++ CPU twin
(a smoke test of the script; the CPU twin is not the production path).
Writes DIR/gate_cost.json and prints a Markdown table; medians over the timed calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from segpost import YuvFrame
from segpost.gate import ChangeGate

sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402

GOAL_MS = 0.05


def frames_for(xp, layout: str, cameras: int, size, rng) -> list:
    h, w = size
    out = []
    for _ in range(cameras):
        if layout == "bgr":
            out.append(xp.asarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        else:   # NV12 rows pitched to 2048 bytes, as NVDEC surfaces are
            data = xp.asarray(rng.integers(0, 256, (h * 3 // 2, w + 128), dtype=np.uint8))
            out.append(YuvFrame(data[:, :w]))
    return out


def run_case(device: str, layout: str, cameras: int, size, calls: int) -> dict:
    rng = np.random.default_rng(0)
    xp = np
    if device == "cuda":
        import cupy as xp
    frames = frames_for(xp, layout, cameras, size, rng)
    gate = ChangeGate(cameras=cameras, device=device)
    ids = list(range(cameras))
    gate.measure(frames, ids)
    gate.mark_seen(ids)
    gpu_ms, host_ms = [], []
    for _ in range(3 + calls):   # 3 warm-up calls
        if device == "cuda":
            start, end = xp.cuda.Event(), xp.cuda.Event()
            start.record()
        t0 = time.perf_counter()
        gate.measure(frames, ids)
        host_ms.append((time.perf_counter() - t0) * 1e3)
        if device == "cuda":
            end.record()
            end.synchronize()
            gpu_ms.append(xp.cuda.get_elapsed_time(start, end))
    host = float(np.median(host_ms[3:]))
    row = {"device": device, "layout": layout, "frame": f"{size[1]}x{size[0]}", "cameras": cameras,
           "host_ms_per_call": host, "host_ms_per_camera": host / cameras}
    if gpu_ms:
        gpu = float(np.median(gpu_ms[3:]))
        row.update(gpu_ms_per_call=gpu, gpu_ms_per_camera=gpu / cameras, goal_met=gpu / cameras <= GOAL_MS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # The CPU smoke test keeps to small frames and few calls: the twin is a reference, not a path.
    size = (1080, 1920) if args.device == "cuda" else (240, 320)
    counts = (8, 24, 64) if args.device == "cuda" else (8,)
    calls = args.calls if args.device == "cuda" else min(args.calls, 3)
    rows = []
    for layout in ("bgr", "nv12"):
        for cameras in counts:
            try:
                rows.append(run_case(args.device, layout, cameras, size, calls))
            except Exception as exc:   # one failed case does not hide the others' numbers
                rows.append({"device": args.device, "layout": layout, "cameras": cameras, "error": repr(exc)})
    save_json(os.path.join(args.out, "gate_cost.json"), rows)

    def cells(r):
        gpu = f"{r['gpu_ms_per_camera']:.4f}" if "gpu_ms_per_camera" in r else "-"
        return [r["device"], r["layout"], r["frame"], str(r["cameras"]), gpu, f"{r['host_ms_per_call']:.3f}",
                str(r.get("goal_met", "-"))]

    print_table(["device", "frames", "size", "cameras/call", "GPU ms/camera", "host ms/call", f"<= {GOAL_MS} ms"],
                rows, cells, ["device", "layout", "cameras"])


if __name__ == "__main__":
    main()
