"""The fleet's sink: one Ray actor that every worker sends its records to.

Delivery is at-least-once from the workers (a worker resends what it cannot confirm) and
exactly-once here: a frame record (or the "skipped" event of a frame) is written only when its
frame index is above the last one written for its camera; anything else is a duplicate and is
dropped (counted). Workers send each camera's frames in order, so every camera's output is in
frame order. ``committed()`` tells the coordinator where a restarted worker resumes. Files are
flushed at least every second and fsynced at close.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional

from ..io.sinks import JsonLinesSink, MqttSink, Sink


def _file_name(camera: Any) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(camera)) + ".jsonl"


class RecordSink:
    """`out`: a folder (one JSON Lines file per camera, plus fleet.jsonl for events of no camera)
    or, with per_camera False, one merged file. `mqtt`: also publish every record."""

    def __init__(self, out: str, per_camera: bool = True, mqtt: Optional[str] = None, flush_seconds: float = 1.0):
        self.out, self.per_camera = out, per_camera
        if per_camera:
            os.makedirs(out, exist_ok=True)
        self._files: Dict[Any, JsonLinesSink] = {}
        self._mqtt = MqttSink(mqtt) if mqtt else None
        self._lock = threading.Lock()
        self._committed: Dict[Any, int] = {}
        self.written = self.duplicates = 0
        self._closed = threading.Event()
        self._flush_seconds = flush_seconds
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="segpost sink flush")
        self._flusher.start()

    def _file_for(self, camera: Any) -> Sink:
        key = camera if self.per_camera else None
        sink = self._files.get(key)
        if sink is None:
            path = os.path.join(self.out, _file_name(camera if camera is not None else "fleet")) if self.per_camera \
                else self.out
            sink = self._files[key] = JsonLinesSink(path)
        return sink

    def write_batch(self, records: List[Dict[str, Any]]) -> int:
        """Writes what is new; returns how many records were written."""
        written = 0
        with self._lock:
            for record in records:
                camera, index = record.get("camera"), record.get("frame_index")
                counts = "detections" in record or record.get("event") == "skipped"
                if counts and index is not None:
                    if index <= self._committed.get(camera, -1):
                        self.duplicates += 1
                        continue
                    self._committed[camera] = index
                self._file_for(camera).write(record)
                if self._mqtt is not None:
                    self._mqtt.write(record)
                written += 1
            self.written += written
        return written

    def committed(self) -> Dict[Any, int]:
        """Per camera, the last frame index written (a restarted worker resumes after it)."""
        with self._lock:
            return dict(self._committed)

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            stats = {"written": self.written, "duplicates_dropped": self.duplicates, "files": len(self._files)}
            if self._mqtt is not None:
                stats["mqtt"] = self._mqtt.stats()
            return stats

    def _flush_loop(self) -> None:
        while not self._closed.wait(self._flush_seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            for sink in self._files.values():
                sink.flush()

    def close(self) -> Dict[str, Any]:
        """Flush, fsync and close every file (and the MQTT sink); returns the final stats."""
        self._closed.set()
        with self._lock:
            for sink in self._files.values():
                sink.close()
            if self._mqtt is not None:
                self._mqtt.close()
        return self.stats()
