"""A synthetic multi-camera scene with known ground truth, and the colour code the synthetic
engines read back (engines/synthetic.py): each class is a colour family, each instance a shade.

Colours are chosen so that a wrong preprocessing (BGR not swapped, bad normalization), a wrong
binding or a wrong postprocess turns into a missed or wrong detection, not a subtle offset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

BACKGROUND = 60          # grey level of the background, every channel (noise added around it)
PRIMARY, LOW = 230, 20   # the levels a class's template puts in its non-shade channels
SHADES = tuple(24 + 12 * j for j in range(8))  # instance j of a class: its shade channel holds SHADES[j]
# Per class: RGB template (None = the shade channel). The non-shade channels of any two classes
# differ by PRIMARY vs LOW somewhere, so no class's pixels pass another class's test.
CLASS_TEMPLATES = (
    (PRIMARY, LOW, None),      # red family
    (LOW, PRIMARY, None),      # green family
    (LOW, None, PRIMARY),      # blue family
    (PRIMARY, PRIMARY, None),  # yellow family
)
MAX_CLASSES = len(CLASS_TEMPLATES)
MAX_INSTANCES = len(SHADES)


def instance_rgb(class_index: int, instance: int) -> Tuple[int, int, int]:
    template = CLASS_TEMPLATES[class_index]
    return tuple(SHADES[instance] if level is None else level for level in template)


@dataclass(frozen=True)
class SceneObject:
    class_index: int
    instance: int                  # the shade; unique per class within a camera
    ellipse: bool
    x_range: Tuple[float, float]   # where its centre may go (its cell, less its radius)
    y_range: Tuple[float, float]
    phase: np.ndarray              # start position within the ranges, 0..1, per axis
    rx: float
    ry: float
    speed: np.ndarray              # fraction of the range per round, per axis (sign = direction)

    def centre(self, round_index: int) -> Tuple[int, int]:
        t = self.phase + self.speed * round_index
        return tuple(int(round(lo + (hi - lo) * _triangle(v)))
                     for (lo, hi), v in zip((self.x_range, self.y_range), t))


@dataclass(frozen=True)
class Truth:
    """Ground truth of one camera's frame: a label map (0 = background, k + 1 = objects[k])."""

    labels: np.ndarray
    objects: Tuple[SceneObject, ...]
    boxes: Tuple[Tuple[int, int, int, int], ...]   # per object: x0, y0, x1, y1 (exclusive), clipped

    def mask(self, k: int, box: Optional[Tuple[int, int, int, int]] = None) -> np.ndarray:
        """Object k's visible pixels, optionally only inside box (x0, y0, x1, y1)."""
        labels = self.labels if box is None else self.labels[box[1]:box[3], box[0]:box[2]]
        return labels == k + 1


class Scene:
    """Objects moving and bouncing in front of a noisy grey background, one view per camera.

    ``render(round_index)`` is deterministic in (seed, round_index), so a run can be replayed.
    Each camera shows ``num_classes * objects_per_class`` objects, one per grid cell.
    """

    def __init__(self, camera_sizes: Sequence[Tuple[int, int]], num_classes: int = 4, objects_per_class: int = 2,
                 seed: int = 0, noise: int = 3):
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"the synthetic scene has 1 to {MAX_CLASSES} classes, got {num_classes}")
        if not 0 <= objects_per_class <= MAX_INSTANCES:
            raise ValueError(f"objects_per_class must be in [0, {MAX_INSTANCES}], got {objects_per_class}")
        self.camera_sizes = [tuple(int(v) for v in s) for s in camera_sizes]
        self.num_classes = num_classes
        rng = np.random.default_rng(seed)
        self._backgrounds = [np.clip(BACKGROUND + rng.integers(-noise, noise + 1, (h, w, 3)), 0, 255).astype(np.uint8)
                             for h, w in self.camera_sizes]
        self._objects = [self._spawn(rng, h, w, objects_per_class) for h, w in self.camera_sizes]

    def _spawn(self, rng, h: int, w: int, per_class: int) -> List[SceneObject]:
        """Each object moves inside its own cell of a grid, so objects never touch: the truth is
        exact and every edge blends with the background only."""
        count = self.num_classes * per_class
        cols = max(1, int(np.ceil(np.sqrt(count * w / h))))
        rows = max(1, int(np.ceil(count / cols)))
        cell_w, cell_h = w / cols, h / rows
        objects = []
        for k, (c, j) in enumerate((c, int(j)) for c in range(self.num_classes)
                                   for j in rng.permutation(MAX_INSTANCES)[:per_class]):
            x0, y0 = (k % cols) * cell_w, (k // cols) * cell_h
            rx, ry = rng.uniform(0.2, 0.4) * cell_w, rng.uniform(0.2, 0.4) * cell_h
            objects.append(SceneObject(c, j, bool(rng.integers(2)), (x0 + rx + 1, x0 + cell_w - rx - 2),
                                       (y0 + ry + 1, y0 + cell_h - ry - 2), rng.uniform(0, 1, 2), rx, ry,
                                       rng.uniform(0.005, 0.02, 2) * rng.choice([-1, 1], 2)))
        return objects

    def render(self, round_index: int, into: Optional[Sequence[np.ndarray]] = None) -> Tuple[List[np.ndarray], List[Truth]]:
        """BGR uint8 frames and their truth at a round; ``into`` gives (H, W, 3) arrays to draw in."""
        import cv2

        frames, truths = [], []
        for cam, (h, w) in enumerate(self.camera_sizes):
            frame = self._backgrounds[cam].copy() if into is None else into[cam]
            if into is not None:
                np.copyto(frame, self._backgrounds[cam])
            labels = np.zeros((h, w), np.uint8)
            boxes = []
            for k, obj in enumerate(self._objects[cam]):
                bgr = instance_rgb(obj.class_index, obj.instance)[::-1]
                centre, axes = obj.centre(round_index), (int(round(obj.rx)), int(round(obj.ry)))
                boxes.append((max(centre[0] - axes[0], 0), max(centre[1] - axes[1], 0),
                              min(centre[0] + axes[0] + 1, w), min(centre[1] + axes[1] + 1, h)))
                for image, colour in ((frame, bgr), (labels, k + 1)):
                    if obj.ellipse:
                        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_8)
                    else:
                        cv2.rectangle(image, (centre[0] - axes[0], centre[1] - axes[1]),
                                      (centre[0] + axes[0], centre[1] + axes[1]), colour, -1, cv2.LINE_8)
            frames.append(frame)
            truths.append(Truth(labels, tuple(self._objects[cam]), tuple(boxes)))
        return frames, truths


def _triangle(t: float) -> float:
    """0 -> 1 -> 0 every 2 units: a position bouncing between the ends of its range."""
    t = t % 2.0
    return t if t <= 1.0 else 2.0 - t
