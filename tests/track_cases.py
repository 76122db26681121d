"""Hand-made engine outputs for the tracker tests: objects drawn as low-res mask logits, put into
the query slots of our choosing, run through real Postprocessors and a segpost.Tracker."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import segpost

MASK, FRAME, QUERIES = (64, 64), (240, 320), 16
INSIDE, OUTSIDE = 4.0, -4.0


def box_mask(x0: int, y0: int, x1: int, y1: int, size=MASK) -> np.ndarray:
    m = np.zeros(size, bool)
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


def bar_mask(cx: float, cy: float, length: float, thickness: float, angle_deg: float, size=MASK) -> np.ndarray:
    """A rotated rectangle (a bar) centred at (cx, cy)."""
    y, x = np.mgrid[0:size[0], 0:size[1]] + 0.5
    a = np.deg2rad(angle_deg)
    along = (x - cx) * np.cos(a) + (y - cy) * np.sin(a)
    across = -(x - cx) * np.sin(a) + (y - cy) * np.cos(a)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= thickness / 2)


def disc_mask(cx: float, cy: float, r: float, size=MASK) -> np.ndarray:
    y, x = np.mgrid[0:size[0], 0:size[1]] + 0.5
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Normalized xyxy of a low-res mask's pixels, as an engine would predict it."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    h, w = mask.shape
    return np.array([cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h], np.float32)


def engine_outputs(frames: Sequence[Sequence[Tuple[int, np.ndarray, float]]], size=MASK, queries=QUERIES,
                   dtype=np.float32):
    """frames[f]: (slot, mask, score) per object. Returns pred_logits, pred_boxes, pred_masks."""
    logits = np.full((len(frames), queries), -12.0, np.float32)
    boxes = np.zeros((len(frames), queries, 4), np.float32)
    masks = np.full((len(frames), queries) + tuple(size), OUTSIDE, np.float32)
    for f, objects in enumerate(frames):
        for slot, mask, score in objects:
            logits[f, slot] = np.log(score / (1 - score))
            boxes[f, slot] = mask_box(mask)
            masks[f, slot][mask] = INSIDE
    return logits, boxes, masks.astype(dtype)


class Rig:
    """Postprocessors (one per class) and a Tracker on the CPU twin, fed hand-made frames."""

    def __init__(self, config: segpost.TrackerConfig, classes: int = 1, cameras: int = 1, capacity: int = 32,
                 size=MASK, frame=FRAME, device: str = "cpu", **post):
        self.size, self.frame, self.cameras, self.device = size, frame, cameras, device
        self.posts = [segpost.Postprocessor(max_frames=cameras, num_queries=QUERIES, mask_size=size,
                                            capacity=capacity, max_frame_size=frame,
                                            **{"score_threshold": 0.05, **post}, device=device)
                      for _ in range(classes)]
        self.tracker = segpost.Tracker(config, cameras=cameras, class_names=[f"c{i}" for i in range(classes)],
                                       capacity=capacity, mask_size=size, device=device)

    def step(self, views: Sequence[Sequence[Dict[str, Tuple[np.ndarray, float]]]], cameras: Optional[List[int]] = None,
             frame_ids: Optional[List[int]] = None, rng: Optional[np.random.Generator] = None, dtype=np.float32):
        """views[f][c]: {name: (mask, score)} seen by frame f (camera cameras[f]) in class c. Names
        take query slots in order, or shuffled by `rng` (DETR slots are no identities).
        Returns ({(camera, class, name): track id}, events, results, outputs)."""
        cameras = list(range(len(views))) if cameras is None else cameras
        slots, outputs = {}, []
        for c, post in enumerate(self.posts):
            frames = []
            for f, view in enumerate(views):
                order = list(range(QUERIES)) if rng is None else list(rng.permutation(QUERIES))
                frames.append([(order[i], mask, score) for i, (name, (mask, score)) in enumerate(view[c].items())])
                slots.update({(cameras[f], c, order[i]): name for i, name in enumerate(view[c])})
            logits, boxes, masks = engine_outputs(frames, self.size, dtype=dtype)
            arrays = (logits, None, boxes, masks)
            if self.device == "cuda":
                import cupy

                arrays = tuple(None if a is None else cupy.asarray(a) for a in arrays)
            post.enqueue(*arrays, [self.frame] * len(views), class_id=c)
            self.tracker.enqueue(c, post, arrays[3], cameras)
            outputs.append((logits, boxes, masks))
        results = [post.result() for post in self.posts]
        ids, events = self.tracker.update(self.posts, frame_ids or [0] * len(views), [self.frame] * len(views))
        named = {}
        for c, result in enumerate(results):
            start = 0
            for f, frame in enumerate(result):
                for k in range(len(frame)):
                    named[(cameras[f], c, slots[(cameras[f], c, int(frame.query_ids[k]))])] = int(ids[c, start + k])
                start += len(frame)
        return named, events, results, outputs


def graded_field(size, cx, cy, radius, rng):
    """Logits falling from +3 at the centre through 0 at `radius`, with noise: the threshold decides."""
    y, x = np.mgrid[0:size[0], 0:size[1]] + 0.5
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return (3.0 * (1 - d / radius) + rng.normal(0, 0.3, size)).astype(np.float32)


def blob_rounds(size, dtype, rounds: int, cameras: int, classes: int, seed: int = 0):
    """Engine outputs of moving blobs (fast ones leave the map; some are missed now and then;
    query slots shuffled every frame): per round, per class, (pred_logits, pred_boxes, pred_masks)."""
    rng = np.random.default_rng(seed)
    h, w = size
    blobs = [[[(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-w / 8, w / 8), rng.uniform(-h / 8, h / 8),
                rng.uniform(4, 12)) for _ in range(4)] for _ in range(classes)] for _ in range(cameras)]
    for r in range(rounds):
        per_class = []
        for c in range(classes):
            logits = np.full((cameras, QUERIES), -12.0, np.float32)
            boxes = np.zeros((cameras, QUERIES, 4), np.float32)
            maps = np.full((cameras, QUERIES, h, w), -5.0, np.float32)
            for f in range(cameras):
                slots = rng.permutation(QUERIES)
                for i, (x, y, vx, vy, radius) in enumerate(blobs[f][c]):
                    if rng.random() < 0.15:
                        continue
                    cx, cy = x + vx * r, y + vy * r
                    logits[f, slots[i]] = 3.0
                    maps[f, slots[i]] = graded_field(size, cx, cy, radius, rng)
                    boxes[f, slots[i]] = np.clip([(cx - radius) / w, (cy - radius) / h, (cx + radius) / w,
                                                  (cy + radius) / h], 0, 1)
            per_class.append((logits, boxes, maps.astype(dtype)))
        yield per_class


def tracked_side(size, cameras: int, classes: int, device: str, config: segpost.TrackerConfig, **post):
    """One Postprocessor per class and their Tracker."""
    posts = [segpost.Postprocessor(max_frames=cameras, num_queries=QUERIES, mask_size=size, capacity=40,
                                   max_frame_size=FRAME, score_threshold=0.05, device=device, **post)
             for _ in range(classes)]
    tracker = segpost.Tracker(config, cameras=cameras, class_names=[str(c) for c in range(classes)], capacity=40,
                              mask_size=size, device=device)
    return posts, tracker


def run_round(posts, tracker, outputs, frame_id: int, to_device=None):
    """One round of blob_rounds' outputs: enqueue every class, wait, update. Returns (results, ids, events)."""
    cameras = outputs[0][0].shape[0]
    for c, (post, (logits, boxes, maps)) in enumerate(zip(posts, outputs)):
        if to_device is not None:
            logits, boxes, maps = (to_device(a) for a in (logits, boxes, maps))
        post.enqueue(logits, None, boxes, maps, [FRAME] * cameras, class_id=c)
        tracker.enqueue(c, post, maps, list(range(cameras)))
    results = [post.result() for post in posts]
    ids, events = tracker.update(posts, [frame_id] * cameras, [FRAME] * cameras)
    return results, ids, events
