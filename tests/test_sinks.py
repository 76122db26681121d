"""Sinks: JSON Lines rotation and durability; MQTT against a real mosquitto broker on loopback,
including a broker restart in the middle of the stream."""
import json
import os
import threading
import time

import pytest

from brokers import Mosquitto, mosquitto_path
from segpost.io.sinks import JsonLinesSink, MqttSink, open_sink

needs_mosquitto = pytest.mark.skipif(mosquitto_path() is None, reason="no mosquitto broker (apt-get install "
                                     "mosquitto; .ci/run does)")


def records(n, start=0, camera=0):
    return [{"camera": camera, "frame_index": i, "detections": [{"class": "person", "score": 0.9}]}
            for i in range(start, start + n)]


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_json_lines_rotate_by_size_and_keep_whole_lines(tmp_path):
    path = str(tmp_path / "out" / "d.jsonl")
    sink = JsonLinesSink(path, rotate_bytes=2000)
    written = records(100)
    for record in written:
        sink.write(record)
    sink.close()
    files = sink.rotated + [path]
    assert len(sink.rotated) >= 3
    back = [r for f in files for r in read_lines(f)]           # every line parses: no half-written line
    assert back == written
    import os

    assert all(os.path.getsize(f) < 2000 + 200 for f in sink.rotated)


def test_json_lines_rotate_by_time_and_keep_only_the_newest(tmp_path):
    now = [1000.0]
    path = str(tmp_path / "d.jsonl")
    sink = JsonLinesSink(path, rotate_seconds=60, keep=2, clock=lambda: now[0])
    for i, record in enumerate(records(10)):
        now[0] += 20   # a new file every 3 records
        sink.write(record)
    sink.close()
    assert len(sink.rotated) == 2 and all(f.startswith(path + ".") for f in sink.rotated)
    kept = [r["frame_index"] for f in sink.rotated + [path] for r in read_lines(f)]
    assert kept == sorted(kept) and kept[-1] == 9


def test_json_lines_flush_is_visible_to_readers(tmp_path):
    path = str(tmp_path / "d.jsonl")
    sink = JsonLinesSink(path, flush_seconds=3600)
    sink.write({"a": 1})
    sink.flush()
    assert read_lines(path) == [{"a": 1}]
    sink.close()
    sink.close()   # twice is fine


def test_json_lines_to_dev_null_and_a_pipe(tmp_path):
    sink = JsonLinesSink("/dev/null")
    sink.write({"a": 1})
    sink.flush()
    sink.close()
    with pytest.raises(ValueError, match="/dev/null cannot be rotated"):
        JsonLinesSink("/dev/null", rotate_bytes=100)
    # a named pipe with a reader at the other end: every line arrives, and closing (which fsyncs a
    # regular file; a pipe refuses fsync) does not fail
    fifo = str(tmp_path / "records.pipe")
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="records.pipe cannot be rotated"):
        JsonLinesSink(fifo, rotate_seconds=10)
    received = []
    reader = threading.Thread(target=lambda: received.extend(open(fifo, encoding="utf-8").read().splitlines()),
                              daemon=True)
    reader.start()
    sink = JsonLinesSink(fifo, flush_seconds=3600)
    for n in range(3):
        sink.write({"n": n})
    sink.flush()
    sink.close()
    reader.join(timeout=10)
    assert not reader.is_alive() and [json.loads(line) for line in received] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_json_lines_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="rotate_bytes must be positive"):
        JsonLinesSink(str(tmp_path / "x"), rotate_bytes=0)
    with pytest.raises(ValueError, match="stdout cannot be rotated"):
        JsonLinesSink("-", rotate_seconds=10)
    with pytest.raises(ValueError, match="mqtt://"):
        MqttSink("mqtt:///no-host")
    assert isinstance(open_sink(str(tmp_path / "y.jsonl")), JsonLinesSink)


