"""The records segpost writes: one JSON-ready dict per camera and round, and one per event."""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import numpy as np

from ..encodings import dense_mask


def detection_fields(class_name: str, score: float, box, track_id: Optional[int] = None, **extra) -> Dict[str, Any]:
    """A detection's record, the one place its fields are written (segpost run's lines, its
    predicted lines, segpost serve's answers): class, score (5 decimals), box (x0, y0, x1, y1
    pixels, 2 decimals), track_id when given, then ``extra`` (predicted, observed_frame, mask)."""
    record = {"class": class_name, "score": round(float(score), 5), "box": [round(float(v), 2) for v in box]}
    if track_id is not None:
        record["track_id"] = int(track_id)
    record.update(extra)
    return record


def rle_field(rle: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A COCO RLE (bytes ``counts``) as a record's mask: ASCII counts; None (it did not fit) stays."""
    return None if rle is None else {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def detection_record(class_name: str, frame_result, k: int, rle_mask: bool = True) -> Dict[str, Any]:
    """Detection ``k`` of one class's FrameResult (detection_fields): track_id when the pipeline
    tracks (-1: untracked), and with ``rle_mask`` the mask as rle_field writes it."""
    track_id = None if frame_result.track_ids is None else frame_result.track_ids[k]
    record = detection_fields(class_name, frame_result.scores[k], frame_result.boxes[k], track_id)
    if rle_mask:
        record["mask"] = rle_field(frame_result.masks[k])
    return record


def frame_record(round_index: int, camera: Any, source: str, frame_index: Optional[int], result, masks: str = "rle",
                 mask_dir: str = "masks", pts: Optional[float] = None, **extra) -> Dict[str, Any]:
    """One camera's detections of one round; ``masks``: rle (COCO RLE dicts), png (files written
    under ``mask_dir``, their paths) or none. ``source`` is shown as given (pass it redacted).
    When the pipeline tracks, each detection has its ``track_id`` (-1: untracked)."""
    detections = []
    for class_name, frame_result in result.by_class.items():
        for k in range(len(frame_result)):
            item = detection_record(class_name, frame_result, k, rle_mask=masks == "rle")
            if masks == "png":
                import cv2

                os.makedirs(mask_dir, exist_ok=True)
                path = os.path.join(mask_dir, f"r{round_index:06d}_c{camera}_{class_name}_{k}.png")
                cv2.imwrite(path, dense_mask(frame_result.masks, k).astype(np.uint8) * 255)
                item["mask"] = path
            detections.append(item)
    record = {"round": round_index, "camera": camera, "source": source, "frame_index": frame_index,
              "pts": None if pts is None else round(float(pts), 6), "frame_size": list(result.frame_size),
              "detections": detections}
    record.update(extra)
    return record


def event_record(event: str, camera: Any, source: str, message: str, **details) -> Dict[str, Any]:
    """An event: error, skipped, disconnected, reconnected (with the gap), finished, stopped."""
    return {"event": event, "camera": camera, "source": source, "message": message,
            "time": round(time.time(), 3), **details}


def track_event_record(event, camera: Any, source: str) -> Dict[str, Any]:
    """A segpost.TrackEvent as a line: track_started (confirmed; first_frame is when it was first
    seen) or track_ended (last_frame is its last matched frame). ``camera``: the camera's id."""
    return {"event": event.kind, "camera": camera, "source": source, "class": event.class_name,
            "track_id": event.track_id, "first_frame": event.first_frame, "last_frame": event.last_frame,
            "frames_seen": event.frames_seen, "time": round(time.time(), 3)}


def zone_event_record(event, camera: Any, source: str) -> Dict[str, Any]:
    """A segpost.zones.ZoneEvent as a line, beside the track events: zone_entered / zone_left /
    zone_dwell / zone_count / line_crossed with its zone, class, track_id (-1 for zone_count),
    frame and frame_time (when the new state began), and count / overcrowded (zone_count),
    direction (line_crossed), seconds (zone_dwell). ``camera``: the camera's id."""
    record = {"event": event.kind, "camera": camera, "source": source, "zone": event.zone, "class": event.class_name,
              "track_id": event.track_id, "frame": event.frame, "frame_time": round(event.time, 3)}
    for key in ("count", "overcrowded", "direction", "seconds"):
        value = getattr(event, key)
        if value is not None:
            record[key] = round(value, 3) if key == "seconds" else value
    record["time"] = round(time.time(), 3)
    return record
