"""Zone and line events on the synthetic zone world (segpost.synthetic.zones): segpost's mask rule,
the bottom-centre rule (the peers' membership test, same rules on top) and Roboflow supervision's
PolygonZone / LineZone, all fed the same tracked detections (segpost's pipeline and tracker).

    python bench/zone_quality.py --out DIR [--seeds 5] [--rounds 120] [--kinds hidden,diagonal]

Events (zone_entered, zone_left, zone_dwell, line_crossed) match the truth one to one when their
camera, kind, zone, object (the one its track followed most) and direction agree and their frames
are within 2; zone_count events are scored apart (zone, class and count). "false changes":
predicted entries and exits with no truth. Runs on the CPU. Writes DIR/zone_quality.json and .md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time

from segpost.synthetic.zone_scoring import METHODS, record, score
from segpost.synthetic.zones import KINDS, ROUNDS

GOAL_F1 = 0.98


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    rec = record(kinds, list(range(args.seeds)), args.rounds)
    elapsed = time.perf_counter() - started
    rows = {}
    for method in METHODS:
        rows[method] = {"overall": score(rec, method), "counts": score(rec, method, events=("zone_count",)),
                        **{kind: score(rec, method, [kind]) for kind in kinds},
                        "rule_seconds": rec.seconds.get(method, 0.0)}
    with open(os.path.join(args.out, "zone_quality.json"), "w") as f:
        json.dump({"seeds": args.seeds, "rounds": args.rounds, "kinds": kinds, "seconds": elapsed, "rows": rows},
                  f, indent=1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(f"Zone events, {args.seeds} seeds x {args.rounds} frames x {len(kinds)} scenes "
              f"({args.seeds * args.rounds * len(kinds)} camera frames, {elapsed:.0f} s).\n")
        head = ["method", "precision", "recall", f"F1 (goal >= {GOAL_F1})", "mean frame error", "count F1"]
        head += [f"{k} F1 / false changes" for k in kinds]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for method, r in rows.items():
            o = r["overall"]
            cells = [method, f"{o['precision']:.3f}", f"{o['recall']:.3f}", f"{o['f1']:.3f}",
                     f"{o['mean_frame_error']:.2f}", f"{r['counts']['f1']:.3f}"]
            cells += [f"{r[k]['f1']:.3f} / {r[k]['false_changes']}" for k in kinds]
            print("| " + " | ".join(cells) + " |")
    text = out.getvalue()
    print(text)
    with open(os.path.join(args.out, "zone_quality.md"), "w") as f:
        f.write(text)
    return 0 if rows["mask"]["overall"]["f1"] >= GOAL_F1 else 1


if __name__ == "__main__":
    sys.exit(main())
