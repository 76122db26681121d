"""The fleet sink's durability promise (python/segpost/fleet/sink.py): every file it wrote is
fsynced within fsync_seconds and at close, after the lines it acknowledged. Without Ray: a real
RecordSink on real files, its fsync calls recorded in the process (the real fsync still runs) and,
from outside, the fsync system calls of a sink in a child process traced by strace."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from segpost.fleet.sink import RecordSink


def frame(camera, index):
    return {"round": index, "camera": camera, "source": f"{camera}.mp4", "frame_index": index,
            "detections": [{"class": "person", "score": 0.9, "box": [0, 0, 1, 1]}]}


class SyncLog:
    """os.fsync and os.fdatasync wrapped: each call's file (by its open descriptor, so the call was
    made before the file was closed), that file's size then (what the call covers) and the time."""

    def __init__(self, monkeypatch):
        self.calls, self._lock = [], threading.Lock()
        for name in ("fsync", "fdatasync"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(real))

    def _wrap(self, real):
        def synced(fd):
            path, size = os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size
            real(fd)
            with self._lock:
                self.calls.append((path, size, time.monotonic()))
        return synced

    def covered(self, path, size, since=0.0):
        """Whether a call since `since` made the first `size` bytes of `path` durable."""
        with self._lock:
            return any(p == path and s >= size and t >= since for p, s, t in self.calls)


def sizes(folder):
    return {os.path.join(folder, name): os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)}


def test_each_written_file_is_fsynced_within_fsync_seconds(tmp_path, monkeypatch):
    log, out, period = SyncLog(monkeypatch), str(tmp_path / "out"), 0.2
    sink = RecordSink(out, cameras=["a", "b"], fsync_seconds=period)
    try:
        for round_ in range(2):   # the second round: a file fsynced before is fsynced again once it grows
            written = time.monotonic()
            batch = [frame("a", round_), frame("b", round_), {"event": "note", "message": f"round {round_}"}]
            assert sink.write_batch(batch) == 3
            expected = sizes(out)
            assert len(expected) == 3 and all(expected.values()), expected   # a.jsonl, b.jsonl, fleet.jsonl
            # The sink's own timer, not close(), must make them durable: wait a generous multiple
            # of its period (a loaded machine), far less than "only at close" would take.
            deadline = written + 25 * period
            while time.monotonic() < deadline and not all(log.covered(p, s, written) for p, s in expected.items()):
                time.sleep(period / 4)
            missing = [p for p, s in expected.items() if not log.covered(p, s, written)]
            assert not missing, (round_, missing, log.calls)
    finally:
        sink.close()


def test_close_fsyncs_what_the_timer_has_not(tmp_path, monkeypatch):
    log, out = SyncLog(monkeypatch), str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"], fsync_seconds=3600)   # the timer never fires here
    sink.write_batch([frame("a", 0), frame("b", 0)])
    sink.write_batch([frame("a", 1)])
    expected = {path: size for path, size in sizes(out).items() if size}   # fleet.jsonl: created, empty
    assert not any(log.covered(p, s) for p, s in expected.items()), log.calls
    closed = time.monotonic()
    sink.close()
    missing = [p for p, s in expected.items() if not log.covered(p, s, closed)]
    assert not missing and len(expected) == 2, (missing, log.calls)


CHILD = textwrap.dedent("""
    import os, sys, time
    from segpost.fleet.sink import RecordSink
    out, period = sys.argv[1], float(sys.argv[2])
    sink = RecordSink(out, cameras=["a", "b"], fsync_seconds=period)
    for i in range(3):
        sink.write_batch([{"camera": c, "frame_index": i, "detections": []} for c in ("a", "b")])
    print("acknowledged", os.getpid(), flush=True)
    time.sleep(600)   # killed before it closes anything
""")


def test_a_sink_process_fsyncs_its_files_and_keeps_acknowledged_lines_through_sigkill(tmp_path):
    """From outside the process: strace sees fsync (or fdatasync) system calls on each camera's
    file after the acknowledged writes, without close(); after SIGKILL every acknowledged line is
    in the files (that part holds without fsync too: the kernel has them; the traced call is what
    makes them survive a machine crash)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace traces the sink's system calls (apt-get install strace)")
    out, trace = str(tmp_path / "out"), str(tmp_path / "trace")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen([strace, "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,write", "-o", trace,
                              sys.executable, "-c", CHILD, out, "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)   # strace and the sink: one group to kill
    try:
        said = child.stdout.readline().split()
        assert said[:1] == ["acknowledged"], child.stderr.read()
        files = [os.path.join(out, f"{camera}.jsonl") for camera in ("a", "b")]

        def synced_after_writes():
            """Per file, whether an fsync follows its last write in the trace."""
            with open(trace) as f:
                calls = [line for line in f if "<" in line]
            last = {}
            for i, line in enumerate(calls):
                for path in files:
                    if f"<{path}>" in line:
                        last.setdefault(path, {})["sync" if "sync(" in line else "write"] = i
            return {path: last.get(path, {}).get("sync", -1) > last.get(path, {}).get("write", 10 ** 9)
                    for path in files}

        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(synced_after_writes().values()):
            time.sleep(0.1)
        assert all(synced_after_writes().values()), (synced_after_writes(), open(trace).read()[-3000:])
    finally:
        os.killpg(child.pid, signal.SIGKILL)   # the sink dies without closing anything
        child.wait(timeout=30)
    for camera in ("a", "b"):
        with open(os.path.join(out, f"{camera}.jsonl")) as f:
            assert [json.loads(line)["frame_index"] for line in f] == [0, 1, 2], camera
