"""Drawing results: masks tinted, boxes and labels, cameras tiled into one mosaic image."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from ..encodings import dense_mask
from ..pipeline import CameraResult

_TINTS = ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0))


def annotate(frame: np.ndarray, result: CameraResult) -> np.ndarray:
    import cv2

    out = frame.copy()
    for c, (name, detections) in enumerate(result.by_class.items()):
        tint = np.array(_TINTS[c % len(_TINTS)], np.uint16)
        for d in range(len(detections)):
            mask = dense_mask(detections.masks, d)
            out[mask] = ((out[mask].astype(np.uint16) + tint) // 2).astype(np.uint8)
            x0, y0, x1, y1 = (int(v) for v in detections.boxes[d])
            cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(v) for v in tint), 2)
            cv2.putText(out, f"{name} {detections.scores[d]:.2f}", (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def mosaic(frames: Sequence[np.ndarray], results: Dict[int, CameraResult], tile=(270, 480), columns: int = 4) -> np.ndarray:
    """Cameras side by side, each annotated and resized to ``tile`` (H, W); missing ones black."""
    import cv2

    rows = (len(frames) + columns - 1) // columns
    canvas = np.zeros((rows * tile[0], min(columns, len(frames)) * tile[1], 3), np.uint8)
    for camera, frame in enumerate(frames):
        if frame is None:
            continue
        image = annotate(frame, results[camera]) if camera in results else frame
        r, c = divmod(camera, columns)
        canvas[r * tile[0]:(r + 1) * tile[0], c * tile[1]:(c + 1) * tile[1]] = cv2.resize(image, (tile[1], tile[0]),
                                                                                         interpolation=cv2.INTER_AREA)
    return canvas
