"""Many seeded fault histories of `segpost run` and `segpost fleet` (tests/faults/), each checked
against the invariants (what README.md's "What is promised through faults" says):

    python bench/fault_histories.py --histories 200 --seed 0 [--fleet-share 0.5] [--json faults.json]

Seeds S, S+1, ...; each seed's command is drawn from it too (a `--fleet-share` of them run the
fleet). Prints the histories run, the faults planned and injected by kind, the invariant
violations by kind (histories violating, and lines), and every violating history with its seed,
its faults and when they struck; --json writes all of it. Replay one history:

    SEGPOST_FAULT_SEED=N python -m pytest tests/test_faults.py -k "fleet_histories" -s
    python bench/fault_histories.py --histories 1 --seed N --command fleet

On a 2-core machine a `run` history takes about 5 s and a fleet history 20 to 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from faults.check import KINDS  # noqa: E402
from faults.driver import run_history  # noqa: E402
from faults.history import ALL_KINDS, generate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--command", choices=("run", "fleet", "mixed"), default="mixed")
    parser.add_argument("--fleet-share", type=float, default=0.5, help="with --command mixed")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workdir", default=None, help="where the histories' files go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep each history's files (default: violating ones)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="fault-histories-"))
    videos = work / "videos"
    results = []
    planned, injected, violated, violation_lines = Counter(), Counter(), Counter(), Counter()
    commands = Counter()
    started = time.monotonic()
    for seed in range(args.seed, args.seed + args.histories):
        command = args.command if args.command != "mixed" else \
            ("fleet" if random.Random(f"command:{seed}").random() < args.fleet_share else "run")
        history = generate(seed, command)
        folder = work / f"{command}-{seed}"
        outcome = run_history(history, folder, videos)
        commands[command] += 1
        planned.update(history.kinds())
        injected.update(outcome.fired_kinds)
        kinds = Counter(v.kind for v in outcome.violations)
        violated.update(kinds.keys())
        violation_lines.update(kinds)
        print(f"[{len(results) + 1}/{args.histories} {time.monotonic() - started:.0f} s] "
              + (outcome.report() if outcome.violations else f"{history.describe()}: ok ({outcome.seconds:.0f} s)"),
              flush=True)
        results.append({"seed": seed, "command": command, "history": history.as_dict(),
                        "describe": history.describe(), "done": outcome.fired, "injected": outcome.fired_kinds,
                        "exits": outcome.exits, "seconds": round(outcome.seconds, 1),
                        "violations": [{"kind": v.kind, "camera": str(v.camera), "detail": v.detail}
                                       for v in outcome.violations]})
        if not outcome.violations and not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    bad = [r for r in results if r["violations"]]
    print(f"\n{len(results)} histories ({dict(commands)}) in {time.monotonic() - started:.0f} s; "
          f"{len(bad)} with violations; files in {work}")
    print("\n| fault | planned | injected |\n|---|---|---|")
    for kind in ALL_KINDS:
        print(f"| {kind} | {planned[kind]} | {injected[kind]} |")
    print(f"| all | {sum(planned.values())} | {sum(injected.values())} |")
    print("\n| invariant violated | histories | lines |\n|---|---|---|")
    for kind in KINDS:
        print(f"| {kind} | {violated[kind]} | {violation_lines[kind]} |")
    if bad:
        kinds_of = lambda r: ", ".join(sorted({v["kind"] for v in r["violations"]}))  # noqa: E731
        print("\nviolating seeds: " + ", ".join(f"{r['command']} {r['seed']} ({kinds_of(r)})" for r in bad))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"histories": len(results), "commands": dict(commands), "planned": dict(planned),
                       "injected": dict(injected), "violating_histories": dict(violated),
                       "violation_lines": dict(violation_lines), "results": results}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
