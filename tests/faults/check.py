"""The invariants every history's output must keep, checked over its records (file order).

Per camera (records grouped by their "camera", each file in order):

- frame_repeated / frame_out_of_order: a file camera's frame indices (frame records and
  "skipped" events) strictly increase: each (camera, frame) is written once, in order; a live
  camera's too (its indices count on across reconnects);
- frame_missing: a file camera has no gap (a frame left out is named by an "error" or "skipped"
  event's frame_index), and one that must complete has every frame of its file (its "finished"
  event says how many);
- track_restarted: no track_started twice for one id;
- track_id_reused: an id in detections after its track_ended, an id in two classes, or an id
  handed out by a later incarnation of the camera's tracker (a new worker: its round counter starts
  again, so a camera's round goes down) that an earlier one had used;
- track_not_ended / track_ended_twice / track_end_without_start: each track_started has exactly
  one track_ended after it (when the history expects its tracks ended);
- reopened_after_finished: nothing of a camera after its "finished" event, no second "finished";
- torn_line: every file ends with a whole JSON line once its writers exited.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

KINDS = ("frame_repeated", "frame_out_of_order", "frame_missing", "track_restarted", "track_id_reused",
         "track_not_ended", "track_ended_twice", "track_end_without_start", "reopened_after_finished",
         "torn_line", "stuck", "drain_timeout", "bad_exit")


@dataclass(frozen=True)
class Violation:
    kind: str
    camera: Any
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} [camera {self.camera}]: {self.detail}"


@dataclass
class Expect:
    """What a camera's output must show. `live`: a stream (no completeness); `complete`: the file
    must be written whole, up to its "finished" event; `tracks_ended`: every track_started must
    have its track_ended (false where the history's faults leave tracks open by design)."""

    live: bool = False
    complete: bool = True
    tracks_ended: bool = True
    frames: Optional[int] = None     # the file's frame count, when known


@dataclass
class _Track:
    started: int = 0
    ended: int = 0
    cls: Optional[str] = None


def frame_of(record: Dict[str, Any]) -> Optional[int]:
    """The frame a record commits: a frame record or a "skipped" event (as the fleet's sink counts)."""
    if "detections" in record or record.get("event") == "skipped":
        return record.get("frame_index")
    return None


def _excused(record: Dict[str, Any]) -> List[int]:
    """Frames an event says were lost (an abandoned round's frames)."""
    if record.get("event") not in ("error", "skipped"):
        return []
    frames = record.get("frame_indices") or []
    if isinstance(record.get("frame_index"), int):
        frames = [record["frame_index"], *frames]
    return [f for f in frames if isinstance(f, int)]


def check_camera(camera: Any, records: List[Dict[str, Any]], expect: Expect) -> List[Violation]:
    out: List[Violation] = []

    def bad(kind: str, detail: str) -> None:
        out.append(Violation(kind, camera, detail))

    seen: List[int] = []
    excused: set = set()
    finished_at: Optional[int] = None
    finished_frames: Optional[int] = None
    tracks: Dict[int, _Track] = {}
    ended_ids: Dict[int, int] = {}        # id -> line of its track_ended
    incarnation, last_round = 0, None
    ids_of: Dict[int, int] = {}           # id -> the incarnation that used it first
    for line, record in enumerate(records):
        event = record.get("event")
        if finished_at is not None:
            what = "a second finished" if event == "finished" else (event or f"frame {record.get('frame_index')}")
            bad("reopened_after_finished", f"line {line} ({what}) after the camera's finished event at line "
                                           f"{finished_at}")
        if event == "finished":
            finished_at, finished_frames = line, record.get("frames")
            continue
        excused.update(_excused(record))
        frame = frame_of(record)
        if frame is not None:
            rnd = record.get("round")
            if "detections" in record and isinstance(rnd, int):
                if last_round is not None and rnd <= last_round:
                    incarnation += 1      # a new worker took the camera over: its round counter began again
                last_round = rnd
            if frame in seen:
                bad("frame_repeated", f"frame {frame} again at line {line}")
            elif seen and frame < seen[-1]:
                bad("frame_out_of_order", f"frame {frame} at line {line} after frame {seen[-1]}")
            seen.append(frame)
        for detection in record.get("detections") or ():
            tid = detection.get("track_id")
            if not isinstance(tid, int) or tid < 0:
                continue
            first = ids_of.setdefault(tid, incarnation)
            if first != incarnation:
                bad("track_id_reused", f"id {tid} of incarnation {first} handed out again by incarnation "
                                       f"{incarnation} (frame {frame}, line {line})")
                ids_of[tid] = incarnation
            if tid in ended_ids:
                bad("track_id_reused", f"id {tid} in frame {frame} (line {line}) after its track_ended "
                                       f"at line {ended_ids[tid]}")
                del ended_ids[tid]
            track = tracks.setdefault(tid, _Track())
            if track.cls is None:
                track.cls = detection.get("class")
            elif track.cls != detection.get("class"):
                bad("track_id_reused", f"id {tid} is a {track.cls} and a {detection.get('class')} (line {line})")
        if event in ("track_started", "track_ended") and isinstance(record.get("track_id"), int):
            tid = record["track_id"]
            track = tracks.setdefault(tid, _Track())
            if event == "track_started":
                if track.started:
                    bad("track_restarted", f"id {tid} started again at line {line}")
                track.started += 1
            else:
                if not track.started:
                    bad("track_end_without_start", f"id {tid} ended at line {line}, never started")
                elif track.ended:
                    bad("track_ended_twice", f"id {tid} ended again at line {line}")
                track.ended += 1
                ended_ids[tid] = line
    unique = sorted(set(seen))
    if not expect.live:
        lost = [f for f in range(unique[-1] + 1 if unique else 0) if f not in set(unique) | excused]
        if lost:
            bad("frame_missing", f"frames {_span(lost)} neither written nor named by an error event")
        total = finished_frames if finished_frames is not None else expect.frames
        if expect.complete:
            if finished_frames is None:
                bad("frame_missing", f"no finished event; {len(unique)} frames written"
                                     + (f" of {expect.frames}" if expect.frames else ""))
            elif total is not None and unique and unique[-1] < total - 1:
                bad("frame_missing", f"finished after frame {unique[-1]} of {total}")
    if expect.tracks_ended:
        for tid, track in sorted(tracks.items()):
            if track.started and not track.ended:
                bad("track_not_ended", f"id {tid} started, never ended")
    return out


def _span(frames: List[int]) -> str:
    return ", ".join(str(f) for f in frames[:8]) + (f" ... ({len(frames)} frames)" if len(frames) > 8 else "")


def check_output(by_camera: Dict[Any, List[Dict[str, Any]]], expect: Dict[Any, Expect]) -> List[Violation]:
    """Every camera of `expect` (a camera with no records is checked too: it must not be complete)."""
    violations = []
    for camera, e in expect.items():
        violations += check_camera(camera, by_camera.get(camera, []), e)
    return violations


def read_records(paths: List[str]) -> "tuple[Dict[Any, List[Dict[str, Any]]], List[Violation]]":
    """Records grouped by camera, files in the order given; a torn or unreadable line is a violation."""
    by_camera: Dict[Any, List[Dict[str, Any]]] = {}
    violations = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        cut = data.rfind(b"\n") + 1
        if data[cut:]:
            violations.append(Violation("torn_line", os.path.basename(path),
                                        f"the file ends inside a line: {data[cut:][:60]!r}"))
            data = data[:cut]
        for n, line in enumerate(data.splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                violations.append(Violation("torn_line", os.path.basename(path),
                                            f"line {n} is not JSON: {line[:60]!r}"))
                continue
            by_camera.setdefault(record.get("camera"), []).append(record)
    return by_camera, violations
