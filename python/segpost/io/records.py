"""The records segpost writes: one JSON-ready dict per camera and round."""
from __future__ import annotations

import os

import numpy as np

from ..encodings import dense_mask


def frame_record(round_index: int, camera: int, url: str, frame_index, result, masks: str = "rle",
                 mask_dir: str = "masks") -> dict:
    """One camera's detections of one round as a JSON-ready dict; ``masks``: rle (COCO RLE dicts),
    png (files written under ``mask_dir``, their paths) or none."""
    detections = []
    for class_name, frame_result in result.by_class.items():
        for k in range(len(frame_result)):
            item = {"class": class_name, "score": round(float(frame_result.scores[k]), 5),
                    "box": [round(float(v), 2) for v in frame_result.boxes[k]]}
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
    return {"round": round_index, "camera": camera, "source": url, "frame_index": frame_index,
            "frame_size": list(result.frame_size), "detections": detections}
