"""Stopped as services are stopped: `segpost run`, `segpost serve` and `segpost fleet`, each
started in a session of its own, get SIGTERM sent to their whole process group (os.killpg: what
`kill -TERM -- -PGID` and supervisors' stop-as-group do). Each must drain as it does on a SIGTERM
to its main process alone: exit 0 within the TimeoutStopSec its deploy/ unit gives it, its output
complete (whole lines, every frame once and in order, every track ended once), no process it
started left behind, and no process of Ray's in the group the signal went to.

Ray's own processes used to be in the command's group and died with the signal, under the drain:
`segpost serve` then waited 30 s for Ray's controller and could abort (134), `segpost fleet` ended
with status 1 after a minute and left Ray processes running."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from brokers import free_port

cv2 = pytest.importorskip("cv2", reason="the test videos are written with OpenCV: pip install 'segpost[video]' "
                                        "(.ci/run does)")

from segpost.synthetic.scene import Scene  # noqa: E402

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy")


def stop_timeout(unit):
    """The TimeoutStopSec of deploy/UNIT (seconds): the drain time a site's systemd allows."""
    with open(os.path.join(DEPLOY, unit)) as f:
        return float(re.search(r"^TimeoutStopSec=(\d+)s?$", f.read(), re.M).group(1))


def write_video(path, frames=300):
    scene = Scene([(48, 64)], num_classes=2, seed=99)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (64, 48))
    for r in range(frames):
        writer.write(scene.render(r)[0][0])
    writer.release()
    return str(path)


