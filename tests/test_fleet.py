"""segpost fleet on a real local Ray instance: exactly-once output equal to `segpost run` with the
workers' rounds running at the same time, status and metrics, config errors, resources given back,
MQTT output through a real mosquitto, a fired watchdog, SIGTERM. Failures across nodes, sinks and
whole fleets: test_fleet_failover.py."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from local_ray import start_local_ray
from brokers import Mosquitto, http_get, mosquitto_path
from fleet_cases import (SERVICES, fleet_services, frame_indices, make_videos, read_out, run_fleet, wait_until,
                         write_configs)
from segpost.cli import main
from segpost.config import build_from_config

ray = fleet_services()

from segpost.fleet.config import load_fleet_config  # noqa: E402
from segpost.fleet.coordinator import Fleet  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module (8 logical CPUs on CI's 2 cores: workers mostly wait)."""
    start_local_ray(num_cpus=8, include_dashboard=False, log_to_driver=False, namespace="segpost")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("fleet"))


def concurrency(spans_by_worker):
    """(the mean number of workers inside a round from the first round's start to the last one's
    end, that span in seconds). Workers that take turns give at most 1, whatever their number."""
    start = min(spans[0][0] for spans in spans_by_worker)
    end = max(spans[-1][1] for spans in spans_by_worker)
    busy = sum(e - s for spans in spans_by_worker for s, e in spans)
    return busy / (end - start), end - start


def test_twenty_cameras_on_three_concurrent_workers_exactly_once_and_equal_to_segpost_run(ray_cluster, videos,
                                                                                          tmp_path):
    folder, paths, _ = videos
    cameras = [(f"cam{i:02d}", p) for i, p in enumerate(paths)]
    fleet, stats = run_fleet(write_configs(tmp_path, cameras, per_worker=7, busy=(150, 0)), tmp_path / "out")
    assert [s.state for s in fleet.slots] == ["finished"] * 3 and stats["duplicates_dropped"] == 0
    # Concurrency: engines that sleep 150 ms a round leave the CPU free, so the three workers' rounds
    # overlap in time (2.2 s each; a start-up stagger of a second between them still leaves 1.5).
    mean, span = concurrency([s.stats["round_spans"] for s in fleet.slots])
    print(f"workers inside a round at once: {mean:.2f} on average over the {span:.2f} s of the run")
    assert mean >= 1.4, (mean, span)
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
        assert [r["frame_index"] for r in frames] == list(range(12 + i % 3)), name   # every frame once, in order
        assert all(r["worker"] == f"worker-{i // 7}" for r in frames)
        mine = [r["detections"] for r in expected if r.get("camera") == i and "detections" in r]
        assert [r["detections"] for r in frames] == mine, name
        assert sum(len(d) for d in mine) > 0


def test_status_command_metrics_and_config_errors(ray_cluster, videos, tmp_path, capsys):
    from segpost.service.metrics import Metrics, MetricsServer

    folder, paths, _ = videos
    config = write_configs(tmp_path, [("a", paths[0]), ("b", paths[1])], per_worker=2)
    metrics = Metrics(stale_seconds=60)
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    refused = []

    def second_fleet(fleet, stop):
        with pytest.raises(ValueError, match="another segpost fleet runs on this Ray cluster") as error:
            Fleet(load_fleet_config(config), str(tmp_path / "other")).start()
        refused.append(error)

    try:
        run_fleet(config, tmp_path / "out", metrics=metrics, during=second_fleet)
        assert refused
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
                            ({"cameras": [{"name": "a/b", "source": "x"}, {"name": "a_b", "source": "y"}]},
                             "would share the file a_b.jsonl"),
                            ({"cameras": [{"name": "fleet", "source": "x"}]}, "would share the file fleet.jsonl"),
                            ({"cameras": []}, "cameras: List should have at least 1 item"),
                            ({"gpus_per_worker": -1}, "gpus_per_worker: Input should be greater than or equal to 0"),
                            ({"standby_workers": -1}, "standby_workers: Input should be greater than or equal to 0"),
                            ({"standby_gpus": 1.5}, "standby_gpus: above 1 must be a whole number"),
                            ({"sink": {"per_camera": False, "shards": 2}}, "sink.shards: must be 1 with one merged file"),
                            ({"sink": {"fsync_seconds": 0}}, "sink.fsync_seconds: Input should be greater than or equal to 0.01"),
                            ({"decode": "fpga"}, "decode: Input should be 'auto', 'gpu' or 'cpu'"),
                            ({"sink": {"kafka": "x"}}, r"sink: unknown key\(s\) \['kafka'\]; known keys are"),
                            ({"workers": 3}, "unknown key")):
        (tmp_path / "bad.json").write_text(json.dumps({**bad, **change}))
        with pytest.raises(ValueError, match=message):
            load_fleet_config(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="startup_s is for the synthetic backend only"):
        build_from_config({"backend": "torch", "classes": ["a"], "startup_s": 1}, str(tmp_path), "cpu")
    assert main(["fleet", "--config", str(tmp_path / "bad.json")]) == 2
    assert "needs --config FLEET.json and --out PATH" in capsys.readouterr().err


