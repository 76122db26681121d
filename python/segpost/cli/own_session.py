"""`segpost serve` and `segpost fleet` run in a session of their own, behind a process that only
forwards signals.

Ray's own processes (its GCS server, raylet, agents) are children of the command that starts
Ray, in the command's process group. Stopped the way services are stopped (SIGTERM to the whole
process group: `kill -TERM -- -PGID`, a supervisor's stop-as-group), they died with the first
signal, under the drain the command was doing: `segpost serve` then waited for Ray's controller
(30 s) and could abort (exit 134, Ray's "Failed to connect to GCS"); `segpost fleet` could end
with status 1 after 60 s and leave Ray processes behind.

So the command's own process starts the real one (the same arguments) in a new session and only
forwards SIGTERM and SIGINT to it (SIGHUP as SIGTERM), then exits with its status. A signal to
the whole group reaches the forwarder alone, and the command drains exactly as on a SIGTERM to
its main process. The forwarder is transparent to SIGKILL too: the child dies with it
(PR_SET_PDEATHSIG), and Ray's processes with the child, as they did with the command before.
systemd's default KillMode (every process of the unit's cgroup, whatever its session) would still
reach Ray's processes: the units in deploy/ set KillMode=mixed.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Optional

CHILD_ENV = "SEGPOST_OWN_SESSION"   # set in the child: it runs the command itself
_PR_SET_PDEATHSIG = 1


def run_in_own_session() -> Optional[int]:
    """The exit status of this command run again in a new session, with signals forwarded; None
    where the caller should run the command itself: in that child, on a platform without
    sessions, or when segpost is not this process's program (called as a library: main([...]))."""
    forwarder = os.environ.pop(CHILD_ENV, None)   # not for what this process starts
    if forwarder:
        _die_with(int(forwarder))
        return None
    if not sys.platform.startswith("linux") or not _run_as_program():
        return None
    child: Optional[subprocess.Popen] = None
    pending = []   # signals that came before the child existed

    def forward(signum, frame):
        signum = signal.SIGTERM if signum == signal.SIGHUP else signum
        if child is None:
            pending.append(signum)
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    child = subprocess.Popen([sys.executable, "-m", "segpost", *sys.argv[1:]],
                             env={**os.environ, CHILD_ENV: str(os.getpid())}, start_new_session=True)
    for signum in pending:
        child.send_signal(signum)
    code = child.wait()   # a forwarded signal interrupts the wait, which then resumes (PEP 475)
    return code if code >= 0 else 128 - code


def _die_with(forwarder: int) -> None:
    """SIGKILL to this process when the forwarder dies: it ends only by SIGKILL (or a crash), since
    it forwards the other signals, and a SIGKILLed `segpost fleet` must stay a crash (its restart
    resumes from the files), not become a drain racing the restarted command."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != forwarder:   # it died before prctl took effect
        sys.exit(f"segpost: the process that started this one ({forwarder}) has ended")


def _run_as_program() -> bool:
    """Whether this process is the `segpost` command (its console script or `python -m segpost`)."""
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return os.path.basename(program) == "segpost" or program.endswith(os.path.join("segpost", "__main__.py"))
