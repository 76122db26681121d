"""How TrackerConfig's mask_weight and match_threshold defaults were chosen: identity switches of
segpost's tracker (the C++ CPU twin; the GPU computes the same) on hand-made scenes where boxes
alone are ambiguous, over a grid of settings.

    python bench/track_weights.py --out DIR [--seeds 4]

Scenes (64x64 low-res masks of a 240x320 frame, query slots shuffled every frame, detections of a
ground-truth object dropped at random 5% of the time, boxes jittered by up to a low-res pixel):
  x-cross: two bars crossing as an X and sliding together (one box for both);
  pass-by: two discs passing each other, the front one hiding the back one (masks cut, boxes shrink);
  side-by-side: two thin bars moving together a few pixels apart;
  crowd: six discs bouncing around, crossing each other now and then;
  leave-return: a disc leaves the frame, stays out 8 frames, comes back the way it left.
Counted per ground-truth object: identity switches (its track id changes between two frames
where it has one) and frames where it is detected but has no track id. Writes DIR/track_weights.json
and prints a Markdown table; the lowest total of switches wins (ties: fewer untracked frames).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

from segpost import TrackerConfig  # noqa: E402
from tables import print_table, save_json  # noqa: E402
from track_cases import Rig, bar_mask, disc_mask  # noqa: E402

FRAMES = 40


# Each scene: rng -> (frame -> the objects' visible masks, front to back).
def x_cross(rng):
    return lambda t: [bar_mask(16 + 0.8 * t, 32, 36, 5, 45), bar_mask(16 + 0.8 * t, 32, 36, 5, -45)]


def pass_by(rng):
    def frame(t):
        front, back = disc_mask(8 + 1.2 * t, 30, 7), disc_mask(56 - 1.2 * t, 34, 7)
        return [front, back & ~front]
    return frame


def side_by_side(rng):
    return lambda t: [bar_mask(14 + 0.9 * t, 26, 40, 3, 80), bar_mask(19 + 0.9 * t, 26, 40, 3, 80)]


def crowd(rng):
    start, velocity = rng.uniform(8, 56, (6, 2)), rng.uniform(-1.5, 1.5, (6, 2))

    def frame(t):
        centre = np.abs((start + velocity * t + 64) % 128 - 64)   # bouncing inside the map
        masks, taken = [], np.zeros((64, 64), bool)
        for x, y in centre:   # earlier discs are in front
            masks.append(disc_mask(x, y, 5) & ~taken)
            taken |= masks[-1]
        return masks
    return frame


def leave_return(rng):
    return lambda t: [disc_mask(40 + 3 * t if t < 10 else 40 + 3 * (28 - t) if t >= 18 else 200, 30, 6)]


SCENES = {"x-cross": x_cross, "pass-by": pass_by, "side-by-side": side_by_side, "crowd": crowd,
          "leave-return": leave_return}


def jittered(mask, rng):
    """The mask moved by up to one low-res pixel (the engine's masks are not pixel-exact either);
    pixels pushed off the map are lost."""
    dy, dx = rng.integers(-1, 2, 2)
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def score(config: TrackerConfig, scene, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rig, frame = Rig(config), scene(rng)
    last, switches, untracked = {}, 0, 0
    for t in range(FRAMES):
        view = {}
        for k, mask in enumerate(frame(t)):
            if np.count_nonzero(mask) >= 4 and rng.random() >= 0.05:
                view[f"o{k}"] = (jittered(mask, rng), 0.9)
        ids, *_ = rig.step([[view]], frame_ids=[t], rng=rng)
        for (_, _, name), track_id in ids.items():
            if track_id < 0:
                untracked += 1
                continue
            switches += name in last and last[name] != track_id
            last[name] = track_id
    return {"switches": switches, "untracked": untracked}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for weight, threshold in itertools.product((0.0, 0.25, 0.5, 0.75, 1.0), (0.1, 0.2, 0.3)):
        config = TrackerConfig(mask_weight=weight, match_threshold=threshold)
        row = {"mask_weight": weight, "match_threshold": threshold}
        for name, scene in SCENES.items():
            runs = [score(config, scene, seed) for seed in range(args.seeds)]
            row[name] = sum(r["switches"] for r in runs)
            row["untracked"] = row.get("untracked", 0) + sum(r["untracked"] for r in runs)
        row["switches"] = sum(row[name] for name in SCENES)
        rows.append(row)
    best = min(rows, key=lambda r: (r["switches"], r["untracked"]))
    save_json(os.path.join(args.out, "track_weights.json"), {"rows": rows, "best": best})
    print_table(["mask_weight", "match_threshold", *SCENES, "switches", "untracked detections"], rows,
                lambda r: [f"{r['mask_weight']:g}", f"{r['match_threshold']:g}", *(str(r[n]) for n in SCENES),
                           str(r["switches"]), str(r["untracked"])], ["mask_weight"])
    print(f"\nbest: mask_weight {best['mask_weight']:g}, match_threshold {best['match_threshold']:g} "
          f"({best['switches']} switches over {len(SCENES)} scenes x {args.seeds} seeds x {FRAMES} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
