"""segpost fleet on a GPU machine: frames/s of 1 worker against 2 sharing a GPU (or one per GPU),
and the GPU memory each worker's process holds.

    python bench/fleet_gpu.py --video 1080p25.mp4 --backend synthetic --layouts 1x1 2x0.5 [--kill]

A layout WxG is W workers of G GPUs each, 8 cameras per worker (copies of the video). Throughput is
all frames over the time from the first worker's first round to the last round. --kill kills one
worker's process mid-run and reports how long its cameras were without a committed frame.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from tables import print_table, save_json  # noqa: E402  (bench/, this script's folder)


def gpu_memory_by_pid() -> dict:
    try:
        done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory,gpu_uuid",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True)
    except OSError:
        return {}
    out = {}
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            out[int(parts[0])] = (float(parts[1]), parts[2])
    return out


def run(video: str, backend: str, workers: int, gpus: float, folder: str, seconds: float, kill: bool) -> dict:
    import ray

    from segpost.fleet.config import load_fleet_config
    from segpost.fleet.coordinator import Fleet

    pipeline = ({"backend": "synthetic", "classes": ["red", "green", "blue", "yellow"], "busy_ms": [40, 10]}
                if backend == "synthetic" else {"backend": "torch", "classes": ["person", "hand", "counter", "blow gun"]})
    pipeline.update(max_cameras=8, max_frame_size=[1080, 1920])
    config = {"pipeline": pipeline, "cameras": [{"name": f"cam{i:02d}", "source": video} for i in range(8 * workers)],
              "cameras_per_worker": 8, "gpus_per_worker": gpus, "cpus_per_worker": 2, "heartbeat_seconds": 60,
              "restart_backoff": [0.5, 2], "decode": "auto"}
    path = os.path.join(folder, f"fleet-{backend}-{workers}x{gpus}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    fleet = Fleet(load_fleet_config(path), os.path.join(folder, f"out-{backend}-{workers}x{gpus}"), status_every=0)
    stop, killed = threading.Event(), {}
    fleet.start()

    def kill_one():
        slot = fleet.slots[-1]
        while slot.stats.get("frames", 0) < 40 and not stop.is_set():
            time.sleep(0.2)
        committed = ray.get(fleet.sink.committed.remote())
        camera = slot.cameras[0].name
        os.kill(ray.get(slot.actor.pid.remote()), signal.SIGKILL)
        killed["at"] = time.monotonic()
        while ray.get(fleet.sink.committed.remote()).get(camera, -1) <= committed.get(camera, -1) + 8:
            time.sleep(0.1)
        killed["resumed_after_s"] = time.monotonic() - killed["at"]

    if kill:
        threading.Thread(target=kill_one, daemon=True).start()
    memory = {}

    def sample_memory():
        while not stop.is_set():
            by_pid = gpu_memory_by_pid()
            for slot in fleet.slots:
                pid = slot.stats.get("pid")
                if pid in by_pid:
                    memory[slot.name] = max(memory.get(slot.name, (0, ""))[0], by_pid[pid][0]), by_pid[pid][1]
            time.sleep(1.0)

    threading.Thread(target=sample_memory, daemon=True).start()
    supervisor = threading.Thread(target=fleet.supervise, args=(stop,), daemon=True)
    supervisor.start()
    started = time.monotonic()
    # The window starts once every worker has finished a round (start-up is reported apart).
    while time.monotonic() - started < 180 and not all(s.stats.get("frames") for s in fleet.slots):
        time.sleep(0.2)
    startup = time.monotonic() - started
    before = {s.name: s.stats.get("frames", 0) for s in fleet.slots}
    time.sleep(seconds)
    after = {s.name: s.stats.get("frames", 0) for s in fleet.slots}
    stop.set()
    supervisor.join(timeout=30)
    stats = [dict(s.stats) for s in fleet.slots]
    restarts = [s.restarts for s in fleet.slots]
    errors = [s.last_error or s.stats.get("last_error") for s in fleet.slots]
    fleet.shutdown()
    if not all(s.get("frames") for s in stats):
        raise RuntimeError(f"not every worker ran a round in 180 s; errors {errors}, stats {stats}")
    frames = sum(after[name] - before[name] for name in after)
    return {"backend": backend, "workers": workers, "gpus_per_worker": gpus, "cameras": 8 * workers,
            "fps": frames / seconds, "frames": frames, "seconds": seconds, "startup_s": startup,
            "round_ms_p50": [s.get("round_ms_p50") for s in stats], "gpu_memory_mib": memory,
            "visible_devices": [s.get("visible_devices") for s in stats], "restarts": restarts, "kill": killed or None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--backend", choices=("synthetic", "torch"), default="synthetic")
    parser.add_argument("--layouts", nargs="+", default=["1x1", "2x0.5"])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--kill", action="store_true", help="kill one worker of the last layout mid-run")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    import ray

    os.makedirs(args.out, exist_ok=True)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="segpost")
    rows = []
    for i, layout in enumerate(args.layouts):
        workers, gpus = layout.split("x")
        try:
            rows.append(run(args.video, args.backend, int(workers), float(gpus), args.out, args.seconds,
                            args.kill and i == len(args.layouts) - 1))
        except Exception as exc:  # report and go on
            rows.append({"backend": args.backend, "layout": layout, "error": f"{type(exc).__name__}: {exc}"[:400]})
        print(json.dumps(rows[-1]), flush=True)
    save_json(os.path.join(args.out, f"fleet_gpu_{args.backend}.json"), rows)
    base = next((r["fps"] for r in rows if "fps" in r), None)

    def cells(r):
        mem = ", ".join(f"{v[0]:.0f}" for _, v in sorted(r["gpu_memory_mib"].items()))
        p50 = ", ".join("-" if v is None else f"{v:.0f}" for v in r["round_ms_p50"])
        return [r["backend"], f"{r['workers']} x {r['gpus_per_worker']:g}", str(r["cameras"]), f"{r['fps']:.1f}",
                f"{r['fps'] / base:.2f}x", p50, mem, str(r["restarts"])]

    print_table(["engines", "workers x GPU", "cameras", "frames/s", "vs first row", "round p50 per worker (ms)",
                 "GPU memory per worker (MiB)", "restarts"], rows, cells, ["backend", "layout"])
    for r in rows:
        if r.get("kill"):
            print(f"\nkilled a worker: its cameras committed frames again {r['kill'].get('resumed_after_s', float('nan')):.1f} s later")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
