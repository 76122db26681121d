"""`segpost run` end to end on N video files, decoding on the GPU (NVDEC) or the CPU (OpenCV), with
the synthetic CuPy engines standing in for real ones (SAM3-sized tensors, a busy time per call).

    python bench/run_e2e.py --video 1080p25.mp4 --cameras 8 16 --busy-ms 40,10 --out DIR

Per row: rounds/s, round p50/p95 (as `segpost run` reports them), and the process's CPU use over
the run (user + system seconds of the `segpost run` process per second of its life, 1.0 = one core).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from tables import print_table, save_json  # noqa: E402  (bench/, this script's folder)


def run(video: str, cameras: int, decode: str, busy: str, folder: str, max_rounds: int) -> dict:
    ve, dec = (float(v) for v in busy.split(","))
    config = os.path.join(folder, f"synthetic-{cameras}.json")
    with open(config, "w") as f:
        json.dump({"backend": "synthetic", "classes": ["red", "green", "blue", "yellow"], "max_cameras": cameras,
                   "max_frame_size": [1080, 1920], "busy_ms": [ve, dec]}, f)
    command = [sys.executable, "-m", "segpost", "run", "--config", config, "--device", "cuda", "--decode", decode,
               "--out", os.devnull, "--max-rounds", str(max_rounds)] + [a for _ in range(cameras) for a in ("--source", video)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read()
    line = next((l for l in stderr.splitlines() if "segpost run: done" in l), "")
    numbers = re.search(r"([\d.]+) rounds/s, round p50 ([\d.]+) ms, p95 ([\d.]+) ms", line)
    if os.waitstatus_to_exitcode(status) != 0 or not numbers:
        return {"decode": decode, "cameras": cameras, "error": stderr[-600:]}
    return {"decode": decode, "cameras": cameras, "busy_ms": busy, "rounds_per_s": float(numbers.group(1)),
            "frames_per_s": float(numbers.group(1)) * cameras, "round_ms_p50": float(numbers.group(2)),
            "round_ms_p95": float(numbers.group(3)), "cpu_cores": (usage.ru_utime + usage.ru_stime) / wall,
            "seconds": wall, "decoding": next((l for l in stderr.splitlines() if "decoding:" in l), "")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--cameras", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--decoders", nargs="+", default=["gpu", "cpu"])
    parser.add_argument("--busy-ms", default="40,10", help="synthetic encoder and decoder busy time per call")
    parser.add_argument("--max-rounds", type=int, default=200)
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for cameras in args.cameras:
        for decode in args.decoders:
            rows.append(run(args.video, cameras, decode, args.busy_ms, args.out, args.max_rounds))
            print(json.dumps(rows[-1]), flush=True)
    save_json(os.path.join(args.out, "run_e2e.json"), rows)
    print_table(["cameras", "decode", "rounds/s", "frames/s", "round p50 (ms)", "p95 (ms)", "CPU cores busy"], rows,
                lambda r: [str(r["cameras"]), r["decode"], f"{r['rounds_per_s']:.1f}", f"{r['frames_per_s']:.0f}",
                           f"{r['round_ms_p50']:.1f}", f"{r['round_ms_p95']:.1f}", f"{r['cpu_cores']:.2f}"],
                ["cameras", "decode"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
