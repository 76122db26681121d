"""Tracking quality on the synthetic tracking world: segpost's tracker (the pipeline's track=)
against Roboflow's trackers (SORT, ByteTrack, OC-SORT, BoT-SORT, McByte, McByte fed the engine's
masks) and, when installed, boxmot (AGPL: never a dependency, only a peer here), all fed the same
detections; scored by TrackEval (HOTA, CLEAR, Identity) with mask IoU (tests/track_harness.py).

    python bench/track_quality.py --out DIR [--seeds 3] [--rounds 200] [--kinds crossing,shared_box]

Runs on the CPU (synthetic engines, device cpu). Writes DIR/track_quality.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from segpost.synthetic.tracking import CLASS_NAMES, FPS, KINDS, SIZE, TrackingScene  # noqa: E402
from track_harness import SEGPOST, record, table  # noqa: E402  (tests/, shared with the CI test)
from track_peers import trackers_peers  # noqa: E402

METRICS = ("HOTA", "IDF1", "MOTA", "IDSW")


class BoxmotPeer:
    """A boxmot tracker: fed [x0, y0, x1, y1, score, class] rows and the BGR frame, answers rows
    [x0, y0, x1, y1, id, score, class, det_index]."""

    def __init__(self, tracker):
        self.tracker = tracker

    def update(self, boxes, scores, masks, frame):
        n = len(boxes)
        ids = np.full(n, -1, np.int64)
        rows = np.concatenate([boxes.reshape(n, 4), scores.reshape(n, 1), np.zeros((n, 1))], axis=1).astype(np.float32)
        out = np.asarray(self.tracker.update(rows, np.ascontiguousarray(frame[..., ::-1])))
        if out.size:
            ids[out[:, 7].astype(int)] = out[:, 4].astype(int)
        return ids


def boxmot_peers():
    try:
        from boxmot import ByteTrack, OcSort
    except ImportError as exc:
        print(f"boxmot skipped: {exc}", file=sys.stderr)
        return {}
    return {"boxmot ByteTrack": lambda: BoxmotPeer(ByteTrack(frame_rate=FPS)),
            "boxmot OC-SORT": lambda: BoxmotPeer(OcSort())}


def segpost_tracker():
    try:
        from segpost.track import TrackerConfig
    except ImportError as exc:
        print(f"segpost's tracker is not in this build ({exc}): peers only", file=sys.stderr)
        return None
    return TrackerConfig(max_age=FPS)   # a second, as the peers' lost_track_buffer at the world's rate


def world_summary(kinds, seeds, rounds) -> dict:
    objects = {kind: len(TrackingScene([kind], seed=0).actors[0]) for kind in kinds}
    return {"kinds": list(kinds), "seeds": list(seeds), "rounds": rounds, "fps": FPS, "camera_size": list(SIZE),
            "objects_per_camera": objects, "camera_frames": len(kinds) * len(seeds) * rounds,
            "classes": list(CLASS_NAMES)}


def markdown(results: dict, world: dict, seconds: float) -> str:
    trackers = list(results)
    lines = [f"{len(world['seeds'])} seeds x {world['rounds']} frames ({world['rounds'] / world['fps']:.0f} s at "
             f"{world['fps']} frames/s) x {len(world['kinds'])} cameras of {world['camera_size'][1]}x"
             f"{world['camera_size'][0]}, one scene kind each; objects per camera: "
             + ", ".join(f"{k} {n}" for k, n in world["objects_per_camera"].items())
             + f". {world['camera_frames']} camera frames; the whole run took {seconds:.0f} s on this machine's CPU.",
             "", "| scene | metric | " + " | ".join(trackers) + " |", "|---|---|" + "---|" * len(trackers)]
    for kind in list(world["kinds"]) + ["overall"]:
        for metric in METRICS:
            values = [results[t][kind][metric] for t in trackers]
            best = min(values) if metric == "IDSW" else max(values)
            cells = [(f"{v:d}" if metric == "IDSW" else f"{v:.3f}") for v in values]
            cells = [f"**{c}**" if v == best else c for c, v in zip(cells, values)]
            lines.append(f"| {kind if metric == 'HOTA' else ''} | {metric} | " + " | ".join(cells) + " |")
    rates = [results[t]["overall"]["camera_frames_per_s"] for t in trackers]
    lines.append("| | camera frames/s (CPU) | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for track_quality.json and track_quality.md")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200, help="frames per camera and seed")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--fixed-slots", action="store_true", help="the decoder keeps instance j in query slot j")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if args.seeds < 1 or args.rounds < 10 or not kinds or set(kinds) - set(KINDS):
        parser.error(f"need --seeds >= 1, --rounds >= 10 and --kinds from {KINDS}")
    os.makedirs(args.out, exist_ok=True)
    peers = {**trackers_peers(), **boxmot_peers()}
    track = segpost_tracker()
    trackers = ([SEGPOST] if track is not None else []) + list(peers)
    seeds = list(range(args.seeds))
    total, done, started = len(seeds) * args.rounds, [0], time.perf_counter()

    def progress(n):
        done[0] += n
        if done[0] % 50 == 0 or done[0] == total:
            print(f"  {done[0]}/{total} rounds, {time.perf_counter() - started:.0f} s", file=sys.stderr)

    print(f"track_quality: {len(kinds)} cameras x {len(seeds)} seeds x {args.rounds} rounds; trackers: "
          f"{', '.join(trackers)}", file=sys.stderr)
    rec = record(kinds, seeds, args.rounds, peers, track=track, permute_slots=not args.fixed_slots, progress=progress)
    results = table(rec, trackers, kinds)
    seconds = time.perf_counter() - started
    world = world_summary(kinds, seeds, args.rounds)
    world["permute_slots"] = not args.fixed_slots
    with open(os.path.join(args.out, "track_quality.json"), "w") as f:
        json.dump({"world": world, "seconds": seconds, "results": results}, f, indent=1)
    text = markdown(results, world, seconds)
    with open(os.path.join(args.out, "track_quality.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
