"""Seeded histories: which command runs, on which cameras, and which faults strike when.

A history is a pure function of (seed, command): the same seed gives the same faults at the same
points (frames written, or engine calls), so a violating history replays with
``SEGPOST_FAULT_SEED=N python -m pytest tests/test_faults.py -k fleet_histories`` (or run_histories;
or ``bench/fault_histories.py --histories 1 --seed N --command fleet``).
Faults that act on processes strike once the output holds ``at_frames`` frame records in all.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

# Engine faults go into the pipeline config ("faults"); the others are done to processes and files.
RUN_KINDS = ("engine_raise", "engine_hang", "disk_full", "driver_kill", "sigterm_group")
FLEET_KINDS = ("engine_raise", "engine_hang", "worker_kill", "sink_kill", "driver_kill", "disk_full",
               "source_removed", "sigterm_group")
ALL_KINDS = tuple(dict.fromkeys(RUN_KINDS + FLEET_KINDS))
WATCHDOG_S = 3.0          # `segpost run --watchdog-seconds` and the fleet's watchdog_seconds here


@dataclass(frozen=True)
class Fault:
    kind: str
    at_frames: int = 0                  # process faults: once the output holds this many frame records
    params: Dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f" at {self.at_frames} frames" if self.kind not in ("engine_raise", "engine_hang") else ""
        extra = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}{where}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class History:
    seed: int
    command: str                        # "run" | "fleet"
    cameras: int
    frames: int                         # per camera (each camera its own file of this many frames)
    faults: List[Fault]
    classes_per_call: Any = None        # 1: the decoder called once per class (a round of several calls)

    def describe(self) -> str:
        return (f"seed {self.seed}: segpost {self.command}, {self.cameras} file cameras x {self.frames} frames"
                + (", classes_per_call 1" if self.classes_per_call == 1 else "") + "; faults: "
                + ("; ".join(str(f) for f in self.faults) or "none"))

    def kinds(self) -> List[str]:
        return [f.kind for f in self.faults]

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def generate(seed: int, command: str) -> History:
    """A history drawn from `seed`: 1 to 3 faults of the command's kinds, at random points."""
    rng = random.Random(f"{command}:{seed}")
    if command == "run":
        cameras, frames, kinds = 2, rng.choice((30, 40)), RUN_KINDS
    elif command == "fleet":
        cameras, frames, kinds = rng.choice((2, 3)), rng.choice((40, 60)), FLEET_KINDS
    else:
        raise ValueError(f"no histories for command {command!r}")
    total = cameras * frames
    chosen = rng.sample(kinds, rng.randint(1, 3))
    if "driver_kill" in chosen and "sigterm_group" in chosen and rng.random() < 0.5:
        chosen.remove("sigterm_group")   # keep most fleet histories short
    faults = []
    for kind in chosen:
        at = rng.randint(total // 10, total * 3 // 4)
        # Engine calls count from 0 in each process, and a fleet's replacement worker meets the same
        # fault again: in the fleet they come late enough for each worker to get well ahead.
        first = 2 if command == "run" else frames // 3
        if kind == "engine_raise" and rng.random() < 0.25:   # any call may fail: a seeded probability
            faults.append(Fault(kind, params={"raise_probability": rng.choice((0.01, 0.03)),
                                              "seed": rng.randrange(1 << 16)}))
        elif kind == "engine_raise":
            calls = sorted(rng.sample(range(first, frames - 4), rng.randint(1, 2)))
            engines = [rng.choice(("decoder", "vision_encoder")) for _ in calls]
            faults.append(Fault(kind, params={"raise": [[c, e] for c, e in zip(calls, engines)]}))
        elif kind == "engine_hang":
            seconds = rng.choice((1.0, WATCHDOG_S + 3.0))   # shorter than the watchdog, or not
            faults.append(Fault(kind, params={"hang": [[rng.randint(first, frames - 4), seconds]]}))
        elif kind == "disk_full":
            faults.append(Fault(kind, at, {"free_after_s": rng.choice((0.3, 1.0, 5.0))}))
        elif kind == "driver_kill":
            # Started again at once (by hand, or a supervisor that kills only the main process), or
            # once the killed run's every process is gone (systemd's restart of a unit), or every
            # process of the run killed at once (`systemctl kill -s KILL`, the OOM killer of a
            # unit, a crash of the machine with its disk intact) and then started again.
            faults.append(Fault(kind, at, {"restart": rng.choice(("at_once", "after_exit", "whole_session"))}))
        elif kind == "source_removed":
            faults.append(Fault(kind, at, {"camera": rng.randrange(cameras), "back_after_s": rng.choice((1.0, 4.0))}))
        else:
            faults.append(Fault(kind, at))
    cpc = 1 if rng.random() < 0.5 else None
    return History(seed, command, cameras, frames, sorted(faults, key=lambda f: f.at_frames), cpc)
