"""segpost fleet across deaths, on Ray's multi-node test cluster (a head and two nodes on loopback):
a worker killed (with and without a warm standby), hung, or waiting for placement; a sink actor
killed; a node lost; `segpost fleet` itself SIGKILLed and started again. In every case each
(camera, frame) of the files is written once, in order, and a live camera notes its gap."""
import os
import signal
import subprocess
import sys
import time

import pytest

from brokers import RtspServer, http_get, rtsp_server_python
from fleet_cases import (LONG_FRAMES, SERVICES, assert_exactly_once, committed, fleet_services, frame_indices,
                         make_videos, read_out, resumed_at, run_fleet, track_ids, wait_until, write_configs)

ray = fleet_services()
from ray.cluster_utils import Cluster  # noqa: E402

from segpost.fleet.shards import sink_name  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU: the sinks need none) and two nodes of 2 CPUs; nodes lost are noticed in ~2 s."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4}})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    ray.init(address=cluster.address, namespace="segpost", log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
    # The cluster named itself in Ray's session file; left there, it would be what a later
    # ray.init(address=None) on this machine tries to join (a dead head).
    from ray._common.utils import get_ray_address_file

    assert not os.path.exists(get_ray_address_file(None)), "the test cluster left Ray's session file behind"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("failover"), short=3)


@pytest.fixture
def rtsp(videos):
    if rtsp_server_python() is None:
        pytest.skip(f"no GStreamer RTSP server (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0; {SERVICES})")
    server = RtspServer({"live": videos[2][0]}).start()
    yield server
    server.stop()


def kill_worker_after(fleet, index, frames, kill=lambda pid: os.kill(pid, signal.SIGKILL)):
    """Waits for `frames` frames of the group's first camera, kills its worker; returns (the time,
    the camera's last committed frame then)."""
    slot, camera = fleet.slots[index], fleet.slots[index].cameras[0].name
    wait_until(lambda: committed(fleet, camera) >= frames and "pid" in slot.stats, 90, f"{frames} frames of {camera}")
    last = committed(fleet, camera)
    kill(slot.stats["pid"])
    return time.monotonic(), last


def actor_exists(name):
    try:
        ray.get_actor(name, namespace="segpost")
        return True
    except ValueError:
        return False


def assert_live_gap(live, at_least):
    """A live camera's output across a restart: frame indices rise (a live stream skips to its newest
    frame, so they need not be consecutive), and one gap event sits between the last frame before
    and the first after, saying so."""
    indices = frame_indices(live)
    assert indices == sorted(set(indices)), indices
    gaps = [i for i, r in enumerate(live) if r.get("event") == "gap"]
    assert len(gaps) == 1, gaps
    gap, before, after = live[gaps[0]], frame_indices(live[:gaps[0]]), frame_indices(live[gaps[0]:])
    assert before and after and gap["last_frame_index"] == before[-1] and gap["frame_index_after"] == after[0]
    assert gap["gap_seconds"] >= at_least and gap["frames_missed"] is None and "resumed at" in gap["message"]


