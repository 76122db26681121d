"""The fleet's sink: Ray actors (one, or one per shard of the cameras) that write every worker's
records exactly once per (camera, frame index), in frame order per camera.

Durable and idempotent, so that no death loses or repeats a record:
- ``write_batch`` writes each file's new lines with one ``write`` and returns only after it:
  a batch the sink acknowledged is in the operating system's hands and survives the sink
  process's death. Files are fsynced every ``fsync_seconds`` and at close, so a machine crash
  (power, kernel) can lose at most the last ``fsync_seconds`` of acknowledged lines; a torn last
  line is cut at the next start.
- The files are the state: at start-up (and at every restart of the actor, which Ray does by
  itself) the sink reads each camera's last frame, last line and largest track id from the
  files' ends (recovery.py). A worker's batch caught by the sink's death is re-sent by Ray to the
  restarted actor: lines already on disk are recognised (the camera's last line) and frames at or
  below the last written one are dropped as duplicates (counted), so a replacement worker that
  re-sends a frame is harmless too.
- ``committed_state()`` tells the coordinator where each camera resumes: its last frame index,
  the next track id, when its output last changed, and whether its file already ended.
- Tracks a dead worker left open get their end: the sink follows each camera's confirmed tracks
  (``track_started`` without its ``track_ended``: their class, first frame, last frame written
  and frames seen) and ``end_open_tracks`` writes a ``track_ended`` line for each, with a
  ``reason``, before the camera's next worker starts. A sink restarted by Ray, or by a restarted
  `segpost fleet`, reads its files whole once at start-up to find the tracks they left open.

Cameras go to shards by a stable hash of their name (``shard_of``), so that the records of a
camera always reach the same actor and file.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..io.recovery import CameraState, OpenTracks, counted_frame, open_tracks, recover, track_ids, truncate_torn_line
from ..io.sinks import MqttSink, dumps

FLEET_FILE = "fleet"   # the per-camera folder's file for records of no camera


def file_stem(camera: Any) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(camera))


def shard_of(camera: Any, shards: int) -> int:
    """A camera's sink shard: the same for a camera name on every machine and run."""
    return 0 if camera is None else zlib.crc32(str(camera).encode("utf-8")) % shards


