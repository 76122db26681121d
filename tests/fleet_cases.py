"""What the fleet tests share: test videos, config files, reading the output, running a fleet in
this process, and the checks of exactly-once output."""
from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest

from brokers import make_h264
from segpost.synthetic.scene import Scene

LONG_FRAMES = 150
SERVICES = ".ci/run does"   # said in skip reasons; under SEGPOST_EXPECT_SERVICES any skip but a GPU one fails (conftest.py)


def fleet_services():
    """Ray (returned) and the ffmpeg program, or the test module skips (a failure in CI, where
    SEGPOST_EXPECT_SERVICES is set: conftest.py)."""
    ray = pytest.importorskip("ray", reason=f"the fleet runs on Ray: pip install 'segpost[fleet]' ({SERVICES})")
    if not shutil.which("ffmpeg"):
        pytest.skip(f"the ffmpeg program makes the test videos (apt-get install ffmpeg; {SERVICES})",
                    allow_module_level=True)
    return ray


def make_videos(folder, short=20):
    """`short` videos of 12-14 frames (cam00...) and 4 of LONG_FRAMES frames (long0...), 48x64."""
    paths = []
    for i in range(short):
        scene = Scene([(48, 64)], num_classes=2, seed=i)
        paths.append(make_h264(str(folder / f"cam{i:02d}.mp4"), [scene.render(r)[0][0] for r in range(12 + i % 3)],
                               fps=10))
    long = Scene([(48, 64)], num_classes=2, seed=99)
    frames = [long.render(r)[0][0] for r in range(LONG_FRAMES)]
    longs = [make_h264(str(folder / f"long{i}.mp4"), frames, fps=10) for i in range(4)]
    return folder, paths, longs


def write_configs(folder, cameras, per_worker, busy=(0, 0), startup_s=0, track=False, **fleet):
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [48, 64],
                "max_cameras": per_worker, "busy_ms": list(busy)}
    if startup_s:
        pipeline["startup_s"] = startup_s
    if track:
        pipeline["track"] = True
    (folder / "segpost.json").write_text(json.dumps(pipeline))
    config = {"pipeline": "segpost.json", "cameras": [{"name": n, "source": s} for n, s in cameras],
              "cameras_per_worker": per_worker, "gpus_per_worker": 0, "cpus_per_worker": 0.5,
              "heartbeat_seconds": 5, "restart_backoff": [0.5, 4], **fleet}
    path = folder / "fleet.json"
    path.write_text(json.dumps(config))
    return str(path)


def read_out(folder, running=False):
    """{camera file stem: its records}; every file must end with a whole line, unless the fleet is
    `running` (a reader may see a write in progress: its partial last line is left out)."""
    records = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as f:
                text = f.read()
            if running:
                text = text[:text.rfind("\n") + 1]
            assert not text or text.endswith("\n"), f"{name}: a half-written line"
            records[name[:-6]] = [json.loads(line) for line in text.splitlines()]
    return records


def frame_indices(records):
    return [r["frame_index"] for r in records if "detections" in r]


def assert_exactly_once(out, names, frames=LONG_FRAMES):
    """Every frame of each file camera once, in order."""
    records = read_out(out)
    for name in names:
        assert frame_indices(records.get(name, [])) == list(range(frames)), name
    return records


def track_ids(records):
    """The track ids of the detections, in record order (-1: a detection without a track)."""
    return [d["track_id"] for r in records if "detections" in r for d in r["detections"] if d["track_id"] >= 0]


def resumed_at(records):
    """Frame indices where a new worker began (its round counter starts again at 0) after the first."""
    return [r["frame_index"] for r in records if "detections" in r and r["round"] == 0 and r["frame_index"] > 0]


def run_fleet(config_path, out, stop=None, max_seconds=120, during=None, metrics=None, **options):
    """A Fleet in this process until it finishes, `stop` or max_seconds; `during(fleet, stop)` runs
    in a thread beside it. Returns (fleet, the sinks' final stats)."""
    from segpost.fleet.config import load_fleet_config
    from segpost.fleet.coordinator import Fleet

    fleet = Fleet(load_fleet_config(config_path), str(out), status_every=0, metrics=metrics, **options)
    stop = stop or threading.Event()
    errors = []

    def guarded():
        try:
            during(fleet, stop)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
            stop.set()

    try:
        fleet.start()
        if during:
            threading.Thread(target=guarded, daemon=True).start()
        fleet.supervise(stop, max_seconds=max_seconds)
    finally:
        stats = fleet.shutdown()   # also after a failed start: the next test's fleet takes the actors' names
    if errors:
        raise errors[0]
    return fleet, stats


def wait_until(condition, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def committed(fleet, camera):
    return fleet.committed_state().get(camera, {}).get("last_frame", -1)