def failover(videos, folder, standby):
    """One group of two long cameras; its worker (start-up 3 s) killed after 20 frames. Returns the
    seconds from the kill to the group's next committed frame and the fleet's log."""
    cameras = [(f"long{i}", videos[2][i]) for i in range(2)]
    config = write_configs(folder, cameras, per_worker=2, busy=(20, 5), startup_s=3, standby_workers=standby,
                           cpus_per_worker=0.5, track=True)
    seen = {}

    def kill_and_time(fleet, stop):
        if standby:
            wait_until(lambda: fleet.standbys.has_ready(), 60, "a ready standby")
        seen["kill"], seen["last"] = kill_worker_after(fleet, 0, 20)
        wait_until(lambda: committed(fleet, "long0") > seen["last"] + 1, 60, "frames after the kill")
        seen["back"] = time.monotonic()
        if standby:   # a new standby is started behind the one used
            wait_until(lambda: len(fleet.standbys.members) == 1, 10, "a new standby")

    logged = []
    fleet, stats = run_fleet(config, folder / "out", during=kill_and_time, log=logged.append)
    records = assert_exactly_once(folder / "out", ["long0", "long1"])
    assert fleet.slots[0].restarts == 1 and stats["duplicates_dropped"] <= 2, stats   # at most a round in flight
    first = resumed_at(records["long0"])
    assert len(first) == 1 and seen["last"] < first[0] <= seen["last"] + 2, (first, seen)
    for camera in ("long0", "long1"):   # the replacement numbers tracks after the last id written
        before = track_ids(r for r in records[camera] if r.get("frame_index", -1) < first[0])
        after = track_ids(r for r in records[camera] if r.get("frame_index", -1) >= first[0])
        assert before and after and min(after) > max(before), (camera, before[-5:], after[:5])
        assert_every_track_ends_once(records[camera], lost_before=first[0])
    return seen["back"] - seen["kill"], logged


def assert_every_track_ends_once(records, lost_before):
    """Each track_started has one track_ended: the killed worker's open tracks get theirs from the
    sink (reason "worker lost"), at their last frame written before the replacement's first."""
    events = [r for r in records if r.get("event") in ("track_started", "track_ended")]
    starts = [e["track_id"] for e in events if e["event"] == "track_started"]
    ends = [e["track_id"] for e in events if e["event"] == "track_ended"]
    assert starts and sorted(starts) == sorted(ends) and len(set(ends)) == len(ends), (starts, ends)
    lost = [e for e in events if e.get("reason") == "worker lost"]
    assert lost and all(e["event"] == "track_ended" and e["last_frame"] < lost_before for e in lost), lost
    last_seen = {d["track_id"]: r["frame_index"] for r in records if "detections" in r for d in r["detections"]}
    assert all(e["last_frame"] == last_seen[e["track_id"]] for e in lost), (lost, last_seen)


def test_a_killed_worker_resumes_where_its_output_ends_and_a_standby_takes_over_much_faster(cluster, videos,
                                                                                           tmp_path):
    restart_s, _ = failover(videos, tmp_path / "restart", standby=0)
    standby_s, logged = failover(videos, tmp_path / "standby", standby=1)
    print(f"kill -> the group's next frame: {restart_s:.2f} s restarted, {standby_s:.2f} s with a standby")
    assert standby_s < 0.5 * restart_s, (standby_s, restart_s)
    assert "worker-0: a standby took over, resuming" in " ".join(logged), logged


def test_a_killed_sink_actor_loses_and_repeats_nothing(cluster, videos, tmp_path):
    """Two sink shards; one SIGKILLed, the other killed through Ray: both restart, recover from their
    files, and take the workers' retried batches."""
    cameras = [(f"long{i}", p) for i, p in enumerate(videos[2])]
    config = write_configs(tmp_path, cameras, per_worker=2, busy=(20, 5), sink={"shards": 2})
    pids = {}

    def kill_sinks(fleet, stop):
        pids["before"] = ray.get([sink.pid.remote() for sink in fleet.sinks])
        wait_until(lambda: committed(fleet, "long0") >= 30, 90, "30 frames")
        os.kill(pids["before"][0], signal.SIGKILL)
        wait_until(lambda: committed(fleet, "long0") >= 60, 90, "60 frames")
        ray.kill(fleet.sinks[1], no_restart=False)
        new_pids = lambda: [p for p in ray.get([sink.pid.remote() for sink in fleet.sinks])  # noqa: E731
                            if p not in pids["before"]]
        pids["after"] = wait_until(lambda: len(new_pids()) == 2 and new_pids(), 30, "both sinks restarted")

    fleet, stats = run_fleet(config, tmp_path / "out", during=kill_sinks)
    assert len(pids["after"]) == 2, pids
    assert_exactly_once(tmp_path / "out", [name for name, _ in cameras])
    assert [s.restarts for s in fleet.slots] == [0, 0]


