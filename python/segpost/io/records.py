"""The records segpost writes: one JSON-ready dict per camera and round, and one per event."""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import numpy as np

from ..encodings import dense_mask


def frame_record(round_index: int, camera: Any, source: str, frame_index: Optional[int], result, masks: str = "rle",
                 mask_dir: str = "masks", pts: Optional[float] = None, **extra) -> Dict[str, Any]:
    """One camera's detections of one round; ``masks``: rle (COCO RLE dicts), png (files written
    under ``mask_dir``, their paths) or none. ``source`` is shown as given (pass it redacted).
    When the pipeline tracks, each detection has its ``track_id`` (-1: untracked)."""
    detections = []
    for class_name, frame_result in result.by_class.items():
        for k in range(len(frame_result)):
            item = {"class": class_name, "score": round(float(frame_result.scores[k]), 5),
                    "box": [round(float(v), 2) for v in frame_result.boxes[k]]}
            if frame_result.track_ids is not None:
                item["track_id"] = int(frame_result.track_ids[k])
            if masks == "rle":
                rle = frame_result.masks[k]
                item["mask"] = None if rle is None else {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            elif masks == "png":
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
