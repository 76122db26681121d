"""segpost serve on a GPU: latency p50/p95 and frames/s at 1, 8 and 32 concurrent clients.

    python bench/serve_latency.py --backend torch --clients 1 8 32 --seconds 15

Each client sends one-frame requests (a 1080p JPEG) back to back over HTTP for `seconds`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("synthetic", "torch"), default="torch")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    import cv2

    from brokers import free_port
    from segpost.fleet.client import SegpostClient
    from segpost.fleet.serve import load_serve_config, start_serve, stop_serve
    from segpost.synthetic.scene import Scene

    folder = tempfile.mkdtemp()
    pipeline = ({"backend": "synthetic", "classes": ["red", "green", "blue", "yellow"]} if args.backend == "synthetic"
                else {"backend": "torch", "classes": ["person", "hand", "counter", "blow gun"]})
    pipeline.update(max_cameras=8, max_frame_size=[1080, 1920])
    with open(os.path.join(folder, "serve.json"), "w") as f:
        json.dump({"pipeline": pipeline, "gpus_per_replica": 1, "batch_wait_ms": 10, "http_port": free_port(),
                   "grpc_port": free_port()}, f)
    started = time.perf_counter()
    endpoints = start_serve(load_serve_config(os.path.join(folder, "serve.json")))
    print(f"serve started in {time.perf_counter() - started:.1f} s", flush=True)
    frame = cv2.imencode(".jpg", Scene([(1080, 1920)], seed=1).render(0)[0][0])[1].tobytes()
    SegpostClient(http=endpoints["http"]).segment([frame])   # warm-up
    rows = []
    for clients in args.clients:
        latencies, lock, stop = [], threading.Lock(), threading.Event()

        def client():
            c = SegpostClient(http=endpoints["http"])
            while not stop.is_set():
                t = time.perf_counter()
                c.segment([frame], masks="rle")
                with lock:
                    latencies.append((time.perf_counter() - t) * 1e3)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        wall = time.perf_counter() - t0
        rows.append({"backend": args.backend, "clients": clients, "requests": len(latencies),
                     "fps": len(latencies) / wall, "latency_ms_p50": float(np.percentile(latencies, 50)),
                     "latency_ms_p95": float(np.percentile(latencies, 95))})
        print(json.dumps(rows[-1]), flush=True)
    stop_serve()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("\n| engines | clients | frames/s | latency p50 (ms) | p95 (ms) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['clients']} | {r['fps']:.1f} | {r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
