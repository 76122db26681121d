"""segpost fleet on a multi-GPU machine, one unattended run (JSON + Markdown into --out):

(a) layouts: frames/s of 1 worker on 1 GPU against 2 workers, one per GPU (8 cameras a worker;
    --layouts 1x1 2x1 4x1 on 4 GPUs), with the synthetic engines and with Sam3Model eager; the last
    eager layout then has a worker killed (eager cold start, warm start, failover).
(b, c) compiled: Sam3Model compiled (torch.compile "default", every class in one decoder call, a
    fresh compile cache shared by the workers), 2 workers of 0.6 GPU (one per GPU) and 1 warm
    standby of 0.4 GPU: cold start; the worker on the standby's GPU killed: seconds until its
    cameras commit again, the other GPU's frames/s before and after; then the other worker killed
    before a new standby is ready (the compiled restart from the warm cache); every camera's
    output counted: each frame once, no gap.

    python bench/fleet_gpu.py --video camera1080p25.mp4 --out bench/out --phases synthetic eager   # ~3.5 min
    python bench/fleet_gpu.py --video camera1080p25.mp4 --out bench/out --phases compiled          # ~4.5 min
    python bench/fleet_gpu.py --video small.mp4 --out /tmp/smoke --device cpu --decode cpu --seconds 4

Each phase has its own time limit (--budget, seconds: synthetic 70, eager 160, compiled 360) and
writes its rows to fleet_gpu.json as it ends; --decode cpu where PyNvVideoCodec is missing. The
video is bench/make_video.py's (250 frames a camera: the compiled phase needs them all). --device
cpu runs every phase with synthetic engines (the torch modes are stand-ins that take 2 and 6 s to
build) on CPU workers: the same flow, to check the script before a GPU run (about 90 s).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tables import print_table, save_json  # noqa: E402  (bench/, this script's folder)

CLASSES = ["person", "hand", "counter", "blow gun"]
CAMERAS_PER_WORKER = 8


class PhaseTimeout(Exception):
    pass


def gpu_memory_by_pid() -> dict:
    try:
        done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(p): float(m) for p, m in (line.split(",") for line in done.stdout.splitlines() if "," in line)
            if p.strip().isdigit()}


def pipeline(mode: str, args, frame_size) -> dict:
    """The pipeline config of an engine mode; on the CPU the torch modes are synthetic stand-ins
    that take a while to start (eager 2 s, compiled 6 s)."""
    base = {"classes": CLASSES, "max_cameras": CAMERAS_PER_WORKER, "max_frame_size": list(frame_size)}
    if mode == "synthetic" or args.device == "cpu":
        startup = {"synthetic": 0, "eager": 2, "compiled": 6}[mode]
        return {**base, "backend": "synthetic", "busy_ms": [40, 10], **({"startup_s": startup} if startup else {})}
    torch = {**base, "backend": "torch", "classes_per_call": "all"}
    if mode == "compiled":
        torch.update(compile="default", compile_cache=compile_cache(args))
    return torch


def compile_cache(args) -> str:
    return os.path.join(os.path.abspath(args.out), "compile-cache")


class Run:
    """A fleet in this process, supervised in a thread; waits measured against the phase deadline."""

    def __init__(self, name: str, args, mode: str, workers: int, gpus: float, deadline: float, standby=0,
                 standby_gpus=0.0, frame_size=(1080, 1920)):
        from segpost.fleet.config import load_fleet_config
        from segpost.fleet.coordinator import Fleet

        self.deadline, self.out = deadline, os.path.join(args.out, f"out-{name}")
        cpu = args.device == "cpu"
        config = {"pipeline": pipeline(mode, args, frame_size), "cameras_per_worker": CAMERAS_PER_WORKER,
                  "cameras": [{"name": f"cam{i:02d}", "source": args.video}
                              for i in range(CAMERAS_PER_WORKER * workers)],
                  "gpus_per_worker": 0 if cpu else gpus, "cpus_per_worker": 0.5 if cpu else 2, "decode": args.decode,
                  "heartbeat_seconds": 60, "restart_backoff": [0.5, 2], "standby_workers": standby,
                  "standby_gpus": 0 if cpu else standby_gpus, "watchdog_seconds": 600}
        path = os.path.join(args.out, f"fleet-{name}.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.fleet = Fleet(load_fleet_config(path), self.out, status_every=30)
        self.stop, self.memory = threading.Event(), {}
        self.started = time.monotonic()
        self.fleet.start()
        self._threads = [threading.Thread(target=self.fleet.supervise, args=(self.stop,), daemon=True),
                         threading.Thread(target=self._sample_memory, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _sample_memory(self):
        while not self.stop.is_set():
            by_pid = gpu_memory_by_pid()
            for slot in self.fleet.slots:
                pid = slot.stats.get("pid")
                if pid in by_pid:
                    self.memory[slot.name] = max(self.memory.get(slot.name, 0.0), by_pid[pid])
            self.stop.wait(2.0)

    def wait(self, condition, what: str):
        while time.monotonic() < self.deadline:
            if condition():
                return time.monotonic()
            time.sleep(0.1)
        raise PhaseTimeout(f"phase time limit reached waiting for {what}")

    def committed(self) -> dict:
        return {c: s["last_frame"] for c, s in self.fleet.committed_state().items()}

    def first_rounds(self) -> float:
        """Seconds from start until every worker committed a frame."""
        self.wait(lambda: all(s.stats.get("frames") for s in self.fleet.slots), "every worker's first round")
        return time.monotonic() - self.started

    def window(self, seconds: float, slots=None) -> dict:
        """Frames/s per worker over `seconds` (a worker whose files ended within it: up to its last round)."""
        slots = slots or self.fleet.slots
        if time.monotonic() + seconds > self.deadline:
            raise PhaseTimeout("phase time limit reached before a frames/s window")
        before, start = {s.name: s.stats.get("frames", 0) for s in slots}, time.time()
        time.sleep(seconds)
        end = time.time()
        return {s.name: (s.stats.get("frames", 0) - before[s.name]) /
                max(1e-3, (min(end, s.stats.get("last_round_end") or end) if s.state == "finished" else end) - start)
                for s in slots}

    def kill(self, slot) -> dict:
        """SIGKILLs the slot's worker; returns the seconds until all its cameras commit again."""
        names = [c.name for c in slot.cameras]
        at_kill = self.committed()
        pid = slot.stats["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        gpus = slot.stats.get("gpus")
        back = self.wait(lambda: all(self.committed().get(n, -1) > at_kill.get(n, -1) + 1 for n in names),
                         f"{slot.name}'s cameras committing again")
        self.wait(lambda: slot.stats.get("pid") not in (None, pid), f"{slot.name}'s new worker's stats")
        return {"pid": pid, "gpus": gpus, "back_s": round(back - killed, 2),
                "new_worker_build_s": slot.stats.get("build_seconds")}

    def finish(self) -> dict:
        self.stop.set()
        self._threads[0].join(timeout=30)
        stats = self.fleet.shutdown()
        return {"restarts": [s.restarts for s in self.fleet.slots],
                "duplicates_dropped": stats.get("duplicates_dropped"),
                "gpu_memory_mib": self.memory, "stats": [dict(s.stats, round_spans=None) for s in self.fleet.slots]}

    def exactly_once(self) -> dict:
        """Per camera: frames written, and whether they are 0..n-1 once each, in order."""
        bad, counts = [], {}
        for name in sorted(os.listdir(self.out)):
            if name.startswith("cam") and name.endswith(".jsonl"):
                with open(os.path.join(self.out, name)) as f:
                    indices = [json.loads(line).get("frame_index") for line in f if '"detections"' in line]
                counts[name[:-6]] = len(indices)
                if indices != list(range(len(indices))):
                    bad.append(name[:-6])
        return {"frames_per_camera": counts, "cameras_not_exactly_once": bad}


def layouts(args, mode: str, budget: float, frame_size) -> list:
    rows = []
    weights = [int(layout.split("x")[0]) + 1 for layout in args.layouts]   # time grows with the workers
    for layout, weight in zip(args.layouts, weights):
        workers = int(layout.split("x")[0])
        deadline = time.monotonic() + budget * weight / sum(weights)
        row = {"phase": "layouts", "engines": mode, "layout": layout, "cameras": CAMERAS_PER_WORKER * workers}
        run = None
        try:
            run = Run(f"{mode}-{layout}", args, mode, workers, 1.0, deadline, frame_size=frame_size)
            row["start_s"] = round(run.first_rounds(), 1)
            fps = run.window(args.seconds)
            row.update(fps=round(sum(fps.values()), 2), fps_per_worker={k: round(v, 2) for k, v in fps.items()})
            if mode == "eager" and layout == args.layouts[-1] and workers > 1:   # the new worker starts warm
                row["kill"] = run.kill(run.fleet.slots[-1])
        except Exception as exc:  # a phase reports and the run goes on
            row["error"] = f"{type(exc).__name__}: {exc}"[:400]
        finally:
            if run is not None:
                row.update(run.finish())
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "stats"}), flush=True)
    return rows


