"""Drawing results: masks tinted, boxes and labels (with track ids and trails when the pipeline
tracks), cameras tiled into one mosaic image."""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..encodings import dense_mask
from ..pipeline import CameraResult

_TINTS = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0))
ZONE_COLOUR = (255, 200, 0)      # BGR: a zone's outline (a line's too)
ZONE_LIT = (0, 220, 255)         # BGR: an occupied zone's outline and fill
ZONE_LIT_ALPHA = 0.35
TrailKey = Tuple[int, str, int]   # camera, class, track id


class Trails:
    """The last ``length`` box centres of every track, per camera; a track unseen for ``length``
    rounds is forgotten, so memory stays bounded."""

    def __init__(self, length: int = 30):
        self.length = length
        self._points: Dict[TrailKey, Deque[Tuple[int, int]]] = {}
        self._last_seen: Dict[TrailKey, int] = {}
        self._round = 0

    def update(self, cameras: Dict[int, CameraResult]) -> None:
        self._round += 1
        for camera, result in cameras.items():
            for name, detections in result.by_class.items():
                if detections.track_ids is None:
                    continue
                for box, track_id in zip(detections.boxes, detections.track_ids):
                    if track_id < 0:
                        continue
                    key = (camera, name, int(track_id))
                    centre = (int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2))
                    self._points.setdefault(key, deque(maxlen=self.length)).append(centre)
                    self._last_seen[key] = self._round
        for key in [k for k, seen in self._last_seen.items() if self._round - seen >= self.length]:
            del self._points[key], self._last_seen[key]

    def of(self, camera: int, name: str, track_id: int) -> Sequence[Tuple[int, int]]:
        return self._points.get((camera, name, track_id), ())


def annotate(frame: np.ndarray, result: CameraResult, trails: Optional[Trails] = None) -> np.ndarray:
    import cv2

    out = frame.copy()
    for c, (name, detections) in enumerate(result.by_class.items()):
        tint = np.array(_TINTS[c % len(_TINTS)], np.uint16)
        colour = tuple(int(v) for v in tint)
        for d in range(len(detections)):
            mask = dense_mask(detections.masks, d)
            out[mask] = ((out[mask].astype(np.uint16) + tint) // 2).astype(np.uint8)
            x0, y0, x1, y1 = (int(v) for v in detections.boxes[d])
            cv2.rectangle(out, (x0, y0), (x1, y1), colour, 2)
            label = f"{name} {detections.scores[d]:.2f}"
            if detections.track_ids is not None:
                track_id = int(detections.track_ids[d])
                label = f"{name} #{track_id} {detections.scores[d]:.2f}" if track_id >= 0 else label
                points = trails.of(result.camera, name, track_id) if trails is not None else ()
                if len(points) > 1:
                    cv2.polylines(out, [np.array(points, np.int32).reshape(-1, 1, 2)], False, (255, 255, 255), 2, cv2.LINE_AA)
            cv2.putText(out, label, (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


def draw_zones(image: np.ndarray, items: Sequence[Any], occupied: Iterable[str] = ()) -> np.ndarray:
    """A camera's zones and lines (segpost.zones ZoneConfig / LineConfig: fractions of the frame)
    drawn on ``image`` in place: each outlined, and a zone named in ``occupied`` lit (filled,
    ZONE_LIT blended at ZONE_LIT_ALPHA, and a thicker outline). Returns ``image``."""
    import cv2

    h, w = image.shape[:2]
    occupied = set(occupied)
    for item in items:
        if getattr(item, "polygon", None) is not None:
            points = np.array([[round(x * w), round(y * h)] for x, y in item.polygon], np.int32).reshape(-1, 1, 2)
            lit = item.name in occupied
            if lit:
                fill = np.zeros((h, w), np.uint8)
                cv2.fillPoly(fill, [points], 1)
                inside = fill.astype(bool)
                image[inside] = (image[inside] * (1 - ZONE_LIT_ALPHA) +
                                 np.array(ZONE_LIT, np.float32) * ZONE_LIT_ALPHA).astype(np.uint8)
            cv2.polylines(image, [points], True, ZONE_LIT if lit else ZONE_COLOUR, 3 if lit else 1, cv2.LINE_AA)
            anchor = (int(points[:, 0, 0].min()) + 3, int(points[:, 0, 1].min()) + 14)
        else:
            (ax, ay), (bx, by) = item.line
            a, b = (round(ax * w), round(ay * h)), (round(bx * w), round(by * h))
            cv2.line(image, a, b, ZONE_COLOUR, 2, cv2.LINE_AA)
            anchor = (min(a[0], b[0]) + 3, min(a[1], b[1]) + 14)
        cv2.putText(image, item.name, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.45, ZONE_COLOUR, 1, cv2.LINE_AA)
    return image


def mosaic(frames: Sequence[np.ndarray], results: Dict[int, CameraResult], tile=(270, 480), columns: int = 4,
           trails: Optional[Trails] = None,
           zones: Optional[Dict[int, Tuple[Sequence[Any], Iterable[str]]]] = None) -> np.ndarray:
    """Cameras side by side, each annotated and resized to ``tile`` (H, W); missing ones black.
    ``zones``: per camera, (its zones and lines, the names of those occupied): see draw_zones."""
    import cv2

    rows = (len(frames) + columns - 1) // columns
    canvas = np.zeros((rows * tile[0], min(columns, len(frames)) * tile[1], 3), np.uint8)
    for camera, frame in enumerate(frames):
        if frame is None:
            continue
        image = annotate(frame, results[camera], trails) if camera in results else frame
        if zones and camera in zones:
            image = draw_zones(image if image is not frame else frame.copy(), *zones[camera])
        r, c = divmod(camera, columns)
        canvas[r * tile[0]:(r + 1) * tile[0], c * tile[1]:(c + 1) * tile[1]] = cv2.resize(image, (tile[1], tile[0]),
                                                                                         interpolation=cv2.INTER_AREA)
    return canvas
