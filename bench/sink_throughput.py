"""Records per second into the fleet's sink actors, with the records a worker really sends: 1080p
frames, 5 detections a frame x 4 classes, each with a COCO RLE mask; batches of 8 (a worker's round
of 8 cameras), from several sender actors at once, as the workers of a fleet.

    python bench/sink_throughput.py --shards 1 2 --senders 4 --seconds 10 [--json out.json]

64 GPUs of compiled Sam3Model send about 64 x 36 = 2304 records/s; one sink actor must take that
with margin, or the sink is sharded (config sink.shards). The senders run on the same machine, so
on few cores they compete with the sinks: records per CPU second of the sink processes says what
one sink actor takes when it has a core to itself.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

CLASSES = ("person", "hand", "counter", "blow gun")
TARGET = 64 * 36


def realistic_records(camera: str, count: int, seed: int) -> list:
    """`count` frame records of `camera`: 20 detections each, masks of ellipses with ragged edges
    (10 to 400 px across) on a 1080p frame, RLE-encoded by pycocotools."""
    from pycocotools import mask as coco

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:1080, 0:1920]
    masks = []
    for _ in range(40):       # a pool of masks, reused across records
        cy, cx = rng.integers(100, 980), rng.integers(100, 1820)
        ry, rx = rng.integers(5, 200), rng.integers(5, 200)
        ragged = 1.0 + 0.08 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.integers(3, 9))
        dense = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < ragged
        rle = coco.encode(np.asfortranarray(dense.astype(np.uint8)))
        masks.append(({"size": [1080, 1920], "counts": rle["counts"].decode("ascii")},
                      [float(cx - rx), float(cy - ry), float(cx + rx), float(cy + ry)]))
    records = []
    for index in range(count):
        detections = []
        for k in range(20):
            mask, box = masks[rng.integers(len(masks))]
            detections.append({"class": CLASSES[k % 4], "score": round(float(rng.uniform(0.5, 1)), 5),
                               "box": [round(v, 2) for v in box], "mask": mask})
        records.append({"round": index, "camera": camera, "source": f"rtsp://10.0.0.7/{camera}",
                        "frame_index": index, "pts": index / 25, "frame_size": [1080, 1920],
                        "detections": detections, "worker": "worker-0", "node": "10.0.0.2"})
    return records


class Sender:
    """One worker's part: 8 cameras, a batch of their 8 records per round, waiting for each."""

    def __init__(self, index: int, rounds: int):
        self.rounds = [realistic_records(f"w{index}-cam{c}", rounds, seed=index * 8 + c) for c in range(8)]

    def size(self) -> int:
        return len(json.dumps(self.rounds[0][0]))

    def run(self, sinks: list, seconds: float) -> int:
        import ray

        from segpost.fleet.sink import shard_of

        sent, start, r = 0, time.monotonic(), 0
        while time.monotonic() - start < seconds and r < len(self.rounds[0]):
            batch = [self.rounds[c][r] for c in range(8)]
            shards: dict = {}
            for record in batch:
                shards.setdefault(shard_of(record["camera"], len(sinks)), []).append(record)
            ray.get([sinks[s].write_batch.remote(records) for s, records in shards.items()])
            sent, r = sent + len(batch), r + 1
        return sent


def measure(shards: int, senders: int, seconds: float, folder: str) -> dict:
    import ray

    from segpost.fleet.sink import RecordSink

    cameras = [f"w{i}-cam{c}" for i in range(senders) for c in range(8)]
    from segpost.fleet.sink import shard_of

    sinks = [ray.remote(RecordSink).options(num_cpus=0, max_concurrency=8).remote(
        folder, True, None, [c for c in cameras if shard_of(c, shards) == s]) for s in range(shards)]
    actors = [ray.remote(Sender).options(num_cpus=0).remote(i, rounds=int(seconds * 400)) for i in range(senders)]
    size = ray.get(actors[0].size.remote())
    ray.get([a.size.remote() for a in actors])   # every sender built its records
    before = sum(s["cpu_seconds"] for s in ray.get([sink.stats.remote() for sink in sinks]))
    started = time.monotonic()
    sent = sum(ray.get([a.run.remote(sinks, seconds) for a in actors]))
    elapsed = time.monotonic() - started
    closed = ray.get([sink.close.remote() for sink in sinks])
    written, cpu = sum(s["written"] for s in closed), sum(s["cpu_seconds"] for s in closed) - before
    for actor in sinks + actors:
        ray.kill(actor)
    assert written == sent, (written, sent)
    return {"shards": shards, "senders": senders, "records": written, "seconds": round(elapsed, 2),
            "records_per_s": round(written / elapsed, 1), "record_bytes": size,
            "mb_per_s": round(written * size / elapsed / 1e6, 1), "vs_64_gpus": round(written / elapsed / TARGET, 2),
            "sink_cpu_s": round(cpu, 2), "records_per_sink_cpu_s": round(written / cpu, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    rows = []
    for shards in args.shards:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(shards, args.senders, args.seconds, folder))
        print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    print(f"\n{os.cpu_count()} CPUs; goal {TARGET} records/s (64 GPUs x 36 frames/s)\n")
    print("| sink actors | senders | record (KB) | records/s | MB/s | vs 64 GPUs | "
          "records per CPU second of the sinks |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shards']} | {r['senders']} | {r['record_bytes'] / 1e3:.1f} | {r['records_per_s']:.0f} | "
              f"{r['mb_per_s']:.0f} | {r['vs_64_gpus']:.2f}x | {r['records_per_sink_cpu_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