def test_a_hung_worker_is_replaced_after_its_heartbeat_and_its_live_camera_notes_the_gap(cluster, videos, rtsp,
                                                                                         tmp_path):
    """A worker frozen (SIGSTOP): /healthz turns 503 once no round has finished for health_seconds,
    the coordinator replaces the worker after heartbeat_seconds; the live camera resumes at the
    stream's newest frame after a gap event, the file camera where its output ends."""
    from segpost.service.metrics import Metrics, MetricsServer

    cameras = [("live", rtsp.url("live")), ("long0", videos[2][0])]
    config = write_configs(tmp_path, cameras, per_worker=2, busy=(20, 5), heartbeat_seconds=3)
    metrics = Metrics(stale_seconds=1.0)
    server = MetricsServer(metrics, 0, host="127.0.0.1")
    health = lambda: http_get(f"http://127.0.0.1:{server.port}/healthz")[0]  # noqa: E731
    seen = {}

    def freeze(fleet, stop):
        wait_until(lambda: committed(fleet, "live") >= 5 and health() == 200, 60, "live frames, healthy")
        seen["stopped"] = fleet.slots[0].stats["pid"]
        kill_worker_after(fleet, 0, 0, kill=lambda pid: os.kill(pid, signal.SIGSTOP))
        seen["unhealthy"] = wait_until(lambda: health() == 503, 30, "/healthz 503")
        wait_until(lambda: fleet.slots[0].restarts == 1, 30, "the hung worker replaced")
        wait_until(lambda: committed(fleet, "long0") == LONG_FRAMES - 1 and health() == 200, 90,
                   "the file camera complete, healthy again")
        live = committed(fleet, "live")
        wait_until(lambda: committed(fleet, "live") >= live + 3, 30, "live frames after the restart")
        stop.set()

    try:
        fleet, _ = run_fleet(config, tmp_path / "out", during=freeze, metrics=metrics)
    finally:
        server.close()
        if "stopped" in seen:
            try:
                os.kill(seen["stopped"], signal.SIGKILL)
            except ProcessLookupError:   # the coordinator's kill got there first
                pass
    assert "no heartbeat for 3 s" in fleet.slots[0].last_error
    records = read_out(tmp_path / "out")
    assert frame_indices(records["long0"]) == list(range(LONG_FRAMES))
    assert_live_gap(records["live"], at_least=3.0)


def test_a_worker_waiting_for_placement_is_reported_not_killed(cluster, videos, tmp_path):
    """Three groups needing 2 CPUs each; the nodes hold two: the third waits for one to finish, is
    reported as waiting, and is never killed for it."""
    cameras = [("long0", videos[2][0]), ("long1", videos[2][1]), ("cam00", videos[1][0])]
    config = write_configs(tmp_path, cameras, per_worker=1, busy=(5, 0), cpus_per_worker=2, heartbeat_seconds=1)
    logged = []
    fleet, _ = run_fleet(config, tmp_path / "out", waiting_report_seconds=1.5, log=logged.append)
    assert [s.state for s in fleet.slots] == ["finished"] * 3 and [s.restarts for s in fleet.slots] == [0, 0, 0]
    last = max(fleet.slots, key=lambda s: s.stats["first_round_end"])
    others = [s for s in fleet.slots if s is not last]
    assert last.stats["first_round_end"] > min(s.stats["last_round_end"] for s in others)   # it waited its turn
    waiting = [line for line in logged if f"{last.name} has not started after 1.5 s" in line]
    assert len(waiting) == 1 and "it needs 0 GPU and 2 CPUs" in waiting[0], logged
    assert_exactly_once(tmp_path / "out", ["long0", "long1"])
    assert_exactly_once(tmp_path / "out", ["cam00"], frames=12)


