"""Zone events beyond the JSON Lines file, with real servers: over MQTT (a real mosquitto broker)
on the camera's topic as the track events are, and as Prometheus gauges and counters on
``segpost run --metrics-port`` (a real HTTP scrape while the run goes)."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from brokers import Mosquitto, free_port, http_get, mosquitto_path
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")

SIZE = (240, 320)
ZONES = {"0": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
               {"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "max_count": 1}]}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    scene = Scene([SIZE], num_classes=2, seed=5)
    frames = [scene.render(6 * r)[0][0] for r in range(40)]
    path = str(tmp_path_factory.mktemp("zones_service") / "scene.mkv")   # lossless: the synthetic decoder sees clean colours
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-r",
                    "10", "-i", "-", "-c:v", "ffv1", path], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def setup_run(tmp_path, busy_ms=0):
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640],
              "busy_ms": [busy_ms, 0]}
    (tmp_path / "segpost.json").write_text(json.dumps(config))
    (tmp_path / "zones.json").write_text(json.dumps(ZONES))
    return ["--config", str(tmp_path / "segpost.json"), "--zones", str(tmp_path / "zones.json"), "--masks", "none"]


def segpost_run(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "segpost", "run", "--device", "cpu", "--decode", "cpu", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def zone_lines(lines):
    return [r for r in lines if r.get("event", "").startswith("zone_")]


@pytest.mark.skipif(mosquitto_path() is None, reason="no mosquitto broker (apt-get install mosquitto; .ci/run does)")
def test_zone_events_arrive_over_mqtt_on_the_cameras_topic(tmp_path, video):
    import paho.mqtt.client as mqtt

    broker = Mosquitto(str(tmp_path)).start()
    got, lock = [], threading.Lock()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="zones-subscriber")
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe("segpost/#", qos=1)

    def on_message(c, u, message):
        with lock:
            got.append((message.topic, json.loads(message.payload)))

    client.on_message = on_message
    try:
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        time.sleep(0.3)
        out = tmp_path / "out.jsonl"
        process = segpost_run(*setup_run(tmp_path), "--source", video, "--out", str(out),
                              "--mqtt", f"mqtt://127.0.0.1:{broker.port}/segpost/{{camera}}")
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        written = zone_lines(read_lines(out))
        assert {r["event"] for r in written} >= {"zone_entered", "zone_left", "zone_count"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len([m for _, m in got if m.get("event", "").startswith("zone_")]) >= len(written):
                    break
            time.sleep(0.1)
        with lock:
            messages = list(got)
        # Every zone line arrived (QoS 1: at least once), on the camera's topic, as the track events did.
        arrived = [json.dumps(m, sort_keys=True) for _, m in messages if m.get("event", "").startswith("zone_")]
        assert sorted(set(arrived)) == sorted({json.dumps(r, sort_keys=True) for r in written})
        topics = {t for t, m in messages if m.get("event", "").startswith(("zone_", "track_"))}
        assert topics == {"segpost/0"}, topics
        assert any(m.get("event") == "track_started" for _, m in messages)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()


def scrape(port):
    """{(name, labels as a sorted tuple): value} of the zone metrics, or None when nothing answers."""
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return None
    assert status == 200
    found = {}
    for name, labels, value in re.findall(r'^(segpost_zone_\w+)\{([^}]*)\} (\S+)$', body, re.M):
        found[(name, tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels))))] = float(value)
    return found


def test_zone_gauges_and_event_counters_on_the_metrics_port(tmp_path, video):
    pytest.importorskip("prometheus_client")
    out, port = tmp_path / "out.jsonl", free_port()
    process = segpost_run(*setup_run(tmp_path, busy_ms=150), "--source", video, "--out", str(out),
                          "--metrics-port", str(port))
    scrapes = []
    try:
        while process.poll() is None:   # scrape all along the run (~6 s of rounds at 150 ms)
            found = scrape(port)
            if found:
                scrapes.append(found)
            time.sleep(0.1)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    lines = zone_lines(read_lines(out))
    assert scrapes, "no scrape found the zone metrics while the run went"
    last = scrapes[-1]
    # Counters: per (zone, kind), never more than the lines the run wrote in the end, and rising.
    written = {}
    for r in lines:
        key = ("segpost_zone_events_total", (("camera", "0"), ("kind", r["event"]), ("zone", r["zone"])))
        written[key] = written.get(key, 0) + 1
    counters = {k: v for k, v in last.items() if k[0] == "segpost_zone_events_total"}
    assert counters and all(v <= written[k] for k, v in counters.items()), (counters, written)
    assert any(k[1][1] == ("kind", "zone_entered") and v > 0 for k, v in counters.items())
    for earlier, later in zip(scrapes, scrapes[1:]):
        assert all(later.get(k, 0) >= v for k, v in earlier.items() if k[0] == "segpost_zone_events_total")
    # Gauges: each scraped occupancy is a count the zone_count lines carried for its (zone, class),
    # and "all" (max_count 1) was overcrowded at some scrape iff its lines said so.
    counts = {}
    for r in lines:
        if r["event"] == "zone_count":
            counts.setdefault((r["zone"], r["class"]), set()).add(r["count"])
    occupancy = [(dict(k[1]), v) for s in scrapes for k, v in s.items() if k[0] == "segpost_zone_occupancy"]
    assert occupancy and any(v > 0 for _, v in occupancy)
    for labels, value in occupancy:
        assert value in counts[(labels["zone"], labels["class_name"])], (labels, value, counts)
    assert any(r.get("overcrowded") for r in lines if r["zone"] == "all")
    over = [(dict(k[1])["zone"], v) for s in scrapes for k, v in s.items() if k[0] == "segpost_zone_overcrowded"]
    assert over and {v for _, v in over} <= {0.0, 1.0}
    # "all" holds 2 of each class from the first frames to the end: a scrape saw it overcrowded;
    # "left" has no max_count: never.
    assert any(z == "all" and v == 1.0 for z, v in over) and not any(z == "left" and v for z, v in over)
    # Each (zone, class)'s scraped values come in the order its zone_count lines carried them.
    sequences = {}
    for r in lines:
        if r["event"] == "zone_count":
            sequences.setdefault((r["zone"], r["class"]), []).append(r["count"])
    for key, sequence in sequences.items():
        scraped = [v for s in scrapes for k, v in s.items()
                   if k[0] == "segpost_zone_occupancy" and (dict(k[1])["zone"], dict(k[1])["class_name"]) == key]
        at = 0
        for value in scraped:
            while at < len(sequence) and sequence[at] != value:
                at += 1
            assert at < len(sequence), (key, scraped, sequence)
    # The run ends before a last scrape: the same lines replayed into the runner's Metrics leave each
    # gauge at its zone's last zone_count (the events after the last scrape, the tracks' ends, are there).
    from prometheus_client import generate_latest
    from segpost.service.metrics import Metrics
    from segpost.zones.rules import ZoneEvent

    metrics = Metrics()
    for r in lines:
        metrics.observe_zone_event(r["camera"], ZoneEvent(r["event"], str(r["camera"]), r["zone"], r["class"],
                                                          r["track_id"], r["frame"], r["time"], r.get("count"),
                                                          r.get("overcrowded")))
    body = generate_latest(metrics.registry).decode()
    last = {}
    for r in lines:
        if r["event"] == "zone_count":
            last[(r["zone"], r["class"])] = r
    for (zone, name), r in last.items():
        labels = f'camera="0",class_name="{name}",zone="{zone}"'
        assert f"segpost_zone_occupancy{{{labels}}} {float(r['count'])}" in body, (zone, name, body)
        assert f"segpost_zone_overcrowded{{{labels}}} {float(r['overcrowded'])}" in body, (zone, name)
