"""A synthetic world for tracking: one camera per kind of scene in which identities are hard to
keep, with exact truth per frame (each object's identity, visible pixels and box).

Kinds: ``crossing`` (two pairs of same-class objects crossing each other, one passing in front),
``occlusion`` (objects passing behind a wide pillar, fully hidden for a few frames, and one in
front of it), ``leave_return`` (objects leaving the frame and coming back after ~0.5 to ~2 s),
``shared_box`` (two X's, each of two thin bars of one class crossing at a moving centre: the
two bars of an X share one bounding box) and ``slots`` (objects apart from each other: only the
decoder's query-slot permutation is in play).

Objects are drawn in z order; the truth of an object is what remains visible of it, as the
synthetic decoder sees it. Objects of one class that can touch have adjacent shades, so a cell
that mixes them reads as one of the two (scene.py's colour code: instance = shade). Every object
of a class has the same shape and size, so a class prompt can state the full area and the decoder
can score each instance by how much of it is visible (engines.prompt_for_class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .scene import BACKGROUND, _triangle, instance_rgb

KINDS = ("crossing", "occlusion", "leave_return", "shared_box", "slots")
FPS = 10          # the world's clock: rounds per second (speeds are in pixels per round)
SIZE = (240, 360)  # (H, W) of every camera
# Per class: shape and half extents (ellipse: half axes; rect: half sides; bar: half length, half width).
SHAPES = {0: ("ellipse", (16, 12)), 1: ("rect", (12, 17)), 2: ("bar", (45, 3)), 3: ("rect", (30, 70))}
CLASS_NAMES = ("red ellipse", "green box", "blue bar", "yellow pillar")


@dataclass(frozen=True)
class Motion:
    """A coordinate bouncing between lo and hi at ``speed`` units per round, from ``phase`` (0..2)."""

    lo: float
    hi: float
    phase: float = 0.0
    speed: float = 0.0

    def at(self, round_index: int) -> float:
        span = self.hi - self.lo
        return self.lo + span * _triangle(self.phase + self.speed * round_index / span) if span > 0 else self.lo


@dataclass(frozen=True)
class Actor:
    """One object: its class and shade (the identity within its camera), its path and its angle
    (bars only: the bar's angle in degrees, mirrored when ``mirror``)."""

    class_index: int
    instance: int
    x: Motion
    y: Motion
    angle: Motion = Motion(0.0, 0.0)
    mirror: bool = False

    def centre(self, round_index: int) -> Tuple[float, float]:
        return self.x.at(round_index), self.y.at(round_index)

    def draw(self, image: np.ndarray, round_index: int, colour) -> None:
        import cv2

        shape, (a, b) = SHAPES[self.class_index]
        cx, cy = (int(round(v)) for v in self.centre(round_index))
        if shape == "ellipse":
            cv2.ellipse(image, (cx, cy), (a, b), 0, 0, 360, colour, -1, cv2.LINE_8)
        elif shape == "rect":
            cv2.rectangle(image, (cx - a, cy - b), (cx + a, cy + b), colour, -1, cv2.LINE_8)
        else:
            theta = np.deg2rad(self.angle.at(round_index)) * (-1 if self.mirror else 1)
            along, across = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
            corners = [(cx, cy) + sa * a * along + sb * b * across for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            cv2.fillConvexPoly(image, np.round(corners).astype(np.int32), colour, cv2.LINE_8)


@dataclass(frozen=True)
class TrackTruth:
    """One camera's frame: a label map (0 background, k + 1 = objects[k]'s visible pixels)."""

    camera: int
    kind: str
    labels: np.ndarray
    objects: Tuple[Actor, ...]
    visible: Tuple[int, ...]      # visible pixels per object
    full_area: Tuple[int, ...]    # pixels of each object when whole

    def mask(self, k: int) -> np.ndarray:
        return self.labels == k + 1

    def visibility(self, k: int) -> float:
        return self.visible[k] / self.full_area[k]

    def identity(self, k: int) -> Tuple[int, int, int]:
        """(camera, class, instance): the same object keeps it through occlusion and absence."""
        return self.camera, self.objects[k].class_index, self.objects[k].instance

    def box(self, k: int) -> Optional[Tuple[int, int, int, int]]:
        """x0, y0, x1, y1 (exclusive) of the visible pixels, None when none are visible."""
        ys, xs = np.nonzero(self.mask(k))
        return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None


class TrackingScene:
    """``render(round_index)`` gives BGR frames and their truth, one camera per kind (kinds may
    repeat); deterministic in (kinds, seed, round_index)."""

    def __init__(self, kinds: Sequence[str] = KINDS, seed: int = 0, noise: int = 3):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"scene kinds are {KINDS}, got {list(kinds)}")
        self.kinds = tuple(kinds)
        self.camera_sizes = [SIZE] * len(kinds)
        rng = np.random.default_rng(seed)
        h, w = SIZE
        self._backgrounds = [np.clip(BACKGROUND + rng.integers(-noise, noise + 1, (h, w, 3)), 0, 255).astype(np.uint8)
                             for _ in kinds]
        self.actors: List[Tuple[Actor, ...]] = [tuple(_SCRIPTS[k](rng)) for k in kinds]   # in z order, back first
        self._full = {c: _full_area(c) for c in SHAPES}

    @property
    def num_classes(self) -> int:
        return len(SHAPES)

    def full_area(self, class_index: int) -> float:
        """A whole object of the class, as a fraction of the frame (for prompt_for_class)."""
        return self._full[class_index] / (SIZE[0] * SIZE[1])

    def render(self, round_index: int, into: Optional[Sequence[np.ndarray]] = None
               ) -> Tuple[List[np.ndarray], List[TrackTruth]]:
        frames, truths = [], []
        for cam, actors in enumerate(self.actors):
            frame = self._backgrounds[cam].copy() if into is None else into[cam]
            if into is not None:
                np.copyto(frame, self._backgrounds[cam])
            labels = np.zeros(SIZE, np.uint8)
            for k, actor in enumerate(actors):
                actor.draw(frame, round_index, instance_rgb(actor.class_index, actor.instance)[::-1])
                actor.draw(labels, round_index, k + 1)
            counts = np.bincount(labels.ravel(), minlength=len(actors) + 1)[1:]
            frames.append(frame)
            truths.append(TrackTruth(cam, self.kinds[cam], labels, actors, tuple(int(v) for v in counts),
                                     tuple(self._full[a.class_index] for a in actors)))
        return frames, truths


def _full_area(class_index: int) -> int:
    """Pixels of a whole object of the class (a bar at 45 degrees, the angles' middle)."""
    shape, (a, b) = SHAPES[class_index]
    canvas = np.zeros((4 * max(a, b) + 8, 4 * max(a, b) + 8), np.uint8)
    centre = canvas.shape[0] / 2
    Actor(class_index, 0, Motion(centre, centre), Motion(centre, centre), Motion(45.0, 45.0)).draw(canvas, 0, 1)
    return int(canvas.sum())


def _across(rng, lo: float, hi: float, speed: Tuple[float, float], start: Optional[float] = None) -> Motion:
    """A bouncing coordinate over [lo, hi] at a random speed, from a random (or given) phase."""
    return Motion(lo, hi, rng.uniform(0, 2) if start is None else start, rng.uniform(*speed))


def _crossing(rng) -> List[Actor]:
    """Red pair crossing horizontally (one passes in front, their rows 6 px apart); green pair
    crossing on diagonals in the lower half."""
    h, w = SIZE
    ra, (ga, gb) = SHAPES[0][1][0], SHAPES[1][1]
    speed = rng.uniform(4, 6)
    y0 = rng.uniform(0.25, 0.35) * h
    red = [Actor(0, 2 + i, Motion(ra + 2, w - ra - 3, i + rng.uniform(-0.1, 0.1), speed),
                 _across(rng, y0 + 6 * i - 3, y0 + 6 * i + 3, (0.3, 0.8))) for i in range(2)]
    green = [Actor(1, 4 + i, Motion(ga + 2, w - ga - 3, i + rng.uniform(-0.1, 0.1), rng.uniform(3, 5)),
                   Motion(h * 0.55, h - gb - 3, i, rng.uniform(1.5, 3))) for i in range(2)]
    return red + green


def _occlusion(rng) -> List[Actor]:
    """Two red objects passing behind a slow yellow pillar (hidden for a few frames), a green one
    moving up and down in front of it."""
    h, w = SIZE
    ra = SHAPES[0][1][0]
    pillar = Actor(3, 0, _across(rng, w * 0.4, w * 0.6, (0.5, 1.5)), Motion(h / 2, h / 2))
    red = [Actor(0, 2 + i, _across(rng, ra + 2, w - ra - 3, (4, 6)), Motion(h * (0.38 + 0.2 * i), h * (0.38 + 0.2 * i)))
           for i in range(2)]
    green = Actor(1, 4, _across(rng, w * 0.45, w * 0.55, (0.5, 1)), _across(rng, 20, h - 21, (3, 5)))
    return red + [pillar, green]


def _leave_return(rng) -> List[Actor]:
    """Objects whose paths overshoot the frame: out for ~0.5 s (red 3), ~1 s (green) or ~2 s (red 2)."""
    h, w = SIZE
    ra, gb = SHAPES[0][1][0], SHAPES[1][1][1]
    return [Actor(0, 2, Motion(-ra - rng.uniform(35, 50), w - ra - 3, rng.uniform(0, 2), 5), Motion(h * 0.3, h * 0.3)),
            Actor(0, 3, Motion(ra + 2, w + ra + rng.uniform(8, 14), rng.uniform(0, 2), 5), Motion(h * 0.7, h * 0.7)),
            Actor(1, 4, Motion(w * 0.5, w * 0.5), Motion(-gb - rng.uniform(15, 25), h - gb - 3, rng.uniform(0, 2), 4))]


def _shared_box(rng) -> List[Actor]:
    """Two X's of blue bars (shades 2/3 left, 5/6 right): the bars of an X turn like scissors
    about one moving centre, so they always share a bounding box."""
    h, w = SIZE
    length = SHAPES[2][1][0]
    actors = []
    for side, first in ((0, 2), (1, 5)):
        x = _across(rng, w * 0.5 * side + length + 2, w * 0.5 * (side + 1) - length - 3, (0.5, 2))
        y = _across(rng, length + 2, h - length - 3, (1, 3))
        angle = _across(rng, 25, 65, (1.5, 3))
        actors += [Actor(2, first + i, x, y, angle, mirror=bool(i)) for i in range(2)]
    return actors


def _slots(rng) -> List[Actor]:
    """Red, green and blue objects, each moving in its own cell of a 3 x 2 grid: they never touch."""
    h, w = SIZE
    cells = [(0, 1), (0, 6), (1, 3), (1, 7), (2, 1), (2, 5)]  # (class, instance)
    actors = []
    for k, (cls, inst) in enumerate(cells):
        a, b = SHAPES[cls][1]
        if SHAPES[cls][0] == "bar":
            a = b = a + 1   # a turning bar needs its length in both directions
        col, row = k % 3, k // 3
        x0, y0 = col * w / 3, row * h / 2
        x = _across(rng, x0 + a + 2, x0 + w / 3 - a - 3, (1, 3))
        y = _across(rng, y0 + b + 2, y0 + h / 2 - b - 3, (1, 3))
        actors.append(Actor(cls, inst, x, y, _across(rng, 0, 180, (2, 5))))
    return actors


_SCRIPTS: Dict[str, object] = {"crossing": _crossing, "occlusion": _occlusion, "leave_return": _leave_return,
                               "shared_box": _shared_box, "slots": _slots}
