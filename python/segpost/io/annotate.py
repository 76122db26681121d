"""Drawing results: masks tinted, boxes and labels (with track ids and trails when the pipeline
tracks), cameras tiled into one mosaic image."""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Optional, Sequence, Tuple

import numpy as np

from ..encodings import dense_mask
from ..pipeline import CameraResult

_TINTS = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0))
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


def mosaic(frames: Sequence[np.ndarray], results: Dict[int, CameraResult], tile=(270, 480), columns: int = 4,
           trails: Optional[Trails] = None) -> np.ndarray:
    """Cameras side by side, each annotated and resized to ``tile`` (H, W); missing ones black."""
    import cv2

    rows = (len(frames) + columns - 1) // columns
    canvas = np.zeros((rows * tile[0], min(columns, len(frames)) * tile[1], 3), np.uint8)
    for camera, frame in enumerate(frames):
        if frame is None:
            continue
        image = annotate(frame, results[camera], trails) if camera in results else frame
        r, c = divmod(camera, columns)
        canvas[r * tile[0]:(r + 1) * tile[0], c * tile[1]:(c + 1) * tile[1]] = cv2.resize(image, (tile[1], tile[0]),
                                                                                         interpolation=cv2.INTER_AREA)
    return canvas