def compiled(args, budget: float, frame_size) -> dict:
    """(b) and (c): see the module docstring."""
    row, run = {"phase": "compiled", "engines": "compiled", "layout": "2x0.6 + 1 standby x0.4"}, None
    shutil.rmtree(compile_cache(args), ignore_errors=True)   # a cold start: nothing compiled yet
    try:
        run = Run("compiled", args, "compiled", 2, 0.6, time.monotonic() + budget, standby=1, standby_gpus=0.4,
                  frame_size=frame_size)
        row["cold_start_s"] = round(run.first_rounds(), 1)
        run.wait(lambda: run.fleet.standbys.has_ready(), "the standby")
        row["standby_ready_s"] = round(time.monotonic() - run.started, 1)
        standby_gpus = run.fleet.standbys.members[0].stats.get("gpus")
        # The worker sharing the standby's GPU is killed: the standby takes over there; the other GPU's
        # worker is measured before and after.
        victim = next((s for s in run.fleet.slots if s.stats.get("gpus") == standby_gpus), run.fleet.slots[0])
        other = next(s for s in run.fleet.slots if s is not victim)
        row["other_fps_before"] = round(run.window(args.seconds / 2, [other])[other.name], 2)
        row["standby_failover"] = run.kill(victim)
        row["other_fps_after"] = round(run.window(args.seconds / 2, [other])[other.name], 2)
        # The other worker killed while the new standby still builds: a compiled restart (warm cache).
        row["restart_with_a_standby_ready"] = run.fleet.standbys.has_ready()
        row["restart_failover"] = run.kill(other)
        run.wait(lambda: all(s.state == "finished" for s in run.fleet.slots), "every camera's end of file")
    except Exception as exc:  # a phase reports and the run goes on
        row["error"] = f"{type(exc).__name__}: {exc}"[:400]
    finally:
        if run is not None:
            standbys = run.fleet.standbys.status() if run.fleet.standbys else []
            row["new_standby_build_s"] = next((s["build_seconds"] for s in standbys if s["build_seconds"]), None)
            row.update(run.finish())
            row.update(run.exactly_once())
    print(json.dumps({k: v for k, v in row.items() if k != "stats"}), flush=True)
    return row