class RecordSink:
    """`out`: a folder (one JSON Lines file per camera, plus fleet.jsonl for records of no
    camera) or, with per_camera False, one merged file. `cameras`: the names this sink writes
    (its shard's); their state is recovered from what `out` holds. `mqtt`: also publish every
    record written (QoS 1, at least once)."""

    def __init__(self, out: str, per_camera: bool = True, mqtt: Optional[str] = None,
                 cameras: Sequence[str] = (), fsync_seconds: float = 1.0):
        self.out, self.per_camera = out, per_camera
        os.makedirs(out if per_camera else os.path.dirname(os.path.abspath(out)), exist_ok=True)
        self._lock = threading.Lock()
        self._fds: Dict[str, int] = {}
        self._unsynced: set = set()
        self.written = self.duplicates = self.repeated = self.torn_bytes = 0
        self._state: Dict[Any, CameraState] = {}
        self._open_tracks = OpenTracks()
        self._camera_paths: Dict[Any, str] = {}
        for path, names in self._paths(list(cameras) + [None]).items():
            fd = self._fd(path)
            self.torn_bytes += truncate_torn_line(fd)
            states = recover(fd, names)
            self._state.update(states)
            if any(state.next_track_id > 0 for state in states.values()):   # a tracked camera's file
                open_tracks(fd, names, self._open_tracks)   # tracks an earlier sink or fleet left open
        self._mqtt = MqttSink(mqtt) if mqtt else None
        self._closed = threading.Event()
        self._fsync_seconds = fsync_seconds
        threading.Thread(target=self._fsync_loop, daemon=True, name="segpost sink fsync").start()

    def _path(self, camera: Any) -> str:
        path = self._camera_paths.get(camera)
        if path is None:
            path = self._camera_paths[camera] = (
                os.path.join(self.out, file_stem(FLEET_FILE if camera is None else camera) + ".jsonl")
                if self.per_camera else self.out)
        return path

    def _paths(self, cameras: List[Any]) -> Dict[str, List[Any]]:
        paths: Dict[str, List[Any]] = {}
        for camera in cameras:
            paths.setdefault(self._path(camera), []).append(camera)
        return paths

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        return fd

    def write_batch(self, records: List[Dict[str, Any]]) -> int:
        """Writes what is new (see the module docstring) and returns how many records that was."""
        with self._lock:
            return self._write(records)

    def _write(self, records: List[Dict[str, Any]], touch: bool = True) -> int:
        """touch: the records are the cameras' output (their last_time moves; a live camera's
        replacement reports the gap since then)."""
        lines = [dumps(record) for record in records]
        skip = self._already_written(records, lines)
        chunks: Dict[str, List[str]] = {}
        changed: Dict[Any, CameraState] = {}
        new: List[Tuple[Dict[str, Any], str]] = []
        for i, (record, line) in enumerate(zip(records, lines)):
            if i < skip.get(record.get("camera"), 0):
                continue
            camera = record.get("camera")
            state = changed.get(camera) or dataclasses.replace(self._state.get(camera) or CameraState())
            frame = counted_frame(record)
            if frame is not None and frame <= state.last_frame:
                self.duplicates += 1
                continue
            chunks.setdefault(self._path(camera), []).append(line)
            new.append((record, line))
            state.last_frame = frame if frame is not None else state.last_frame
            state.last_line = line
            # A file camera's "finished" follows its last frame; its tracks' ends may follow it.
            state.finished = record.get("event") == "finished" or (state.finished and frame is None)
            for track_id in track_ids(record):
                state.next_track_id = max(state.next_track_id, track_id + 1)
            changed[camera] = state
        self._append_all({path: "".join(line + "\n" for line in chunk).encode("utf-8") for path, chunk in chunks.items()})
        now = time.time()
        for camera, state in changed.items():
            state.last_time = now if touch else state.last_time
            self._state[camera] = state
        self.written += len(new)
        for record, line in new:
            self._open_tracks.follow(record)
            if self._mqtt is not None:
                self._mqtt.write(record, line)
        return len(new)

    def end_open_tracks(self, cameras: Sequence[Any], reason: str) -> int:
        """Writes ``track_ended`` (with ``reason``) for the open tracks of those of `cameras` this
        sink writes; returns how many. Called again, it finds them ended."""
        with self._lock:
            return self._write([end for camera in cameras for end in self._open_tracks.ends(camera, reason)],
                               touch=False)

    def _already_written(self, records: List[Dict[str, Any]], lines: List[str]) -> Dict[Any, int]:
        """Per camera, how many of its leading records in this batch are on disk already: a batch
        retried after the sink died holds its camera's last written line."""
        skip: Dict[Any, int] = {}
        for i, (record, line) in enumerate(zip(records, lines)):
            state = self._state.get(record.get("camera"))
            if state is not None and state.last_line == line:
                skip[record.get("camera")] = i + 1
        for camera, upto in skip.items():
            self.repeated += sum(1 for r in records[:upto] if r.get("camera") == camera)
        return skip

    def _append_all(self, chunks: Dict[str, bytes]) -> None:
        """One write per file (a short one is continued). A batch is all or nothing: when a write
        fails (a full disk, a file too large), every file of the batch is cut back to where it
        was, so no partial line stays behind and no file keeps lines the state does not count
        (the replacement worker re-sends the whole batch)."""
        done: List[Tuple[int, int]] = []
        try:
            for path, data in chunks.items():
                fd = self._fd(path)
                done.append((fd, os.fstat(fd).st_size))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                self._unsynced.add(path)
        except OSError:
            for fd, size in done:
                os.ftruncate(fd, size)
            raise

    def committed(self) -> Dict[Any, int]:
        """Per camera, the last frame index written."""
        with self._lock:
            return {camera: s.last_frame for camera, s in self._state.items()
                    if camera is not None and s.last_frame >= 0}

    def committed_state(self) -> Dict[Any, Dict[str, Any]]:
        """Per camera: last_frame (-1: none), next_track_id, last_time (wall clock of its last
        write, or its file's modification time), finished (its file camera ended)."""
        with self._lock:
            return {camera: s.public() for camera, s in self._state.items() if camera is not None}

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            stats = {"written": self.written, "duplicates_dropped": self.duplicates,
                     "repeated_lines_skipped": self.repeated, "torn_bytes_cut": self.torn_bytes,
                     "files": len(self._fds), "cpu_seconds": round(time.process_time(), 3)}
            if self._mqtt is not None:
                stats["mqtt"] = self._mqtt.stats()
            return stats

    def pid(self) -> int:
        return os.getpid()

    def _fsync_loop(self) -> None:
        while not self._closed.wait(self._fsync_seconds):
            self.fsync()

    def fsync(self) -> None:
        with self._lock:
            for path in self._unsynced:
                os.fsync(self._fds[path])
            self._unsynced.clear()

    def close(self) -> Dict[str, Any]:
        """fsync and close every file (and the MQTT sink); returns the final stats."""
        self._closed.set()
        self.fsync()
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._mqtt is not None:
                self._mqtt.close()
        return self.stats()

