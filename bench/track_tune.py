"""Tuning segpost's tracker on the synthetic tracking world without re-running the engines: the
world is run once (the pipeline's synthetic engines, as bench/track_quality.py runs them), every
class-batch's engine outputs are kept (scores, boxes, the kept detections' thresholded low-res
masks), and each tracker setting replays them through real Postprocessors and a segpost.Tracker
(the C++ CPU twin), scored as bench/track_quality.py scores (TrackEval, mask IoU, same truth).

    python bench/track_tune.py --out DIR [--seeds 100-104] [--rounds 200] [--kinds leave_return,slots]
        [--grid mask_weight=0.25,0.5 match_threshold=0.1,0.2]

Tune on seeds other than the reported ones (track_quality.py reports seeds 0..N-1). The replay is
exact: the same engine outputs give the same ids as the pipeline (checked for the first setting
against a tracking pipeline run when --check is given). Writes DIR/track_tune.json and prints a
Markdown table per scene kind (HOTA, IDF1, IDSW) with one row per setting.
"""
from __future__ import annotations

import argparse
import itertools
import os
import pickle
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

from segpost import Postprocessor, Tracker, TrackerConfig  # noqa: E402
from segpost.postprocess import OutputKind  # noqa: E402
from segpost.synthetic.tracking import FPS, KINDS, SIZE, TrackingScene  # noqa: E402
from tables import save_json  # noqa: E402
from track_peers import trackers_peers  # noqa: E402
from track_harness import GEOMETRY, NAMES, SCORE_THRESHOLD, Recording, build_pipeline, table, truth_frame  # noqa: E402


@dataclass
class ClassBatch:
    """One class's engine outputs for one round (all cameras): what its Postprocessor read."""

    logits: np.ndarray     # [cameras, queries]
    presence: np.ndarray   # [cameras, 1]
    boxes: np.ndarray      # [cameras, queries, 4]
    kept: Dict[Tuple[int, int], np.ndarray]   # (camera, query) of each kept detection -> its packed mask bits


@dataclass
class Capture:
    kinds: Tuple[str, ...]
    capacity: int                               # the pipeline's detections per class-batch
    mask_threshold: float                       # its Postprocessors' (logit) mask threshold
    rounds: Dict[int, List[List[ClassBatch]]]   # seed -> round -> class
    recording: Recording                        # truth per (seed, camera, class) and frame (and the peers' ids)


def capture(kinds: Sequence[str], seeds: Sequence[int], rounds: int, peers: Dict[str, Callable[[], object]],
            progress=None) -> Capture:
    """Run the world once per seed; keep each class-batch's engine outputs and each frame's truth,
    and run the peers on the pipeline's detections as track_quality.py runs them."""
    rec, out = Recording(), {}
    for seed in seeds:
        world = TrackingScene(kinds, seed=seed)
        pipeline = build_pipeline(world, seed)
        threshold, capacity = pipeline.config.mask_threshold or 0.0, pipeline.config.capacity
        inputs: List[tuple] = []
        for post in pipeline._post:   # each class's Postprocessor, fed in place by the pipeline
            def enqueue(logits, presence, boxes, masks, *args, _enqueue=post.enqueue, **kwargs):
                inputs.append((np.array(logits, np.float32), np.array(presence, np.float32),
                               np.array(boxes, np.float32), np.asarray(masks) > threshold))
                return _enqueue(logits, presence, boxes, masks, *args, **kwargs)
            post.enqueue = enqueue
        instances = {(name, cam, cls): make() for name, make in peers.items()
                     for cam in range(len(kinds)) for cls in range(len(NAMES))}
        rec.kinds.update({(seed, cam): kind for cam, kind in enumerate(kinds)})
        out[seed] = []
        for r in range(rounds):
            inputs.clear()
            frames, truths = world.render(r)
            result = pipeline.process(frames)
            batches = []
            for cls, (logits, presence, boxes, bits) in enumerate(inputs):
                batch = ClassBatch(logits, presence, boxes, {})
                for cam, camera in result.cameras.items():
                    found = camera.by_class[NAMES[cls]]
                    batch.kept.update({(cam, int(q)): np.packbits(bits[cam, int(q)]) for q in found.query_ids})
                    frame = truth_frame(truths[cam], cls, np.asarray(found.masks))
                    for peer in peers:
                        frame.ids[peer] = instances[(peer, cam, cls)].update(
                            found.boxes.copy(), found.scores.copy(), np.asarray(found.masks).copy(), frames[cam][..., ::-1])
                    rec.sequences.setdefault((seed, cam, cls), []).append(frame)
                batches.append(batch)
            out[seed].append(batches)
            rec.camera_frames += len(result.cameras)
            if progress:
                progress(1)
    return Capture(tuple(kinds), capacity, threshold, out, rec)


def load_or_capture(path: Optional[str], kinds, seeds, rounds, peers, progress) -> Capture:
    """The capture kept in `path` when it was made with the same kinds, seeds, rounds and peers."""
    key = (tuple(kinds), tuple(seeds), rounds, tuple(peers))
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            saved_key, cap = pickle.load(f)
        if saved_key == key:
            return cap
    cap = capture(kinds, seeds, rounds, peers, progress)
    if path:
        with open(path, "wb") as f:
            pickle.dump((key, cap), f)
    return cap