def video_size(path: str):
    import cv2

    capture = cv2.VideoCapture(path)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit(f"cannot read a frame of {path}")
    return frame.shape[:2]


def report(rows: list) -> None:
    layout_rows = [r for r in rows if r["phase"] == "layouts"]
    base = {r["engines"]: r["fps"] for r in layout_rows if r["layout"] == "1x1" and "fps" in r}
    print_table(["engines", "workers x GPU", "cameras", "frames/s", "vs 1 x 1", "start (s)",
                 "GPU memory per worker (MiB)"],
                layout_rows, lambda r: [r["engines"], r["layout"].replace("x", " x "), str(r["cameras"]),
                                        f"{r['fps']:.1f}", f"{r['fps'] / base[r['engines']]:.2f}x"
                                        if base.get(r["engines"]) else "-", f"{r['start_s']:.0f}",
                                        ", ".join(f"{v:.0f}" for _, v in sorted(r["gpu_memory_mib"].items()))],
                ["engines", "layout"])
    eager = next((r for r in layout_rows if r["engines"] == "eager" and r.get("kill")), {})
    eager_cold = next((r.get("start_s") for r in layout_rows if r["engines"] == "eager"), None)
    comp = next((r for r in rows if r["phase"] == "compiled"), {})
    startup = []
    if eager:
        startup.append({"mode": "eager", "cold": eager_cold, "warm": eager["kill"]["new_worker_build_s"],
                        "failover": eager["kill"]["back_s"]})
    if comp and "error" not in comp:
        startup += [{"mode": "compiled", "cold": comp.get("cold_start_s"),
                     "warm": comp["restart_failover"]["new_worker_build_s"],
                     "failover": comp["restart_failover"]["back_s"]},
                    {"mode": "compiled + 1 standby", "cold": comp.get("standby_ready_s"),
                     "warm": comp.get("new_standby_build_s"), "failover": comp["standby_failover"]["back_s"]}]
    elif comp:
        startup.append({"mode": "compiled", "error": comp["error"]})

    def seconds(v):
        return "-" if v is None else f"{v:.1f}"

    print_table(["engine mode", "cold start (s)", "warm start (s)", "failover (s)"], startup,
                lambda r: [r["mode"], seconds(r["cold"]), seconds(r["warm"]), seconds(r["failover"])], ["mode"])
    if comp and "error" not in comp:
        print(f"\ncompiled, 2 GPUs: worker on GPU {comp['standby_failover']['gpus']} killed, its cameras committing "
              f"again {comp['standby_failover']['back_s']:.1f} s later (standby); the other worker "
              f"{comp['other_fps_before']:.1f} frames/s before, {comp['other_fps_after']:.1f} after; restarts "
              f"{comp['restarts']}; cameras not exactly once: {comp['cameras_not_exactly_once'] or 'none'}; "
              f"frames per camera {sorted(set(comp['frames_per_camera'].values()))}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--decode", choices=("auto", "gpu", "cpu"), default="auto")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--phases", nargs="+", default=["synthetic", "eager", "compiled"],
                        choices=("synthetic", "eager", "compiled"))
    parser.add_argument("--seconds", type=float, default=10.0, help="each frames/s window")
    parser.add_argument("--layouts", nargs="+", default=["1x1", "2x1"], help="WORKERSx1, one worker per GPU")
    parser.add_argument("--budget", nargs=3, type=float, default=[70, 160, 360],
                        metavar=("SYNTHETIC", "EAGER", "COMPILED"),
                        help="time limit of each phase (s)")
    args = parser.parse_args()
    if any(not (layout.endswith("x1") and layout[:-2].isdigit() and int(layout[:-2]) > 0) for layout in args.layouts):
        parser.error(f"--layouts takes WORKERSx1 (one worker per GPU), got {args.layouts}")
    import ray

    os.makedirs(args.out, exist_ok=True)
    frame_size = video_size(args.video)
    ray.init(include_dashboard=False, log_to_driver=False, namespace="segpost")
    started, rows = time.monotonic(), []
    budgets = dict(zip(("synthetic", "eager", "compiled"), args.budget))
    for phase in args.phases:
        if phase == "compiled":
            rows.append(compiled(args, budgets[phase], frame_size))
        else:
            rows += layouts(args, phase, budgets[phase], frame_size)
        save_json(os.path.join(args.out, f"fleet_gpu_{'_'.join(args.phases)}.json"), rows)   # after each phase
    ray.shutdown()
    tables = io.StringIO()
    with contextlib.redirect_stdout(tables):
        report(rows)
    name = os.path.join(args.out, f"fleet_gpu_{'_'.join(args.phases)}")
    with open(name + ".md", "w") as f:
        f.write(tables.getvalue())
    print(tables.getvalue())
    print(f"total {time.monotonic() - started:.0f} s; {name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