class Subscriber:
    """A QoS 1 subscriber with a persistent session, so it gets what was published while the
    broker restarted (as a real consumer would be configured)."""

    def __init__(self, port, topic="segpost/#"):
        import paho.mqtt.client as mqtt

        self.messages, self.lock = [], threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def wait_for(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len({(m["camera"], m["frame_index"]) for _, m in self.messages}) >= count:
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@needs_mosquitto
def test_mqtt_publishes_each_record_on_its_camera_topic(tmp_path):
    broker = Mosquitto(str(tmp_path)).start()
    subscriber = Subscriber(broker.port)
    try:
        time.sleep(0.3)
        sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}/segpost/{{camera}}/detections")
        assert sink.connected_at_start
        for record in records(20, camera="dock") + records(5, camera="gate"):
            sink.write(record)
        assert sink.flush(10)
        sink.close()
        assert subscriber.wait_for(25)
        topics = {t for t, _ in subscriber.messages}
        assert topics == {"segpost/dock/detections", "segpost/gate/detections"}
        dock = [m["frame_index"] for t, m in subscriber.messages if m["camera"] == "dock"]
        assert dock == list(range(20))
        assert sink.stats()["dropped"] == 0 and sink.stats()["pending"] == 0
    finally:
        subscriber.close()
        broker.stop()


@needs_mosquitto
def test_mqtt_loses_nothing_across_a_broker_restart_and_keeps_the_order(tmp_path):
    broker = Mosquitto(str(tmp_path)).start()
    subscriber = Subscriber(broker.port)
    sink = None
    try:
        time.sleep(0.3)
        sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}/segpost/{{camera}}", buffer=1000)
        for record in records(50):
            sink.write(record)
            time.sleep(0.002)
        assert subscriber.wait_for(50, timeout=10)
        broker.stop()                                   # the broker goes away mid-stream
        for record in records(150, start=50):          # the cameras go on: 150 records wait
            sink.write(record)
            time.sleep(0.002)
        assert sink.pending >= 100
        broker.start()                                  # back, on the same port
        assert sink.flush(30), sink.stats()
        assert subscriber.wait_for(200, timeout=30), len(subscriber.messages)
        received = [m["frame_index"] for _, m in subscriber.messages]
        first_seen = list(dict.fromkeys(received))      # QoS 1 may repeat the unacknowledged tail
        assert first_seen == list(range(200))
        assert sink.stats()["dropped"] == 0 and sink.stats()["connections"] >= 2
    finally:
        if sink is not None:
            sink.close(timeout=2)
        subscriber.close()
        broker.stop()


@needs_mosquitto
def test_mqtt_buffer_bounds_memory_and_counts_what_it_drops(tmp_path):
    broker = Mosquitto(str(tmp_path))   # never started: the broker is away from the start
    sink = MqttSink(f"mqtt://user:hunter2@127.0.0.1:{broker.port}/t", buffer=10, connect_timeout=0.5)
    try:
        assert not sink.connected_at_start and "hunter2" not in sink.shown_url
        for record in records(25):
            sink.write(record)
        stats = sink.stats()
        assert stats["pending"] == 10 and stats["dropped"] == 15
        broker.start()
        assert sink.flush(20), sink.stats()
    finally:
        sink.close(timeout=2)
        broker.stop()


def test_a_full_disk_leaves_whole_lines_only(tmp_path):
    """A write cut short by a file-size limit (as a full disk cuts it) is taken back: the file
    holds whole lines, and the error reaches the caller."""
    import resource
    import signal

    path = str(tmp_path / "out.jsonl")
    sink = JsonLinesSink(path, flush_seconds=3600)
    for i in range(10):
        sink.write({"frame_index": i, "pad": "x" * 100})
    sink.flush()
    size = os.path.getsize(path)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 250, old_limit[1]))   # room for 2 lines and a bit
        for i in range(10, 20):
            sink.write({"frame_index": i, "pad": "x" * 100})
        with pytest.raises(OSError):
            sink.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and len(text) == size
    assert [json.loads(line)["frame_index"] for line in text.splitlines()] == list(range(10))
    sink.write({"frame_index": 10})
    sink.close()
    with open(path) as f:
        assert json.loads(f.read().splitlines()[-1])["frame_index"] == 10