def replay(cap: Capture, config: TrackerConfig, name: str) -> float:
    """segpost's tracker with `config` over the captured rounds; its ids go to the recording's
    frames under `name`. Returns the seconds spent in the Postprocessors and the tracker."""
    cameras, queries, size = len(cap.kinds), GEOMETRY.num_queries, (GEOMETRY.mask_size,) * 2
    inside, outside = cap.mask_threshold + 4.0, cap.mask_threshold - 4.0
    seconds = 0.0
    for seed, rounds in cap.rounds.items():
        posts = [Postprocessor(max_frames=cameras, num_queries=queries, mask_size=size, capacity=cap.capacity,
                               max_frame_size=SIZE, score_threshold=SCORE_THRESHOLD, mask_threshold=cap.mask_threshold,
                               output=OutputKind.LOWRES, device="cpu") for _ in NAMES]
        tracker = Tracker(config, cameras=cameras, class_names=NAMES, capacity=cap.capacity, mask_size=size,
                          device="cpu")
        masks = np.full((cameras, queries) + size, outside, np.float32)
        for r, batches in enumerate(rounds):
            start = time.perf_counter()
            for cls, (post, b) in enumerate(zip(posts, batches)):
                masks[...] = outside
                for (cam, q), packed in b.kept.items():
                    bits = np.unpackbits(packed, count=size[0] * size[1]).reshape(size)
                    masks[cam, q] = np.where(bits, inside, outside)
                post.enqueue(b.logits, b.presence, b.boxes, masks, [SIZE] * cameras, class_id=cls)
                tracker.enqueue(cls, post, masks, list(range(cameras)))
            results = [post.result() for post in posts]
            ids, _ = tracker.update(posts, [r] * cameras, [SIZE] * cameras)
            seconds += time.perf_counter() - start
            for cls, result in enumerate(results):
                first = 0
                for cam, frame in enumerate(result):
                    cap.recording.sequences[(seed, cam, cls)][r].ids[name] = ids[cls, first: first + len(frame)].copy()
                    first += len(frame)
    return seconds


def parse_grid(items: Sequence[str]) -> List[Dict[str, object]]:
    """["mask_weight=0.25,0.5", ...] -> every combination, as TrackerConfig keyword arguments."""
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        kind = type(getattr(TrackerConfig(), key))
        axes.append([(key, kind(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def seed_range(text: str) -> List[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="100-104", help="a seed or a range lo-hi (default 100-104)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--grid", nargs="*", default=[], help="TrackerConfig field=v1,v2 ... (all combinations)")
    parser.add_argument("--check", action="store_true", help="also run a tracking pipeline; its ids must equal the replay's")
    parser.add_argument("--peers", default="", help="peers of track_peers.py to run too, e.g. ByteTrack,OC-SORT")
    parser.add_argument("--cache", help="a file keeping the capture (reused when its kinds, seeds, rounds and peers match)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if set(kinds) - set(KINDS) or args.rounds < 10:
        parser.error(f"--kinds from {KINDS}, --rounds >= 10")
    os.makedirs(args.out, exist_ok=True)
    seeds, started = seed_range(args.seeds), time.perf_counter()
    done = [0]

    def progress(n):
        done[0] += n
        if done[0] % 100 == 0:
            print(f"  captured {done[0]}/{len(seeds) * args.rounds} rounds, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)

    peers = {name: make for name, make in trackers_peers().items() if name in args.peers.split(",")}
    cap = load_or_capture(args.cache, kinds, seeds, args.rounds, peers, progress)
    base = TrackerConfig(max_age=FPS)   # as track_quality.py: a second at the world's rate
    settings = [replace(base, **s) for s in parse_grid(args.grid)]
    names = [", ".join(f"{k}={v}" for k, v in s.items()) or "default" for s in parse_grid(args.grid)]
    seconds = {name: replay(cap, config, name) for name, config in zip(names, settings)}
    if args.check:
        check(cap, kinds, seeds, args.rounds, settings[0], names[0])
    names += list(peers)
    results = table(cap.recording, names, kinds)
    save_json(os.path.join(args.out, "track_tune.json"),
              {"seeds": seeds, "rounds": args.rounds, "kinds": kinds, "results": results, "replay_seconds": seconds,
               "seconds": time.perf_counter() - started})
    for kind in kinds + ["overall"]:
        print(f"\n{kind}\n| setting | HOTA | IDF1 | IDSW |\n|---|---|---|---|")
        for name in names:
            r = results[name][kind]
            print(f"| {name} | {r['HOTA']:.4f} | {r['IDF1']:.4f} | {r['IDSW']} |")
    print(f"\n{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


def check(cap: Capture, kinds, seeds, rounds, config: TrackerConfig, name: str) -> None:
    """The replay's ids against a tracking pipeline's on the same world."""
    for seed in seeds:
        world = TrackingScene(kinds, seed=seed)
        pipeline = build_pipeline(world, seed, track=config)
        for r in range(rounds):
            frames, _ = world.render(r)
            result = pipeline.process(frames)
            for cam, camera in result.cameras.items():
                for cls, cname in enumerate(NAMES):
                    got = cap.recording.sequences[(seed, cam, cls)][r].ids[name]
                    want = np.asarray(camera.by_class[cname].track_ids)
                    if not np.array_equal(got, want):
                        raise AssertionError(f"seed {seed} round {r} camera {cam} class {cname}: replay {got} "
                                             f"pipeline {want}")
    print(f"check: the replay's ids equal the pipeline's ({name})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
