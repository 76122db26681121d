"""Runs a History with real processes and watches it.

`segpost run` and `segpost fleet` run as subprocesses in their own session (process group), on
the CPU with the synthetic engines and tracking on, on lossless video files made here. The fleet
starts its own local Ray instance (``--address local``) in a private temp folder (RAY_TMPDIR), so
histories never meet another Ray. Process faults strike once the output holds the fault's number
of frame records:

- worker_kill / sink_kill: SIGKILL of a ``ray::CameraWorker`` / ``ray::RecordSink`` process of the
  fleet's process group (Ray restarts the sink; the coordinator replaces the worker);
- driver_kill: SIGKILL of `segpost fleet` (or `segpost run`) alone, then the same command on the
  same --out, at once (its Ray processes may still run) or once every process of the killed run
  is gone; or SIGKILL of every process of the run at once, then the same command;
- disk_full: the writing process (`segpost run`, or the fleet's sink actors) gets an RLIMIT_FSIZE
  a seeded few bytes past its largest output file (prlimit; Python ignores SIGXFSZ, so writes
  fail with EFBIG, as on a full disk), lifted after ``free_after_s`` (a sink restarted by Ray
  starts without it);
- source_removed: a file camera's video renamed away for ``back_after_s``;
- sigterm_group: SIGTERM to the process group of the command started (a stop-as-group: `kill
  -TERM -- -PGID`); it must exit 0 within its drain time; it is then started again to finish
  its files. (systemd's default KillMode=control-group also signals Ray's own processes: the
  units in deploy/ use KillMode=mixed.)

Engine exceptions and hangs go into the pipeline config ("faults", synthetic/engines.py).
`segpost run` runs as deploy/segpost-run.service runs it: with --resume, started again when it
exits with an error (Restart=on-failure: a full disk, a fired watchdog), so its file too must end
complete, each frame once, every track ended.
Watched: the process must end or keep writing within a bound (stuck), exit within its drain time
after SIGTERM (drain_timeout), with the status its situation calls for (bad_exit).
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import segpost

from .check import Expect, Violation, check_output, read_records
from .history import WATCHDOG_S, Fault, History
from .world import FRAME_SIZE, actors, make_video, session, title

TRACK = {"max_age": 4}                       # tracks end within the short videos (world.make_video)
# Engine time a round: `segpost run` writes its file once a second, so its rounds are slow
# enough that the faults placed by frames written strike while it runs, on a fast machine too.
BUSY_MS = {"run": (80, 20), "fleet": (15, 5)}
DRAIN_S = {"run": 20.0, "fleet": 45.0}       # SIGTERM to exit
STUCK_S = {"run": 20.0, "fleet": 45.0}       # no new output for this long (plus hangs and pauses): stuck
DEADLINE_S = {"run": 120.0, "fleet": 300.0}  # a whole history
SUPERVISED_RESTARTS = 5                      # segpost run started again after an error exit, at most
KILLED_GROUP_S = 8.0                         # then a SIGKILLed fleet's leftover Ray processes are killed


@dataclass
class Outcome:
    history: History
    fired: List[str] = field(default_factory=list)      # what was done when: "t=3.1s frames=40: ..."
    fired_kinds: List[str] = field(default_factory=list)
    exits: List[Any] = field(default_factory=list)
    violations: List[Violation] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: str = ""

    def report(self) -> str:
        lines = [f"history {self.history.describe()}",
                 f"  replay: SEGPOST_FAULT_SEED={self.history.seed} python -m pytest tests/test_faults.py "
                 f"-k {self.history.command}_histories -s",
                 f"  exits {self.exits} after {self.seconds:.1f} s; done: " + ("; ".join(self.fired) or "nothing")]
        groups: Dict[tuple, List[Violation]] = {}
        for v in self.violations:
            groups.setdefault((v.kind, v.camera), []).append(v)
        lines += [f"  VIOLATION {vs[0]}" + (f" (and {len(vs) - 1} more of this kind)" if len(vs) > 1 else "")
                  for vs in groups.values()]
        return "\n".join(lines)


class _Run:
    """One history in a folder: its files, its process(es), what was done to them."""

    def __init__(self, history: History, folder: Path, videos: Path):
        self.h, self.folder = history, folder
        self.rng = random.Random(f"driver:{history.command}:{history.seed}")
        self.outcome = Outcome(history)
        self.sources = [make_video(videos / f"cam{i}_{history.frames}_blink.avi", history.frames, seed=i)
                        for i in range(history.cameras)]
        self.out = folder / ("out" if history.command == "fleet" else "out.jsonl")
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="sf", dir="/tmp")) if history.command == "fleet" else None
        self.log = open(folder / "stderr.log", "w+")
        self.config = self._write_config()
        self.proc: Optional[subprocess.Popen] = None
        self.start = time.monotonic()
        self.timers: List[Any] = []       # (when, what, action)
        self.limited: List[int] = []      # pids under a file-size limit
        self.supervised = 0                # segpost run's restarts after an error exit
        self.restart_at_once = False      # driver_kill: start again without waiting for the old processes
        self.old_sessions: List[int] = []

    # -- set-up -----------------------------------------------------------------------------

    def _pipeline(self) -> Dict[str, Any]:
        faults: Dict[str, Any] = {"raise": [], "hang": []}
        for fault in self.h.faults:
            for key in ("raise", "hang"):
                faults[key] += fault.params.get(key, [])
            for key in ("raise_probability", "seed"):
                if key in fault.params:
                    faults[key] = fault.params[key]
        pipeline = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": list(FRAME_SIZE),
                    "max_cameras": 2, "busy_ms": list(BUSY_MS[self.h.command]), "track": TRACK}
        if faults["raise"] or faults["hang"] or faults.get("raise_probability"):
            pipeline["faults"] = faults
        if self.h.classes_per_call is not None:
            pipeline["classes_per_call"] = self.h.classes_per_call
        return pipeline

    def _write_config(self) -> Path:
        path = self.folder / "segpost.json"
        path.write_text(json.dumps(self._pipeline()))
        if self.h.command == "run":
            return path
        fleet = {"pipeline": "segpost.json", "cameras": [{"name": f"cam{i}", "source": s}
                                                         for i, s in enumerate(self.sources)],
                 "cameras_per_worker": 2, "gpus_per_worker": 0, "cpus_per_worker": 0.25, "decode": "cpu",
                 "heartbeat_seconds": 5, "watchdog_seconds": WATCHDOG_S, "restart_backoff": [0.5, 2]}
        fleet_path = self.folder / "fleet.json"
        fleet_path.write_text(json.dumps(fleet))
        return fleet_path

    def command(self) -> List[str]:
        if self.h.command == "run":
            sources = [arg for s in self.sources for arg in ("--source", s)]
            return [sys.executable, "-m", "segpost", "run", "--device", "cpu", "--decode", "cpu", "--config",
                    str(self.config), *sources, "--out", str(self.out), "--track", "--watchdog-seconds",
                    str(WATCHDOG_S), "--resume"]
        return [sys.executable, "-m", "segpost", "fleet", "--config", str(self.config), "--out", str(self.out),
                "--address", "local", "--status-every", "0"]

    def launch(self) -> None:
        # PYTHONFAULTHANDLER: a process that will not drain gets SIGABRT first, and its threads' stacks go to the log.
        # The segpost these tests import (an installed one in CI, the tree's under PYTHONPATH here).
        path = str(Path(segpost.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", PYTHONPATH=path)
        if self.ray_tmp is not None:
            env["RAY_TMPDIR"] = str(self.ray_tmp)
        self.log.write(f"---- started at {self.elapsed():.1f} s: {' '.join(self.command())}\n")
        self.log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=self.log, env=env, cwd=self.folder,
                                     start_new_session=True)

    # -- observing --------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def out_files(self) -> List[Path]:
        if self.h.command == "run":
            return [self.out]
        return sorted(self.out.glob("*.jsonl")) if self.out.exists() else []

    def progress(self) -> tuple:
        """(frame records in the output, its bytes)."""
        frames = size = 0
        for path in self.out_files():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            frames += data.count(b'"detections"')
            size += len(data)
        return frames, size

    def note(self, frames: int, what: str, kind: Optional[str] = None) -> None:
        self.outcome.fired.append(f"t={self.elapsed():.1f}s frames={frames}: {what}")
        if kind:
            self.outcome.fired_kinds.append(kind)

    def violation(self, kind: str, detail: str) -> None:
        self.outcome.violations.append(Violation(kind, "process", detail))

    # -- faults -----------------------------------------------------------------------------

    def strike(self, fault: Fault, frames: int) -> str:
        """Does `fault` now; returns what happens next to the process ("", "restart", "term"), or
        "retry" when its target process is not there yet."""
        sid = self.proc.pid
        kind = fault.kind
        if kind in ("worker_kill", "sink_kill"):
            pids = actors(sid, "CameraWorker" if kind == "worker_kill" else "RecordSink")
            if not pids:            # a restarted fleet's actors are not up yet: try again
                return "retry"
            pid = pids[self.rng.randrange(len(pids))]
            os.kill(pid, signal.SIGKILL)
            self.note(frames, f"{kind}: SIGKILL pid {pid}", kind)
        elif kind == "driver_kill":
            self.restart_at_once = fault.params.get("restart") == "at_once"
            if fault.params.get("restart") == "whole_session":
                pids = session(sid)
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                self.note(frames, f"driver_kill: SIGKILL to the {len(pids)} processes of segpost {self.h.command}'s session", kind)
            else:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.note(frames, f"driver_kill: SIGKILL segpost {self.h.command} (pid {self.proc.pid})", kind)
            return "restart"
        elif kind == "sigterm_group":
            # The whole process group of the command started (a supervisor's stop-as-group;
            # deploy/'s units use KillMode=mixed, which signals the main process alone).
            os.killpg(sid, signal.SIGTERM)
            self.note(frames, f"sigterm_group: SIGTERM to process group {sid}", kind)
            return "term"
        elif kind == "disk_full":
            writers = [self.proc.pid] if self.h.command == "run" else actors(sid, "RecordSink")
            if not writers:
                return "retry"
            largest = max((p.stat().st_size for p in self.out_files() if p.exists()), default=0)
            limit = largest + self.rng.randint(1, 3000)   # a write may stop inside a line
            for pid in writers:
                try:
                    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
                    self.limited.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            self.note(frames, f"disk_full: files of pids {writers} stop at {limit} bytes", kind)
            self.timers.append((self.elapsed() + fault.params["free_after_s"], "disk freed", self._free_disk))
        elif kind == "source_removed":
            source = Path(self.sources[fault.params["camera"]])
            gone = source.with_suffix(".gone")
            os.replace(source, gone)
            self.note(frames, f"source_removed: {source.name} away for {fault.params['back_after_s']} s", kind)
            self.timers.append((self.elapsed() + fault.params["back_after_s"], f"{source.name} back",
                                lambda: os.replace(gone, source)))
        return ""

    def _free_disk(self) -> None:
        for pid in self.limited:
            try:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except (ProcessLookupError, PermissionError):
                pass
        self.limited = []

    def engine_faults_reached(self, by_camera: Dict[Any, List[Dict[str, Any]]]) -> None:
        """Engine faults count as injected once a process ran that many rounds (the vision encoder
        runs once a round; the decoder once per class group), or its log says so."""
        rounds = max((sum(1 for r in records if "detections" in r) for records in by_camera.values()), default=0)
        text = self.logs()
        for fault in self.h.faults:
            if fault.kind == "engine_raise":
                hit = "injected fault" in text or any(call < rounds for call, _ in fault.params.get("raise", []))
            elif fault.kind == "engine_hang":
                hit = "segpost: watchdog:" in text or any(call < rounds for call, _ in fault.params["hang"])
            else:
                continue
            if hit:
                self.outcome.fired_kinds.append(fault.kind)
                self.outcome.fired.append(f"{fault} (engine config)")

    def logs(self) -> str:
        self.log.flush()
        self.log.seek(0)
        text = self.log.read()
        if self.ray_tmp is not None:   # the workers' output goes to Ray's log files
            for path in self.ray_tmp.glob("**/logs/worker-*.err"):
                try:
                    text += path.read_text(errors="replace")
                except OSError:
                    pass
        return text

    # -- the loop ---------------------------------------------------------------------------

    def wait_group_gone(self, sid: int, seconds: float) -> List[int]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            left = session(sid)
            if not left:
                return []
            time.sleep(0.2)
        return session(sid)

    def kill_group(self, sid: int) -> None:
        for pid in session(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait_group_gone(sid, 10)

    def run(self) -> Outcome:
        h = self.h
        pending = sorted((f for f in h.faults if f.kind not in ("engine_raise", "engine_hang")),
                         key=lambda f: f.at_frames)
        pause = sum(s for f in h.faults for _, s in f.params.get("hang", [])) + \
            sum(f.params.get("free_after_s", 0) + f.params.get("back_after_s", 0) for f in h.faults)
        stuck_s = STUCK_S[h.command] + pause
        self.launch()
        last_size, last_growth, term_at = -1, time.monotonic(), None
        ended_by_us = restart = False
        try:
            while True:
                time.sleep(0.2)
                now = time.monotonic()
                frames, size = self.progress()
                if size != last_size:
                    last_size, last_growth = size, now
                for timer in [t for t in self.timers if self.elapsed() >= t[0]]:
                    self.timers.remove(timer)
                    timer[2]()
                    self.note(frames, timer[1])
                next_step = ""
                while pending and term_at is None and self.proc.poll() is None and frames >= pending[0].at_frames:
                    next_step = self.strike(pending[0], frames)
                    if next_step == "retry":
                        next_step = ""
                        break
                    pending.pop(0)
                    if next_step:
                        break
                if next_step == "term":
                    term_at = now
                    ended_by_us = True
                restart = restart or next_step == "restart"
                rc = self.proc.poll()
                if rc is not None:
                    self.outcome.exits.append(rc)
                    sid = self.proc.pid
                    # segpost run under its unit: an error exit is restarted (Restart=on-failure).
                    failed = h.command == "run" and rc != 0 and term_at is None and self.supervised < SUPERVISED_RESTARTS
                    self.supervised += failed
                    if failed:
                        self.note(frames, f"segpost run exited {rc}: started again (--resume), as its unit does")
                    if restart or failed or term_at is not None:   # after a stop, started again to finish
                        left = [] if restart and self.restart_at_once else self.wait_group_gone(sid, KILLED_GROUP_S)
                        if restart and self.restart_at_once:
                            self.old_sessions.append(sid)
                            self.note(frames, f"started again at once, beside {len(session(sid))} processes of "
                                              "the killed run")
                        if left:
                            self.note(frames, f"{len(left)} processes of the old group still alive after "
                                              f"{KILLED_GROUP_S:g} s: {[title(p)[:40] for p in left]}; SIGKILLed")
                            self.kill_group(sid)
                        self._check_exit(rc, killed=restart, termed=term_at is not None)
                        term_at, ended_by_us, restart, self.restart_at_once = None, False, False, False
                        self.launch()
                        last_growth = time.monotonic()
                        continue
                    self._check_exit(rc, killed=False, termed=term_at is not None)
                    break
                if term_at is not None and now - term_at > DRAIN_S[h.command]:
                    self.violation("drain_timeout", f"still running {DRAIN_S[h.command]:g} s after SIGTERM "
                                                    "(its stacks, from SIGABRT, are in its log)")
                    self.proc.send_signal(signal.SIGABRT)
                    time.sleep(3)
                    self.kill_group(self.proc.pid)
                    self.outcome.exits.append(self.proc.wait())
                    break
                if term_at is None and (now - last_growth > stuck_s or self.elapsed() > DEADLINE_S[h.command]):
                    self.violation("stuck", f"no new output for {now - last_growth:.0f} s (bound {stuck_s:g} s), "
                                            f"{self.elapsed():.0f} s into the history; SIGTERM sent")
                    self.proc.send_signal(signal.SIGTERM)
                    term_at, ended_by_us = now, True
        finally:
            for sid in self.old_sessions:
                self.kill_group(sid)
            if self.proc.poll() is None:
                self.kill_group(self.proc.pid)
            else:
                left = self.wait_group_gone(self.proc.pid, KILLED_GROUP_S)
                if left:
                    self.note(-1, f"{len(left)} processes of the group outlived it: "
                                  f"{[title(p)[:40] for p in left]}; SIGKILLed")
                    self.kill_group(self.proc.pid)
            for _, what, action in self.timers:   # a renamed video comes back for the next history
                if "back" in what:
                    action()
            self.timers = []
        self.outcome.seconds = self.elapsed()
        self.finish(ended_by_us)
        return self.outcome

    def _check_exit(self, rc: int, killed: bool, termed: bool) -> None:
        if killed:
            return
        fired = set(self.outcome.fired_kinds)
        allowed = {0}
        if self.h.command == "run" and "disk_full" in fired:
            allowed |= {1, 2}          # a run whose disk is full may stop, with an error
        if self.h.command == "run" and self._watchdog_hang():
            allowed |= {3}
        if termed:   # a SIGTERM before the handlers exist (the interpreter starting): systemd counts it clean
            allowed |= {-signal.SIGTERM}
        if rc not in allowed:
            self.violation("bad_exit", f"exit status {rc} (expected {sorted(allowed)})"
                           + (" after SIGTERM" if termed else ""))

    def _watchdog_hang(self) -> bool:
        return any(s > WATCHDOG_S for f in self.h.faults for _, s in f.params.get("hang", []))

    def finish(self, ended_by_us: bool) -> None:
        by_camera, torn = read_records([str(p) for p in self.out_files()])
        self.engine_faults_reached(by_camera)
        h = self.h
        names = list(range(h.cameras)) if h.command == "run" else [f"cam{i}" for i in range(h.cameras)]
        exits_ok = not any(v.kind in ("stuck", "drain_timeout") for v in self.outcome.violations)
        complete = exits_ok   # a stopped run or fleet is started again (--resume) to finish its files
        # A run whose disk filled, or whose watchdog fired (exit 3), is started again by its
        # supervisor with --resume: it must still end complete, unless it gave up restarting.
        early = h.command == "run" and self.supervised >= SUPERVISED_RESTARTS
        complete = complete and not early
        expect = {}
        for name in names:
            records = by_camera.get(name, [])
            unreadable = any(r.get("event") == "error" and "cannot open" in str(r.get("message")) for r in records)
            # A clean stop (SIGTERM) ends every track; a run that stopped early otherwise may not.
            ends = exits_ok and not unreadable and not early
            expect[name] = Expect(complete=complete and not unreadable, tracks_ended=ends, frames=h.frames)
        self.outcome.violations += torn + check_output(by_camera, expect)
        self.outcome.log_tail = self.logs()[-4000:]
        self.log.close()
        if self.ray_tmp is not None:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


def run_history(history: History, folder: Path, videos: Path) -> Outcome:
    """Runs `history` in `folder` (made empty) on videos cached in `videos`."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    videos.mkdir(parents=True, exist_ok=True)
    return _Run(history, folder, videos).run()
