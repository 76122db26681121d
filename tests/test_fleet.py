"""segpost fleet on a real local Ray instance: exactly-once output equal to `segpost run`, a worker
killed mid-run, SIGTERM, scaling with workers, status, config errors."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from brokers import make_h264
from segpost.cli import main
from segpost.synthetic.scene import Scene

ray = pytest.importorskip("ray", reason="the fleet runs on Ray: pip install 'segpost[fleet]' (.ci/run does)")
if not __import__("shutil").which("ffmpeg"):
    pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)",
                allow_module_level=True)

from segpost.fleet.config import load_fleet_config  # noqa: E402
from segpost.fleet.coordinator import Fleet  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module (8 logical CPUs on CI's 2 cores: workers mostly wait)."""
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, namespace="segpost")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fleet")
    paths = []
    for i in range(20):
        scene = Scene([(48, 64)], num_classes=2, seed=i)
        paths.append(make_h264(str(folder / f"cam{i:02d}.mp4"), [scene.render(r)[0][0] for r in range(12 + i % 3)],
                               fps=10))
    long = Scene([(48, 64)], num_classes=2, seed=99)
    longs = [make_h264(str(folder / f"long{i}.mp4"), [long.render(r)[0][0] for r in range(150)], fps=10)
             for i in range(4)]
    return folder, paths, longs


def write_configs(folder, cameras, per_worker, busy=(0, 0), **fleet):
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [48, 64],
                "max_cameras": per_worker, "busy_ms": list(busy)}
    (folder / "segpost.json").write_text(json.dumps(pipeline))
    config = {"pipeline": "segpost.json", "cameras": [{"name": n, "source": s} for n, s in cameras],
              "cameras_per_worker": per_worker, "gpus_per_worker": 0, "cpus_per_worker": 0.5,
              "heartbeat_seconds": 5, "restart_backoff": [0.5, 4], **fleet}
    path = folder / "fleet.json"
    path.write_text(json.dumps(config))
    return str(path)


def read_out(folder):
    records = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl"):
            with open(os.path.join(folder, name)) as f:
                text = f.read()
            assert not text or text.endswith("\n"), f"{name}: a half-written line"
            records[name[:-6]] = [json.loads(line) for line in text.splitlines()]
    return records


def run_fleet(config_path, out, stop=None, max_seconds=120, during=None, metrics=None):
    fleet = Fleet(load_fleet_config(config_path), str(out), status_every=0, metrics=metrics)
    stop = stop or threading.Event()
    fleet.start()
    if during:
        threading.Thread(target=during, args=(fleet, stop), daemon=True).start()
    try:
        fleet.supervise(stop, max_seconds=max_seconds)
    finally:
        stats = fleet.shutdown()
    return fleet, stats


def test_twenty_cameras_on_three_workers_exactly_once_and_equal_to_segpost_run(ray_cluster, videos, tmp_path):
    folder, paths, _ = videos
    cameras = [(f"cam{i:02d}", p) for i, p in enumerate(paths)]
    fleet, stats = run_fleet(write_configs(tmp_path, cameras, per_worker=7), tmp_path / "out")
    assert [s.state for s in fleet.slots] == ["finished"] * 3 and stats["duplicates_dropped"] == 0
    out = read_out(tmp_path / "out")
    reference = tmp_path / "run.jsonl"
    assert main(["run", "--device", "cpu", "--config", str(tmp_path / "segpost.json"), "--out", str(reference),
                 *[a for p in paths for a in ("--source", p)]]) == 2   # max_cameras 7 < 20 sources: refused
    (tmp_path / "run.json").write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"],
                                                   "max_frame_size": [48, 64], "max_cameras": 20}))
    assert main(["run", "--device", "cpu", "--config", str(tmp_path / "run.json"), "--out", str(reference),
                 *[a for p in paths for a in ("--source", p)]]) == 0
    with open(reference) as f:
        expected = [json.loads(line) for line in f]
    for i, (name, path) in enumerate(cameras):
        frames = [r for r in out[name] if "detections" in r]
        frame_count = 12 + i % 3
        assert [r["frame_index"] for r in frames] == list(range(frame_count)), name   # every frame once, in order
        assert all(r["worker"] == f"worker-{i // 7}" for r in frames)
        mine = [r["detections"] for r in expected if r.get("camera") == i and "detections" in r]
        assert [r["detections"] for r in frames] == mine, name
        assert sum(len(d) for d in mine) > 0


