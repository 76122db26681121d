"""What a JSON Lines output holds when segpost starts again: per camera, where its output ends.

The fleet's sink files, and `segpost run --resume`'s file, are their only state. At start-up
each file's end is read backwards (in blocks, never the whole file when its end says enough); a
last line without its newline (a write cut short by a crash) is truncated away. Per camera, the scan finds:

- ``last_frame``: the frame index of the last frame record (or "skipped" event): a restarted
  worker resumes after it, and anything at or below it is a duplicate;
- ``last_line``: the camera's last line, as written: a batch retried after the sink died (Ray
  re-sends it to the restarted sink) is recognised by it, so its lines are not written twice;
- ``next_track_id``: the largest ``track_id`` seen + 1. A tracker hands out ids in increasing
  order, to tentative tracks too, whose ids appear in detections before (or without) any
  ``track_started``: every id above the newest confirmed track's was handed out after that
  track's first frame, so the scan goes back to the frame record of the newest
  ``track_started``'s ``first_frame`` (or to a frame whose detections carry no track ids: no
  tracker);
- ``finished``: the camera's "finished" event comes after its last frame (only its tracks' ends
  may follow it): nothing left to do;
- ``last_time``: when the camera's output last changed (the file's modification time).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

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
    tracks_from: Dict[Any, int] = {}      # camera -> first_frame of its newest track_started
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
        frame = counted_frame(record)
        if camera in need_frame and record.get("event") == "finished":
            state.finished = True         # after the camera's last frame: only track ends follow it
        ids = list(track_ids(record))
        if ids:
            state.next_track_id = max(state.next_track_id, max(ids) + 1)
        if camera in need_tracks:
            if record.get("event") == "track_started" and camera not in tracks_from:
                first = record.get("first_frame")
                tracks_from[camera] = first if isinstance(first, int) else -1
            if ((record.get("detections") and not ids)
                    or (camera in tracks_from and frame is not None and frame < tracks_from[camera])):
                need_tracks.discard(camera)
        if frame is not None and camera in need_frame:
            state.last_frame = frame
            need_frame.discard(camera)
        if camera not in need_frame and camera not in need_tracks:
            open_cameras.discard(camera)
    return states


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


class OpenTracks:
    """Per camera, the confirmed tracks whose end is not written yet, from the records written
    (each as its track_started line, its last_frame and frames_seen kept up to date). Bounded by
    the trackers' pools: a track ends (and leaves) after max_age frames unseen."""

    def __init__(self):
        self._tracks: Dict[Any, Dict[int, Dict[str, Any]]] = {}
        # Per camera, the zones each track is inside (zone_entered without its zone_left), by
        # (track_id, zone, class) -> the entry: a lost worker's tracks leave them with their end.
        self._inside: Dict[Any, Dict[Tuple[Any, Any, Any], Dict[str, Any]]] = {}

    def follow(self, record: Dict[str, Any]) -> None:
        camera, event = record.get("camera"), record.get("event")
        if event in ("zone_entered", "zone_left"):
            key = (record.get("track_id"), record.get("zone"), record.get("class"))
            if event == "zone_entered":
                self._inside.setdefault(camera, {})[key] = record
            else:
                self._inside.get(camera, {}).pop(key, None)
            return
        if event == "track_started" and isinstance(record.get("track_id"), int):
            self._tracks.setdefault(camera, {})[record["track_id"]] = {
                **record, "last_frame": _int(record.get("last_frame"), -1),
                "frames_seen": _int(record.get("frames_seen"), 0)}
        elif event == "track_ended":
            self._tracks.get(camera, {}).pop(record.get("track_id"), None)
        elif self._tracks.get(camera) and "detections" in record:
            frame, tracks = record.get("frame_index"), self._tracks[camera]
            for detection in record["detections"]:
                track = tracks.get(detection.get("track_id"))
                if track is not None and isinstance(frame, int) and frame > track["last_frame"]:
                    track["last_frame"] = frame
                    track["frames_seen"] += 1

    def ends(self, camera: Any, reason: str) -> List[Dict[str, Any]]:
        """``track_ended`` records for the camera's open tracks (they leave when written)."""
        now = round(time.time(), 3)
        ends = [{**started, "event": "track_ended", "time": now, "reason": reason}
                for _, started in sorted(self._tracks.get(camera, {}).items())]
        return ends + self._zone_exits(camera, reason, now)

    def _zone_exits(self, camera: Any, reason: str, now: float) -> List[Dict[str, Any]]:
        """zone_left for every zone a track of the camera is still inside (at the track's last
        frame written; no frame_time: the sink does not know it), then each such (zone, class)'s zone_count: 0, as every track of the
        camera ends here (the camera's next worker counts its own tracks from 0)."""
        exits, counts = [], {}
        for (track_id, zone, cls), entered in sorted(self._inside.get(camera, {}).items(), key=lambda kv: str(kv[0])):
            track = self._tracks.get(camera, {}).get(track_id)
            frame = track["last_frame"] if track is not None and track["last_frame"] >= 0 else entered.get("frame")
            exits.append({"event": "zone_left", "camera": camera, "source": entered.get("source", ""), "zone": zone,
                          "class": cls, "track_id": track_id, "frame": frame, "time": now, "reason": reason})
            counts[(zone, cls)] = {"event": "zone_count", "camera": camera, "source": entered.get("source", ""),
                                   "zone": zone, "class": cls, "track_id": -1, "frame": frame, "count": 0,
                                   "overcrowded": False, "time": now, "reason": reason}
        return exits + [counts[k] for k in sorted(counts, key=str)]


def open_tracks(fd: int, cameras: Optional[Sequence[Any]] = None, tracks: Optional[OpenTracks] = None) -> OpenTracks:
    """The confirmed tracks the file started and did not end (of `cameras`, None: of every
    camera), read from its start into `tracks` (a new OpenTracks by default): a restart's one
    full read, since a track open at a crash may have started at any point before it."""
    tracks = OpenTracks() if tracks is None else tracks
    wanted = None if cameras is None else set(cameras)
    rest, at, size = b"", 0, os.fstat(fd).st_size
    while at < size:
        block = os.pread(fd, min(BLOCK * 16, size - at), at)
        at += len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for raw in lines:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if wanted is None or record.get("camera") in wanted:
                tracks.follow(record)
    return tracks