class Command:
    """`python -m segpost ARGS` in a new session (its own process group, as a service's), its
    stderr (and stdout) collected."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, "-m", "segpost", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                        env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.kill()
                raise AssertionError(f"exited {self.process.returncode} before {what}:\n{self.output[-3000:]}")
            if condition():
                return
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"timed out waiting for {what}:\n{self.output[-3000:]}")

    def kill(self):
        """SIGKILL to the command and everything it started (a failed test leaves nothing running)."""
        for pid in descendants(self.process.pid) + [self.process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.process.wait()

    def stop_group(self, timeout):
        """SIGTERM to the process group; (exit status, seconds to exit, processes it had started
        that are still alive a few seconds after it exited). The group must hold the command's
        main process alone: a process of Ray's in it would die under the drain (and, by timing,
        end it with status 1 after a minute, or not)."""
        started = descendants(self.process.pid)
        group = {pid: cmdline(pid)[:100] for pid in [self.process.pid] + started if pgid(pid) == self.process.pid}
        os.killpg(self.process.pid, signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - sent
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [p for p in started if alive(p)]:
            time.sleep(0.2)
        left = [p for p in started if alive(p)]
        for pid in left + ([self.process.pid] if code is None else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._reader.join(timeout=10)
        assert list(group) == [self.process.pid], f"the process group holds more than segpost's process: {group}"
        return code, seconds, left


def descendants(root):
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return sorted(found)


def pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def whole_lines(path):
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n"), f"{path}: a half-written last line"
    return [json.loads(line) for line in text.splitlines()]


def in_order_from_zero(records):
    """The camera's frames, each once and in order from 0 (their count); with tracking, each track
    that started ended once, as the drain ends every open track."""
    indices = [r["frame_index"] for r in records if "detections" in r]
    assert indices == list(range(len(indices))), indices[:20]
    started = [r["track_id"] for r in records if r.get("event") == "track_started"]
    ended = [r["track_id"] for r in records if r.get("event") == "track_ended"]
    assert sorted(started) == sorted(ended) == sorted(set(ended)), (started, ended)
    return len(indices)


def test_segpost_run_stops_cleanly_on_sigterm_to_its_process_group(tmp_path):
    videos = [write_video(tmp_path / f"cam{i}.avi") for i in range(2)]
    (tmp_path / "segpost.json").write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"],
                                                       "max_frame_size": [48, 64], "busy_ms": [20, 5]}))
    out = tmp_path / "out.jsonl"
    command = Command("run", "--device", "cpu", "--config", str(tmp_path / "segpost.json"), "--source", videos[0],
                      "--source", videos[1], "--out", str(out), "--track")
    command.wait_for(lambda: out.exists() and out.read_text().count("\n") >= 20, 120, "20 records")
    code, seconds, left = command.stop_group(stop_timeout("segpost-run.service"))
    assert code == 0 and "stopped by signal" in command.output, command.output[-3000:]
    assert not left, f"processes left running: {left}"
    records = whole_lines(out)
    assert any(r.get("event") == "track_started" for r in records)
    for camera in (0, 1):
        assert 10 <= in_order_from_zero([r for r in records if r.get("camera") == camera]) < 300
    print(f"segpost run: stopped {seconds:.1f} s after SIGTERM to its process group")


def test_segpost_serve_stops_cleanly_on_sigterm_to_its_process_group(tmp_path):
    pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
    from segpost.serve.client import SegpostClient

    key = "signals-key-" + "s" * 20
    port = free_port()
    (tmp_path / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [48, 64], "max_cameras": 2},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "http_port": port, "api_keys": [key], "round_timeout_s": 5}))
    command = Command("serve", "--config", str(tmp_path / "serve.json"))
    command.wait_for(lambda: "SIGTERM stops" in command.output, 180, "the server's banner")
    frame = Scene([(48, 64)], num_classes=2, seed=3).render(0)[0][0]
    try:
        answer = SegpostClient(http=f"http://127.0.0.1:{port}/segment", api_key=key).segment([frame])[0]
    except Exception:
        command.kill()
        raise
    assert (answer["height"], answer["width"]) == (48, 64) and answer["detections"]
    code, seconds, left = command.stop_group(stop_timeout("segpost-serve.service"))
    output = command.output
    assert code == 0 and "segpost serve: stopped" in output, output[-3000:]
    # Ray's processes lived through the drain: its controller shut down, nothing waited for a dead GCS.
    assert "failed to shut down" not in output and "Failed to connect to GCS" not in output, output[-3000:]
    assert not left, f"processes left running: {left}"
    print(f"segpost serve: stopped {seconds:.1f} s after SIGTERM to its process group")


def test_sigkill_to_segpost_serve_ends_everything_it_started(tmp_path):
    """The process a service manager sees forwards signals to the command, which runs in a session
    of its own; SIGKILL cannot be forwarded, and must not leave the command and Ray running (a
    SIGKILLed fleet is restarted on the same output)."""
    pytest.importorskip("ray", reason="segpost serve runs on Ray Serve: pip install 'segpost[fleet]' (.ci/run does)")
    (tmp_path / "serve.json").write_text(json.dumps({
        "pipeline": {"backend": "synthetic", "classes": ["red"], "max_frame_size": [48, 64], "max_cameras": 1},
        "gpus_per_replica": 0, "cpus_per_replica": 0.5, "http_port": free_port()}))
    command = Command("serve", "--config", str(tmp_path / "serve.json"))
    command.wait_for(lambda: "SIGTERM stops" in command.output, 180, "the server's banner")
    started = {pid: cmdline(pid) for pid in descendants(command.process.pid)}
    # The command itself (in its own session) and Ray's core processes must go; Ray leaves its
    # dashboard and runtime-env agents running after any SIGKILLed driver, with or without segpost.
    core = [pid for pid, line in started.items() if re.search(r"-m segpost serve|gcs_server|raylet", line)]
    command.process.kill()
    command.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(p) for p in core):
        time.sleep(0.2)
    left = {pid: started[pid][:80] for pid in started if alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert len(core) == 3, started   # the command itself (in its own session), Ray's GCS server and raylet
    assert not [pid for pid in core if pid in left], f"processes left running after SIGKILL: {left}"


def test_segpost_fleet_stops_cleanly_on_sigterm_to_its_process_group(tmp_path):
    pytest.importorskip("ray", reason="the fleet runs on Ray: pip install 'segpost[fleet]' (.ci/run does)")
    from fleet_cases import read_out, write_configs

    videos = [write_video(tmp_path / f"long{i}.avi") for i in range(4)]
    config = write_configs(tmp_path / "config", [(f"long{i}", v) for i, v in enumerate(videos)], per_worker=2,
                           busy=(40, 10), track=True)
    out = tmp_path / "out"

    def written():
        return out.exists() and sum(len([r for r in v if "detections" in r])
                                    for v in read_out(out, running=True).values()) >= 20

    # An explicit local instance: never a cluster this machine happened to know.
    command = Command("fleet", "--config", config, "--out", str(out), "--address", "local", "--status-every", "1")
    command.wait_for(written, 180, "20 frames written by the fleet")
    code, seconds, left = command.stop_group(stop_timeout("segpost-fleet.service"))
    output = command.output
    assert code == 0 and "stopped by signal" in output, output[-3000:]
    assert not left, f"processes left running: {left}"
    records = read_out(out)   # every file ends with a whole line
    counts = [in_order_from_zero(records[f"long{i}"]) for i in range(4)]
    assert any(r.get("event") == "track_started" for camera in records.values() for r in camera)
    assert sum(counts) >= 20 and max(counts) < 300, counts
    print(f"segpost fleet: stopped {seconds:.1f} s after SIGTERM to its process group; frames written {counts}")


# -- the systemd units a site installs (deploy/) --------------------------------------------------

UNITS = {"segpost-run.service": "run", "segpost-serve.service": "serve", "segpost-fleet.service": "fleet"}


def unit_settings(unit):
    """{key: [values]} of a unit file's [Service] and other sections, continuation lines joined."""
    with open(os.path.join(DEPLOY, unit)) as f:
        text = re.sub(r"\\\n\s*", " ", f.read())
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def cli_parser():
    """The segpost command's own argument parser (the subcommands' add_parser, as cli.main builds it)."""
    import argparse

    from segpost.cli import demo, fleet, inspect_engines, run, serve

    parser = argparse.ArgumentParser(prog="segpost")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (demo, run, fleet, serve, inspect_engines):
        command.add_parser(commands)
    return parser


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_unit_starts_a_real_subcommand_and_stops_it_gracefully(unit):
    import shlex

    settings = unit_settings(unit)
    (exec_start,) = settings["ExecStart"]
    argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: f"rtsp://user:secret@10.0.0.7/{m.group(1)}", exec_start))
    assert os.path.basename(argv[0]) == "segpost", argv
    args = cli_parser().parse_args(argv[1:])   # an unknown option or a missing value exits here
    assert args.command == UNITS[unit]
    if args.command == "fleet":
        assert args.address == "local"   # never whatever cluster the machine last knew
    # SIGTERM to segpost alone (it drains); the rest is killed only once it has exited.
    assert settings["KillMode"] == ["mixed"] and settings.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    assert stop_timeout(unit) >= 30 and settings["Restart"] == ["on-failure"]
    assert settings["EnvironmentFile"] and settings["User"] != ["root"] and settings["User"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes")):
        assert settings[key] == [value], (unit, key)


@pytest.mark.skipif(not __import__("shutil").which("systemd-analyze"),
                    reason="systemd-analyze checks the units (apt-get install systemd)")
def test_systemd_analyze_verifies_the_units(tmp_path):
    """systemd's own parser: unknown keys, bad values and a missing program are each reported (the
    installed path, /opt/segpost/bin/segpost, becomes this environment's segpost program)."""
    import shutil

    program = shutil.which("segpost") or os.path.join(os.path.dirname(sys.executable), "segpost")
    assert os.access(program, os.X_OK), program
    for unit in UNITS:
        with open(os.path.join(DEPLOY, unit)) as f:
            (tmp_path / unit).write_text(f.read().replace("/opt/segpost/bin/segpost", program))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / unit) for unit in UNITS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr
