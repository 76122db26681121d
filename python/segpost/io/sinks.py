"""Where records go: JSON Lines files (rotated, fsynced) and an MQTT broker (buffered, replayed).

Every sink takes dict records through ``write``, is thread-safe, and makes its data durable in
``flush`` and ``close``. A record's text is one JSON object; nothing writes half a line.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from .secrets import redact


class Sink:
    def write(self, record: Dict[str, Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make what was written durable (on disk, or acknowledged by the broker)."""

    def close(self) -> None:
        self.flush()

    def stats(self) -> Dict[str, Any]:
        return {}


def dumps(record: Dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


class JsonLinesSink(Sink):
    """One JSON object per line. ``path`` "-" is stdout. Rotation: when the file passes
    ``rotate_bytes`` or is older than ``rotate_seconds``, it is fsynced and renamed to
    ``<path>.<UTC time>.<n>`` and a new file begins; ``keep`` bounds how many rotated files stay.
    Lines are written at least every ``flush_seconds`` (and past FLUSH_BYTES), each time with one
    write of whole lines; a write that fails (a full disk, a file-size limit) is cut back, so the
    file never holds half a line, and raises. The file is fsynced at rotation and close."""

    FLUSH_BYTES = 1 << 20

    def __init__(self, path: str, *, rotate_bytes: Optional[int] = None, rotate_seconds: Optional[float] = None,
                 keep: Optional[int] = None, flush_seconds: float = 1.0, clock: Callable[[], float] = time.time):
        for name, value in (("rotate_bytes", rotate_bytes), ("rotate_seconds", rotate_seconds), ("keep", keep)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if (path == "-" or (os.path.exists(path) and not os.path.isfile(path))) and (rotate_bytes or rotate_seconds):
            raise ValueError(f"{'stdout' if path == '-' else path} cannot be rotated: give a file path")
        self.path, self.rotate_bytes, self.rotate_seconds, self.keep = path, rotate_bytes, rotate_seconds, keep
        self._flush_seconds, self._clock = flush_seconds, clock
        self._lock = threading.Lock()
        self.rotated: List[str] = []
        self.lines = 0
        self._fd: Optional[int] = None      # None: stdout
        self._pending: List[bytes] = []
        self._pending_bytes = 0
        self._closed = False
        self._open()

    def _open(self) -> None:
        if self.path != "-":
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # fsync, rotation and cutting back apply to files; /dev/null or a pipe refuses fsync (EINVAL).
        self._regular = self.path != "-" and os.path.isfile(self.path)
        self._opened_at = self._clock()
        self._flushed_at = self._clock()
        self._bytes = os.fstat(self._fd).st_size if self._regular else 0

    def write(self, record: Dict[str, Any]) -> None:
        line = (dumps(record) + "\n").encode("utf-8")
        with self._lock:
            self._pending.append(line)
            self._pending_bytes += len(line)
            self._bytes += len(line)
            self.lines += 1
            now = self._clock()
            if (self.rotate_bytes and self._bytes >= self.rotate_bytes) or \
                    (self.rotate_seconds and now - self._opened_at >= self.rotate_seconds):
                self._rotate()
            elif now - self._flushed_at >= self._flush_seconds or self._pending_bytes >= self.FLUSH_BYTES:
                self._write_pending()

    def _write_pending(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._flushed_at = self._clock()
        if self._fd is None:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        size = os.fstat(self._fd).st_size if self._regular else 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            if self._regular:
                os.ftruncate(self._fd, size)   # whole lines only; the lost ones raise to the caller
                self._bytes = size
            raise

    def _sync(self) -> None:
        self._write_pending()
        if self._regular:
            os.fsync(self._fd)

    def _rotate(self) -> None:
        self._sync()
        os.close(self._fd)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        n = 0
        while os.path.exists(f"{self.path}.{stamp}.{n}"):
            n += 1
        target = f"{self.path}.{stamp}.{n}"
        os.replace(self.path, target)
        self.rotated.append(target)
        if self.keep is not None:
            while len(self.rotated) > self.keep:
                os.remove(self.rotated.pop(0))
        self._open()

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._sync()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._sync()
            finally:
                if self._fd is not None:
                    os.close(self._fd)

    def stats(self) -> Dict[str, Any]:
        return {"lines": self.lines, "rotated_files": len(self.rotated)}


class MqttSink(Sink):
    """One MQTT message per record (QoS 1) on ``topic`` (``{camera}`` is replaced by the record's
    camera). paho-mqtt keeps every message until the broker acknowledges it (PUBACK): while the
    broker is away, messages wait in a buffer of ``buffer`` messages and are sent in order when it
    returns, so nothing is lost across a broker restart shorter than the buffer. When the buffer
    is full, new records are dropped and counted (``stats()["dropped"]``) instead of blocking the
    cameras. QoS 1 is at-least-once: after a reconnection the unacknowledged tail is sent again,
    so a consumer may see a record twice (each carries its camera and frame index).

    ``url``: mqtt://[user[:password]@]host[:port]/topic/template (needs paho-mqtt:
    pip install segpost[mqtt])."""

    def __init__(self, url: str, *, buffer: int = 10000, client_id: Optional[str] = None, keepalive: int = 10,
                 connect_timeout: float = 10.0):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ValueError("the MQTT sink needs paho-mqtt (pip install segpost[mqtt])") from exc
        host, port, topic, user, password = _parse_mqtt_url(url)
        if buffer < 1:
            raise ValueError(f"the MQTT buffer must hold at least one message, got {buffer}")
        self._mqtt = mqtt
        self.shown_url = redact(url)
        self.topic, self.buffer_size = topic, buffer
        self._lock = threading.Condition()
        self._connected = False
        self.published = self.acknowledged = self.dropped = self.connections = 0
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "")
        if user is not None:
            self._client.username_pw_set(user, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(min_delay=1, max_delay=8)
        self._client.max_queued_messages_set(buffer)
        self._client.connect_async(host, port, keepalive=keepalive)
        self._client.loop_start()
        deadline = time.monotonic() + connect_timeout
        with self._lock:  # a wrong address shows at start, not as a silently filling buffer
            while not self._connected and time.monotonic() < deadline:
                self._lock.wait(0.05)
            self.connected_at_start = self._connected

    # paho's network thread calls these.
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        with self._lock:
            self._connected = not getattr(reason_code, "is_failure", False)
            self.connections += self._connected
            self._lock.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        with self._lock:
            self._connected = False
            self._lock.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            self.acknowledged += 1
            self._lock.notify_all()

    def write(self, record: Dict[str, Any], line: Optional[str] = None) -> None:
        """`line`: the record as dumps() gives it, when the caller has it already."""
        topic = self.topic.replace("{camera}", str(record.get("camera", "")))
        info = self._client.publish(topic, dumps(record) if line is None else line, qos=1)
        with self._lock:
            if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
            else:
                self.published += 1

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        with self._lock:
            return self.published - self.acknowledged

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the broker has acknowledged everything (True) or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.published > self.acknowledged and time.monotonic() < deadline:
                self._lock.wait(min(0.1, max(deadline - time.monotonic(), 0.0)))
            return self.published == self.acknowledged

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"pending": self.published - self.acknowledged, "published": self.published,
                    "acknowledged": self.acknowledged, "dropped": self.dropped, "connected": self._connected,
                    "connections": self.connections}


def _parse_mqtt_url(url: str) -> Tuple[str, int, str, Optional[str], Optional[str]]:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"MQTT sink {redact(url)!r}: expected mqtt://[user:password@]host[:port]/topic")
    topic = unquote(parts.path.lstrip("/")) or "segpost/{camera}"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname, parts.port or 1883, topic, user, password


def open_sink(target: str, **options) -> Sink:
    """A sink from a target: mqtt://... or a file path ("-": stdout)."""
    if target.startswith("mqtt://"):
        return MqttSink(target, **{k: v for k, v in options.items() if k in ("buffer", "client_id")})
    return JsonLinesSink(target, **{k: v for k, v in options.items() if k in ("rotate_bytes", "rotate_seconds", "keep")})
