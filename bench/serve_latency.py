"""segpost serve on a GPU: frames/s and latency at N concurrent clients sending 1080p JPEGs, against
the same pipeline in `segpost run` on the same JPEGs, for each decode mode and replica count.

    # one GPU: Sam3Model fp16 compiled, every class per call; decode gpu and cpu; and segpost run
    python bench/serve_latency.py --backend torch --compile default --decode gpu cpu --clients 1 32 --run-side --out out/serve
    # two GPUs: one replica per GPU against one (eager is fine)
    python bench/serve_latency.py --backend torch --replicas 1 2 --clients 32 64 --out out/serve2
    # the same on the CPU, with the synthetic engines (checks the script)
    python bench/serve_latency.py --backend synthetic --decode cpu --clients 1 8 --seconds 5 --run-side --out /tmp/serve

Each serve configuration (decode mode x replica count) runs in its own process group with a
timeout (--phase-timeout), so a stuck start or compile cannot hold the run; compiled kernels are
shared through one cache folder (--compile-cache). Clients send one-frame requests back to back
over HTTP with an API key. For each phase: frames/s, latency p50/p95, and the replicas' own round
time p50 over the phase (goal at 1 client: p50 <= round + 30 ms). `segpost run` reads the same
JPEGs as 8 image-sequence cameras (OpenCV) and reports its rounds/s. Results: OUT/serve.json.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))
from tables import print_table, save_json  # noqa: E402

CAMERAS = 8
KEY = "bench-key-" + "b" * 24


def pipeline_config(args) -> dict:
    if args.backend == "synthetic":
        config = {"backend": "synthetic", "classes": ["red", "green", "blue", "yellow"]}
    else:
        config = {"backend": "torch", "classes": ["person", "hand", "counter", "blow gun"], "dtype": "float16",
                  "compile": args.compile, "compile_cache": args.compile_cache}
    return {**config, "max_cameras": CAMERAS, "max_frame_size": [1080, 1920], "classes_per_call": "all"}


def make_jpegs(folder: str, frames: int) -> list:
    """CAMERAS folders of `frames` 1080p JPEGs (the synthetic scene); returns the folders."""
    import cv2

    from segpost.synthetic.scene import Scene

    scene = Scene([(1080, 1920)] * CAMERAS, seed=1)
    dirs = [os.path.join(folder, f"cam{c}") for c in range(CAMERAS)]
    if all(os.path.exists(os.path.join(d, f"{frames - 1:04d}.jpg")) for d in dirs):
        return dirs
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    for r in range(frames):
        for c, image in enumerate(scene.render(r)[0]):
            cv2.imwrite(os.path.join(dirs[c], f"{r:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return dirs


# -- one serve configuration, in its own process ---------------------------------------------------

def load(url: str, bodies: list, clients: int, seconds: float) -> dict:
    """`clients` threads each sending one-frame requests back to back for `seconds`."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    latencies, errors, lock, stop = [], [], threading.Lock(), threading.Event()

    def client(index):
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        k = index
        while not stop.is_set():
            body = bodies[k % len(bodies)]
            k += clients
            started = time.perf_counter()
            try:
                connection.request("POST", "/segment", body, {"Authorization": f"Bearer {KEY}",
                                                              "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException) as exc:
                ok, response = False, exc
                connection = http.client.HTTPConnection(host, int(port), timeout=120)
            with lock:
                (latencies.append((time.perf_counter() - started) * 1e3) if ok else
                 errors.append(str(getattr(response, "status", response))))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    wall = time.perf_counter() - started
    row = {"clients": clients, "requests": len(latencies), "errors": len(errors), "fps": len(latencies) / wall}
    if latencies:
        row.update(latency_ms_p50=float(np.percentile(latencies, 50)), latency_ms_p95=float(np.percentile(latencies, 95)))
    if errors:
        row["first_error"] = errors[0]
    return row


def stats_of(url: str) -> list:
    import urllib.request

    stats = []
    for _ in range(16):   # one /stats answer per replica reached; Serve spreads requests over replicas
        request = urllib.request.Request(url.replace("/segment", "/stats"), headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            stats.append(json.loads(response.read()))
    return list({s["replica"]: s for s in stats}.values())


def serve_phase(spec: dict) -> list:
    from brokers import free_port
    from segpost.serve.app import load_serve_config, start_serve, stop_serve

    folder = spec["folder"]
    config = {"pipeline": spec["pipeline"], "gpus_per_replica": spec["gpus"], "cpus_per_replica": 2 if spec["gpus"] else 0.5,
              "num_replicas": spec["replicas"], "decode": spec["decode"], "batch_wait_ms": spec["batch_wait_ms"],
              "http_port": free_port(), "api_keys": [KEY], "max_frames_per_request": 8, "round_timeout_s": 600}
    path = os.path.join(folder, f"serve-{spec['decode']}-{spec['replicas']}.json")
    save_json(path, config)
    started = time.perf_counter()
    endpoints = start_serve(load_serve_config(path))
    print(f"serve ({spec['decode']}, {spec['replicas']} replica(s)) started in {time.perf_counter() - started:.1f} s: "
          f"{endpoints['decode']}", flush=True)
    bodies = []
    for d in spec["cameras"]:
        for r in range(spec["distinct_frames"]):
            with open(os.path.join(d, f"{r:04d}.jpg"), "rb") as f:
                bodies.append(json.dumps({"frames": [{"image": base64.b64encode(f.read()).decode()}]}).encode())
    load(endpoints["http"], bodies, min(8, max(spec["clients"])), 3)   # warm-up
    rows = []
    for clients in spec["clients"]:
        before = {s["replica"]: s["rounds"] for s in stats_of(endpoints["http"])}
        row = load(endpoints["http"], bodies, clients, spec["seconds"])
        round_ms = []
        for s in stats_of(endpoints["http"]):
            new = s["rounds"] - before.get(s["replica"], 0)
            round_ms += s["recent_round_ms"][-new:] if new > 0 else []
        row.update(phase="serve", decode=spec["decode"], replicas=spec["replicas"], decode_why=endpoints["decode"],
                   round_ms_p50=float(np.percentile(round_ms, 50)) if round_ms else None)
        rows.append(row)
        print(json.dumps(row), flush=True)
    stop_serve()
    import ray

    ray.shutdown()
    return rows


def run_phase(args, cameras: list, timeout: float) -> dict:
    """`segpost run` on the same JPEGs: 8 image-sequence cameras."""
    config = os.path.join(args.out, "pipeline.json")
    save_json(config, pipeline_config(args))
    command = [sys.executable, "-m", "segpost", "run", "--config", config, "--out", os.path.join(args.out, "run.jsonl"),
               "--decode", "cpu", "--watchdog-seconds", "0"]
    for d in cameras:
        command += ["--source", os.path.join(d, "%04d.jpg")]
    done = _bounded(command, timeout, os.path.join(args.out, "run.log"))
    match = re.search(r"([\d.]+) rounds/s, round p50 ([\d.]+) ms", done)
    if not match:
        return {"phase": "run", "error": done[-500:]}
    return {"phase": "run", "fps": float(match.group(1)) * CAMERAS, "round_ms_p50": float(match.group(2))}


def _bounded(command: list, timeout: float, log: str) -> str:
    """Runs `command` in its own process group, killed whole after `timeout` s; returns its output."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            out.write(f"\nTIMEOUT after {timeout:.0f} s\n")
        try:   # whatever it left running (Ray's processes of a killed phase) goes with it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    with open(log) as f:
        return f.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("synthetic", "torch"), default="torch")
    parser.add_argument("--compile", choices=("off", "default", "max-autotune"), default="off")
    parser.add_argument("--decode", nargs="+", choices=("gpu", "cpu", "auto"), default=["auto"])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--frames", type=int, default=60, help="JPEGs per camera (segpost run reads them all)")
    parser.add_argument("--batch-wait-ms", type=float, default=10)
    parser.add_argument("--run-side", action="store_true", help="also run `segpost run` on the same JPEGs")
    parser.add_argument("--phase-timeout", type=float, default=180, help="seconds per phase (start, compile, load)")
    parser.add_argument("--compile-cache", default=None, help="kernel cache shared by every phase (default OUT/compile-cache)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--phase", help=argparse.SUPPRESS)   # internal: one serve configuration, as JSON
    args = parser.parse_args()
    if args.phase:
        spec = json.loads(args.phase)
        save_json(spec["result"], serve_phase(spec))
        return 0
    os.makedirs(args.out, exist_ok=True)
    args.compile_cache = os.path.abspath(args.compile_cache or os.path.join(args.out, "compile-cache"))
    from segpost.postprocess import cuda_available

    started = time.perf_counter()
    cameras = make_jpegs(os.path.join(args.out, "jpegs"), args.frames)
    print(f"{CAMERAS} x {args.frames} 1080p JPEGs ready", flush=True)
    rows = []
    if args.run_side:   # first: a compiled run fills the kernel cache for the replicas
        rows.append(run_phase(args, cameras, args.phase_timeout))
        print(json.dumps(rows[-1]), flush=True)
    for decode in args.decode:
        for replicas in args.replicas:
            result = os.path.join(args.out, f"phase-{decode}-{replicas}.json")
            spec = {"folder": args.out, "pipeline": pipeline_config(args), "gpus": 1 if cuda_available() else 0,
                    "replicas": replicas, "decode": decode, "batch_wait_ms": args.batch_wait_ms, "cameras": cameras,
                    "distinct_frames": min(args.frames, 8), "clients": args.clients, "seconds": args.seconds,
                    "result": result}
            log = _bounded([sys.executable, __file__, "--out", args.out, "--phase", json.dumps(spec)], args.phase_timeout,
                           os.path.join(args.out, f"phase-{decode}-{replicas}.log"))
            if os.path.exists(result):
                with open(result) as f:
                    rows += json.load(f)
            else:
                rows.append({"phase": "serve", "decode": decode, "replicas": replicas, "error": log[-800:]})
    save_json(os.path.join(args.out, "serve.json"), rows)
    report(rows)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    return 0


def report(rows: list) -> None:
    run = next((r for r in rows if r["phase"] == "run" and "fps" in r), None)
    serve = [r for r in rows if r["phase"] == "serve"]
    one = {(r["decode"], r["replicas"], r["clients"]): r for r in serve if "fps" in r}

    def cells(r):
        vs_run = f"{r['fps'] / run['fps']:.2f}x" if run else ""
        vs_one = one.get((r["decode"], 1, r["clients"]))
        scaling = f"{r['fps'] / vs_one['fps']:.2f}x" if vs_one and r["replicas"] > 1 else ""
        over = (f"{r['latency_ms_p50'] - r['round_ms_p50']:+.0f}" if r.get("round_ms_p50") and "latency_ms_p50" in r
                else "")
        return [r["decode"], str(r["replicas"]), str(r["clients"]), f"{r['fps']:.1f}", f"{r.get('latency_ms_p50', 0):.0f}",
                f"{r.get('latency_ms_p95', 0):.0f}", f"{r['round_ms_p50']:.0f}" if r.get("round_ms_p50") else "",
                over, vs_run, scaling, str(r["errors"])]

    if run:
        print(f"\nsegpost run on the same JPEGs: {run['fps']:.1f} frames/s, round p50 {run['round_ms_p50']:.0f} ms")
    print_table(["decode", "replicas", "clients", "frames/s", "p50 ms", "p95 ms", "round p50 ms", "p50 - round ms",
                 "vs segpost run", "vs 1 replica", "errors"], serve, cells, ["phase", "decode", "replicas"])


if __name__ == "__main__":
    sys.exit(main())