def test_a_finished_worker_gives_its_resources_back(ray_cluster, videos, tmp_path):
    """Workers that finished their files are ended, so the cluster's CPUs (and GPU shares) serve the
    next fleet: two fleets in a row that each need 6 of the 8 CPUs (the second into one merged file)."""
    _, paths, _ = videos
    for run, out in enumerate(("out", "all.jsonl")):
        config = write_configs(tmp_path / f"run{run}", [("a", paths[0]), ("b", paths[1])], per_worker=2,
                               cpus_per_worker=6, sink={"per_camera": out == "out"})
        fleet, _ = run_fleet(config, tmp_path / f"run{run}" / out, max_seconds=60)
        assert [s.state for s in fleet.slots] == ["finished"], f"fleet {run} did not finish"
    with open(tmp_path / "run1" / "all.jsonl") as f:
        merged = [json.loads(line) for line in f]
    for camera, frames in (("a", 12), ("b", 13)):
        assert frame_indices([r for r in merged if r["camera"] == camera]) == list(range(frames))


def test_fleet_output_reaches_a_real_mqtt_broker(ray_cluster, videos, tmp_path):
    if mosquitto_path() is None:
        pytest.skip(f"no mosquitto broker (apt-get install mosquitto; {SERVICES})")
    from test_sinks import Subscriber

    _, paths, _ = videos
    broker = Mosquitto(str(tmp_path)).start()
    subscriber = Subscriber(broker.port)
    try:
        time.sleep(0.3)
        config = write_configs(tmp_path, [("a", paths[0]), ("b", paths[1])], per_worker=1,
                               sink={"mqtt": f"mqtt://127.0.0.1:{broker.port}/segpost/{{camera}}"})
        _, stats = run_fleet(config, tmp_path / "out")
        assert stats["mqtt"]["dropped"] == 0 and stats["mqtt"]["pending"] == 0
        expected = {("a", i) for i in range(12)} | {("b", i) for i in range(13)}

        def frames():
            with subscriber.lock:
                return {(m["camera"], m["frame_index"]) for _, m in subscriber.messages if "detections" in m}

        wait_until(lambda: frames() == expected, 30, "every frame on the broker")   # QoS 1: at least once
        assert {t for t, _ in subscriber.messages} == {"segpost/a", "segpost/b"}
    finally:
        subscriber.close()
        broker.stop()


def test_a_worker_whose_watchdog_fired_is_restarted_with_backoff_and_says_why(ray_cluster, videos, tmp_path):
    """An engine that never finishes a round within watchdog_seconds: each worker writes the
    watchdog's error event to its camera's file, exits, and is replaced after a growing delay."""
    _, _, longs = videos
    config = write_configs(tmp_path, [("long0", longs[0])], per_worker=1, busy=(3000, 0), watchdog_seconds=1,
                           restart_backoff=[0.3, 4])
    logged = []
    fleet, _ = run_fleet(config, tmp_path / "out", max_seconds=60,
                         during=lambda fleet, stop: wait_until(lambda: fleet.slots[0].restarts >= 3, 50,
                                                               "three restarts") and stop.set(),
                         log=logged.append)
    assert fleet.slots[0].restarts >= 3
    delays = [float(line.split("restarting in ")[1].split(" s")[0]) for line in logged if "restarting in" in line]
    assert delays[:3] == [0.3, 0.6, 1.2], logged
    events = [r for r in read_out(tmp_path / "out")["long0"] if r.get("event") == "error"]
    assert len(events) >= 3 and all(e["reason"] == "watchdog" and "more than 1 s" in e["message"] for e in events)
    assert not frame_indices(read_out(tmp_path / "out")["long0"])


def test_sigterm_exits_zero_with_the_output_flushed(videos, tmp_path):
    _, _, longs = videos
    config = write_configs(tmp_path, [(f"long{i}", p) for i, p in enumerate(longs)], per_worker=2, busy=(40, 10))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(out),
                                "--status-every", "1"], stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_until(lambda: out.exists() and sum(len(frame_indices(v)) for v in read_out(out, True).values()) >= 40, 120,
                   "40 frames written by the fleet")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)   # generous: Ray's own shutdown on a loaded machine
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped by signal" in stderr
    records = read_out(out)      # read_out checks every file ends with a whole line
    for name in (f"long{i}" for i in range(4)):
        indices = frame_indices(records[name])
        assert indices == list(range(len(indices))) and 0 < len(indices) < 150, name


def test_without_address_the_fleet_starts_its_own_ray_not_the_one_ray_last_knew(videos, tmp_path):
    """Ray's session file (ray_current_cluster in its temp folder) left by a killed cluster names a
    dead head; `segpost fleet` without --address must start its own instance, as serve does."""
    import shutil
    import tempfile

    folder, paths, _ = videos
    config = write_configs(tmp_path, [("cam00", paths[0])], per_worker=1)
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")   # short: Ray's socket paths live under it
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:9\n")                      # nothing listens there
        out = tmp_path / "out"
        process = subprocess.run([sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(out),
                                  "--max-seconds", "120"], capture_output=True, text=True, timeout=240,
                                 env=dict(os.environ, RAY_TMPDIR=ray_tmp, PYTHONUNBUFFERED="1"))
        assert process.returncode == 0, process.stderr[-3000:]
        assert frame_indices(read_out(out)["cam00"]) == list(range(12))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