def test_a_killed_worker_is_restarted_and_the_output_stays_exactly_once(ray_cluster, videos, tmp_path):
    _, _, longs = videos
    cameras = [(f"long{i}", p) for i, p in enumerate(longs)]
    config = write_configs(tmp_path, cameras, per_worker=2, busy=(15, 5))
    killed = {}

    def kill_worker_1(fleet, stop):
        slot = fleet.slots[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and slot.stats.get("frames", 0) < 20:
            time.sleep(0.1)
        killed["pid"] = ray.get(slot.actor.pid.remote())
        killed["frames"] = slot.stats.get("frames", 0)
        os.kill(killed["pid"], signal.SIGKILL)

    fleet, stats = run_fleet(config, tmp_path / "out", during=kill_worker_1)
    assert "pid" in killed, "the worker never got going"
    slot = fleet.slots[1]
    assert slot.restarts == 1 and slot.state == "finished" and slot.last_error
    status = json.loads((tmp_path / "out" / "fleet-status.json").read_text())
    assert status["workers"][1]["restarts"] == 1 and status["workers"][0]["restarts"] == 0
    out = read_out(tmp_path / "out")
    for name, _ in cameras:
        frames = [r for r in out[name] if "detections" in r]
        assert [r["frame_index"] for r in frames] == list(range(150)), name      # complete, once, in order
    restarted_pid = fleet.slots[1].stats.get("pid")
    assert restarted_pid and restarted_pid != killed["pid"]
    log = [r for r in out["long2"] if "detections" in r]
    after_kill = [r for r in log if r["frame_index"] >= killed["frames"] + 2]
    assert after_kill, "no frames after the kill"


def test_restart_comes_back_within_ten_seconds(ray_cluster, videos, tmp_path):
    """Time from the kill to the replacement's first committed frame."""
    _, _, longs = videos
    config = write_configs(tmp_path, [("long0", longs[0])], per_worker=1, busy=(20, 5))
    times = {}

    def kill_then_watch(fleet, stop):
        slot = fleet.slots[0]
        while slot.stats.get("frames", 0) < 10:
            time.sleep(0.05)
        committed = ray.get(fleet.sink.committed.remote())["long0"]
        os.kill(ray.get(slot.actor.pid.remote()), signal.SIGKILL)
        times["kill"] = time.monotonic()
        while ray.get(fleet.sink.committed.remote()).get("long0", -1) <= committed + 2:
            time.sleep(0.05)
        times["back"] = time.monotonic()

    fleet, _ = run_fleet(config, tmp_path / "out", during=kill_then_watch)
    assert times["back"] - times["kill"] < 10.0, times
    frames = [r["frame_index"] for r in read_out(tmp_path / "out")["long0"] if "detections" in r]
    assert frames == list(range(150))


def test_sigterm_exits_zero_within_ten_seconds_with_the_output_flushed(videos, tmp_path):
    _, _, longs = videos
    config = write_configs(tmp_path, [(f"long{i}", p) for i, p in enumerate(longs)], per_worker=2, busy=(40, 10))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(out),
                                "--status-every", "1"], stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        records = read_out(out) if out.exists() else {}
        if sum(len(v) for k, v in records.items() if k.startswith("long")) >= 40:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-3000:]
    assert time.monotonic() - started < 10, stderr[-2000:]
    assert "stopped by signal" in stderr
    for name, records in read_out(out).items():   # read_out checks every file ends with a whole line
        if name.startswith("long"):
            indices = [r["frame_index"] for r in records if "detections" in r]
            assert indices == list(range(len(indices))) and 0 < len(indices) < 150


