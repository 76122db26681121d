"""Host cost of one predicted mask under on_change (CPU only): moving the last mask by its
track's motion and encoding it, as run lengths (segpost.encodings.RunLengthMask, what the schedule
does) against decoding, shifting and encoding the dense mask (what it did before).

    python bench/predicted_mask_cost.py [--size 1080x1920] [--repeats 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from segpost.encodings import RunLengthMask
from segpost.schedule import coco_rle


def ms(work, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1080x1920", help="frame HxW")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    dense = np.zeros((h, w), bool)
    dense[h // 4:h // 2, w // 4:w // 2] = True   # a quarter of the frame's height and width
    runs = RunLengthMask.of_dense(dense)

    def before():
        shifted = np.zeros_like(dense)
        shifted[2:, 3:] = np.asarray(runs)[:-2, :-3]
        return coco_rle(shifted)

    rows = [("run lengths: moved inside the frame + COCO RLE", ms(lambda: coco_rle(runs.moved(3, 2)), args.repeats)),
            ("run lengths: moved partly out of the frame + COCO RLE",
             ms(lambda: coco_rle(runs.moved(-w // 3, 2)), args.repeats)),
            ("dense: decode, shift, COCO RLE (before)", ms(before, max(1, args.repeats // 4)))]
    print(f"| predicted mask at {h}x{w} | host ms |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
