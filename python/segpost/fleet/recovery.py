"""What the fleet's sink finds on disk when it starts: per camera, where its output ends.

The sink's files are its only state. At start-up each file's end is read backwards (in blocks,
never the whole file when its end says enough); a last line without its newline (a write cut
short by a crash) is truncated away. Per camera, the scan finds:

- ``last_frame``: the frame index of the last frame record (or "skipped" event): a restarted
  worker resumes after it, and anything at or below it is a duplicate;
- ``last_line``: the camera's last line, as written: a batch retried after the sink died (Ray
  re-sends it to the restarted sink) is recognised by it, so its lines are not written twice;
- ``next_track_id``: the largest ``track_id`` seen + 1 (a tracker's ids increase, so the newest
  ``track_started`` event holds the largest; the scan stops there, or at a frame whose detections
  carry no track ids: no tracker);
- ``finished``: the camera's last line is its file's "finished" event (nothing left to do);
- ``last_time``: when the camera's output last changed (the file's modification time).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence

BLOCK = 1 << 16


@dataclass
class CameraState:
    last_frame: int = -1
    next_track_id: int = 0
    last_line: Optional[str] = None
    last_time: Optional[float] = None
    finished: bool = False

    def public(self) -> Dict[str, Any]:
        return {"last_frame": self.last_frame, "next_track_id": self.next_track_id, "last_time": self.last_time,
                "finished": self.finished}


def counted_frame(record: Dict[str, Any]) -> Optional[int]:
    """The frame index a record commits (a frame record or a "skipped" event), else None."""
    if "detections" in record or record.get("event") == "skipped":
        return record.get("frame_index")
    return None


def track_ids(record: Dict[str, Any]) -> Iterator[int]:
    if isinstance(record.get("track_id"), int):
        yield record["track_id"]
    for detection in record.get("detections") or ():
        if isinstance(detection.get("track_id"), int):
            yield detection["track_id"]


def truncate_torn_line(fd: int) -> int:
    """Cuts a last line that lacks its newline; returns the bytes removed."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - BLOCK)
        block = os.pread(fd, end - start, start)
        if end == size and block.endswith(b"\n"):
            return 0
        cut = block.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return size - (start + cut + 1)
        end = start
    os.ftruncate(fd, 0)
    return size


def lines_backwards(fd: int) -> Iterator[bytes]:
    """The file's lines, last first (the file ends with a newline)."""
    end = os.fstat(fd).st_size
    rest = b""
    while end > 0:
        start = max(0, end - BLOCK)
        block = os.pread(fd, end - start, start) + rest
        lines = block.split(b"\n")
        rest = lines[0]
        for line in reversed(lines[1:]):
            if line:
                yield line
        end = start
    if rest:
        yield rest


def recover(fd: int, cameras: Sequence[Any]) -> Dict[Any, CameraState]:
    """The state of each of `cameras` found at the end of the open file `fd` (see the module
    docstring); cameras the file never mentions get a fresh state."""
    states = {camera: CameraState() for camera in cameras}
    mtime = os.fstat(fd).st_mtime
    open_cameras = set(cameras)           # still looking for something of these
    need_frame, need_tracks = set(cameras), set(cameras)
    for raw in lines_backwards(fd):
        if not open_cameras:
            break
        try:
            record = json.loads(raw)
        except ValueError:
            continue                      # not ours to judge: skipped, kept
        camera = record.get("camera")
        if camera not in open_cameras:
            continue
        state = states[camera]
        if state.last_line is None:
            state.last_line, state.last_time = raw.decode("utf-8"), mtime
            state.finished = record.get("event") == "finished"
        ids = list(track_ids(record))
        if ids:
            state.next_track_id = max(state.next_track_id, max(ids) + 1)
        if camera in need_tracks and (record.get("event") == "track_started" or
                                      (record.get("detections") and not ids)):
            need_tracks.discard(camera)
        frame = counted_frame(record)
        if frame is not None and camera in need_frame:
            state.last_frame = frame
            need_frame.discard(camera)
        if camera not in need_frame and camera not in need_tracks:
            open_cameras.discard(camera)
    return states