def scaling_throughput(folder, videos, workers, busy_ms):
    """Frames/s summed over the workers, each over its own rounds (the workers' start-up stagger on a busy
    machine is not a throughput loss), and the fraction of the run during which all of them were working."""
    cameras = [(f"long{i}", videos[i % len(videos)]) for i in range(workers)]
    fleet, _ = run_fleet(write_configs(folder, cameras, per_worker=1, busy=(busy_ms, 0)), folder / "out")
    stats = [s.stats for s in fleet.slots]
    rate = sum((s["frames"] - 1) / (s["last_round_end"] - s["first_round_end"]) for s in stats)
    together = min(s["last_round_end"] for s in stats) - max(s["first_round_end"] for s in stats)
    overall = max(s["last_round_end"] for s in stats) - min(s["first_round_end"] for s in stats)
    return rate, together / overall


def test_throughput_scales_with_workers(ray_cluster, videos, tmp_path):
    """Engines that sleep T per round (the CPU stays free): N workers, working at the same time for most of
    the run, give >= 0.9 N x one worker."""
    _, _, longs = videos
    (one, _), (two, overlap2), (four, overlap4) = (scaling_throughput(tmp_path / f"w{n}", longs, n, 60)
                                                   for n in (1, 2, 4))
    print(f"frames/s: 1 worker {one:.1f}, 2 workers {two:.1f}, 4 workers {four:.1f}; "
          f"all working together {overlap2:.0%} and {overlap4:.0%} of the run")
    assert overlap2 >= 0.8 and overlap4 >= 0.8, (overlap2, overlap4)
    assert two >= 0.9 * 2 * one and four >= 0.9 * 4 * one, (one, two, four)


def test_status_command_metrics_and_config_errors(ray_cluster, videos, tmp_path, capsys):
    from brokers import http_get
    from segpost.service.metrics import Metrics, MetricsServer

    folder, paths, _ = videos
    config = write_configs(tmp_path, [("a", paths[0]), ("b", paths[1])], per_worker=2)
    metrics = Metrics(stale_seconds=60)
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    try:
        run_fleet(config, tmp_path / "out", metrics=metrics)
        status, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and 'segpost_frames_total{camera="a"} 12.0' in body
        assert 'segpost_fleet_worker_restarts{worker="worker-0"} 0.0' in body
        assert http_get(f"http://127.0.0.1:{server.port}/healthz")[0] == 200
    finally:
        server.close()
    assert main(["fleet", "status", "--status-file", str(tmp_path / "out" / "fleet-status.json")]) == 0
    printed = capsys.readouterr().out
    assert "worker-0" in printed and "finished" in printed and "a, b" in printed
    bad = json.loads((tmp_path / "fleet.json").read_text())
    for change, message in (({"cameras_per_worker": 9}, "cameras_per_worker must be an int in \\[1, 2\\]"),
                            ({"cameras": [{"name": "a", "source": "x"}, {"name": "a", "source": "y"}]}, "unique"),
                            ({"cameras": []}, "'cameras' must be a list"),
                            ({"gpus_per_worker": -1}, "gpus_per_worker must be a number >= 0"),
                            ({"decode": "fpga"}, "decode must be"),
                            ({"sink": {"kafka": "x"}}, "sink takes"),
                            ({"workers": 3}, "unknown key")):
        (tmp_path / "bad.json").write_text(json.dumps({**bad, **change}))
        with pytest.raises(ValueError, match=message):
            load_fleet_config(str(tmp_path / "bad.json"))
    assert main(["fleet", "--config", str(tmp_path / "bad.json")]) == 2
    assert "needs --config FLEET.json and --out PATH" in capsys.readouterr().err


def test_a_finished_worker_gives_its_resources_back(ray_cluster, videos, tmp_path):
    """Workers that finished their files are ended, so the cluster's CPUs (and GPU shares) serve the
    next fleet: two fleets in a row that each need 6 of the 8 CPUs."""
    _, paths, _ = videos
    for run in range(2):
        config = write_configs(tmp_path / f"run{run}", [("a", paths[0])], per_worker=1, cpus_per_worker=6)
        fleet, _ = run_fleet(config, tmp_path / f"run{run}" / "out", max_seconds=60)
        assert [s.state for s in fleet.slots] == ["finished"], f"fleet {run} did not finish"