def test_segpost_fleet_sigkilled_and_started_again_resumes_where_its_output_ends(cluster, videos, rtsp, tmp_path):
    """The driver killed outright (its sinks and workers die with it); the same command again on the
    same --out: file cameras continue after their last written frame, the live camera after a gap."""
    cameras = [("live", rtsp.url("live"))] + [(f"long{i}", p) for i, p in enumerate(videos[2][:3])]
    config = write_configs(tmp_path, cameras, per_worker=2, busy=(30, 5), sink={"shards": 2})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "segpost", "fleet", "--config", config, "--out", str(out),
               "--address", cluster[0].address]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until(lambda: out.exists() and all(len(frame_indices(read_out(out, True).get(n, []))) >= least
                                                for n, least in (("long0", 30), ("long1", 30), ("live", 3))), 120,
                   "30 frames of the file cameras and 3 of the live one")
    finally:
        first.kill()
        first.wait()
    wait_until(lambda: not any(actor_exists(sink_name(shard)) for shard in range(2)), 30,
               "Ray to end the killed fleet's sinks")
    before = {name: frame_indices(records) for name, records in read_out(out, running=True).items()}
    log = open(tmp_path / "second.log", "w+")
    second = subprocess.Popen(command, stderr=log, text=True, env=env)

    def done():
        log.seek(0)
        assert second.poll() is None, f"the second fleet exited: {log.read()[-3000:]}"
        records = read_out(out, running=True)
        live = records["live"]
        gap = next((i for i, r in enumerate(live) if r.get("event") == "gap"), len(live))
        return len(frame_indices(live[gap:])) >= 3 and \
            all(len(frame_indices(records[f"long{i}"])) == LONG_FRAMES for i in range(3))

    try:
        wait_until(done, 120, "the file cameras complete and the live camera going again after its gap")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
        log.seek(0)
        stderr = log.read()
        print(stderr[-3000:])
    assert second.returncode == 0, stderr[-3000:]
    assert "(0 duplicates dropped)" in stderr, stderr[-2000:]    # the new run read on after the old one's output
    records = assert_exactly_once(out, ["long0", "long1", "long2"])
    for name in ("long0", "long1"):
        assert len(resumed_at(records[name])) == 1 and resumed_at(records[name])[0] >= len(before[name])
    assert_live_gap(records["live"], at_least=0.5)


def test_a_lost_node_s_groups_resume_on_the_other_nodes(cluster, videos, tmp_path):
    """A node lost with all its processes (killed, not shut down): its camera groups are placed on
    the remaining nodes and resume where their output ends. (Last: the cluster keeps one node less.)"""
    cameras = [(f"long{i}", p) for i, p in enumerate(videos[2])]
    config = write_configs(tmp_path, cameras, per_worker=1, busy=(20, 5), cpus_per_worker=0.5,
                           sink={"shards": 2})
    _, nodes = cluster
    lost, logged = {}, []

    def lose_a_node(fleet, stop):
        wait_until(lambda: all(committed(fleet, name) >= 20 for name, _ in cameras), 90, "20 frames each")
        by_id = {node.node_id: node for node in nodes}
        victim = next(s.stats["node_id"] for s in fleet.slots if s.stats.get("node_id") in by_id)
        lost["node"] = victim
        lost["slots"] = [s.index for s in fleet.slots if s.stats.get("node_id") == victim]
        cluster[0].remove_node(by_id[victim], allow_graceful=False)

    fleet, stats = run_fleet(config, tmp_path / "out", during=lose_a_node, log=logged.append)
    records = assert_exactly_once(tmp_path / "out", [name for name, _ in cameras])
    assert lost["slots"] and stats["duplicates_dropped"] <= len(lost["slots"])
    for index in lost["slots"]:
        slot = fleet.slots[index]
        assert slot.restarts == 1 and slot.stats["node_id"] != lost["node"]
        name = slot.cameras[0].name
        # Where the coordinator told the new worker to start: after the sink's last frame then (a
        # frame the dying worker had in flight may land after that; the sink drops it).
        start = next(int(line.split(f"'{name}': ")[1].split("}")[0]) for line in logged if f"'{name}': " in line)
        assert resumed_at(records[name]) in ([start], [start + 1]), (name, start, resumed_at(records[name]))
