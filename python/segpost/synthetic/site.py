"""Site-like synthetic cameras for the on_change schedule (issue 32), at a camera's full rate
(25 fps), with exact truth per frame in the tracking world's form (tracking.TrackTruth).

Kinds: ``static`` (two parked objects; a third arrives, stays still, and leaves: nothing moves
most of the time), ``arrive_leave`` (objects arrive one after the other, stay and work in place,
a few pixels to and fro, then leave) and ``busy`` (three objects moving all the time). Every
camera has a slow light drift (the whole frame brighter and darker by a few levels over tens of
seconds) and per-pixel sensor noise redrawn every frame: neither may count as a change. Classes
are the tracking world's red ellipse (0) and green box (1); the decoder tells them apart by
colour, so the drift stays within its tolerance (a shade step is 12 levels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .scene import BACKGROUND, instance_rgb
from .tracking import SHAPES, SIZE, TrackTruth, _full_area

SITE_KINDS = ("static", "arrive_leave", "busy")
SITE_FPS = 25
DRIFT_LEVELS, DRIFT_PERIOD_S = 4.0, 40.0
NOISE_LEVELS = 2


@dataclass(frozen=True)
class Leg:
    """From frame t0 to t1 the object goes from p0 to p1 (straight, at constant speed)."""

    t0: int
    t1: int
    p0: Tuple[float, float]
    p1: Tuple[float, float]


@dataclass(frozen=True)
class SiteActor:
    """An object present from its first leg's t0 to its last leg's t1; ``work`` pixels of
    to-and-fro (period 1 s) while it stands (legs with p0 == p1)."""

    class_index: int
    instance: int
    legs: Tuple[Leg, ...]
    work: float = 0.0

    def centre(self, frame: int) -> Optional[Tuple[float, float]]:
        for leg in self.legs:
            if leg.t0 <= frame < leg.t1:
                f = (frame - leg.t0) / max(leg.t1 - leg.t0, 1)
                x, y = leg.p0[0] + f * (leg.p1[0] - leg.p0[0]), leg.p0[1] + f * (leg.p1[1] - leg.p0[1])
                if self.work and leg.p0 == leg.p1:
                    x += self.work * np.sin(2 * np.pi * frame / SITE_FPS)
                return x, y
        return None

    def phase(self, frame: int) -> Optional[str]:
        """What the object does at ``frame``: "arrive" (coming into the frame), "leave" (going out
        of it), "stand" (in place, working if ``work``), "move" (across the frame); None: absent."""
        h, w = SIZE
        inside = lambda p: 0 <= p[0] < w and 0 <= p[1] < h   # noqa: E731
        for leg in self.legs:
            if leg.t0 <= frame < leg.t1:
                if leg.p0 == leg.p1:
                    return "stand"
                return "arrive" if not inside(leg.p0) else "leave" if not inside(leg.p1) else "move"
        return None

    def draw(self, image: np.ndarray, frame: int, colour) -> None:
        import cv2

        c = self.centre(frame)
        if c is None:
            return
        shape, (a, b) = SHAPES[self.class_index]
        cx, cy = int(round(c[0])), int(round(c[1]))
        if shape == "ellipse":
            cv2.ellipse(image, (cx, cy), (a, b), 0, 0, 360, colour, -1, cv2.LINE_8)
        else:
            cv2.rectangle(image, (cx - a, cy - b), (cx + a, cy + b), colour, -1, cv2.LINE_8)


def _stand(t0, t1, p) -> Leg:
    return Leg(t0, t1, p, p)


def _script(kind: str, frames: int, rng) -> List[SiteActor]:
    s = SITE_FPS
    h, w = SIZE
    if kind == "static":
        third = frames // 3
        return [SiteActor(0, 0, (_stand(0, frames, (70.0, 70.0)),)),
                SiteActor(1, 0, (_stand(0, frames, (280.0, 170.0)),)),
                SiteActor(0, 2, (Leg(third, third + 2 * s, (-20.0, 190.0), (160.0, 150.0)),
                                 _stand(third + 2 * s, 2 * third, (160.0, 150.0)),
                                 Leg(2 * third, 2 * third + 2 * s, (160.0, 150.0), (380.0, 120.0))))]
    if kind == "arrive_leave":
        actors = []
        for j, (t, y) in enumerate(((0, 60.0), (frames // 4, 120.0), (frames // 2, 180.0))):
            stop = (100.0 + 80 * j, y)
            legs = [Leg(t, t + s, (-30.0, y), stop), _stand(t + s, min(t + frames // 3, frames), stop)]
            end = legs[-1].t1
            if end < frames:
                legs.append(Leg(end, min(end + s, frames), stop, (w + 30.0, y)))
            actors.append(SiteActor(j % 2, 2 * j, tuple(legs), work=3.0))
        return actors
    if kind == "busy":   # back and forth across the frame, all the time, at 1.5 to 4 px a frame
        actors = []
        for j in range(3):
            y, speed = 50.0 + 70 * j, rng.uniform(1.5, 4.0)
            span = int((w - 60) / speed)
            legs, t, forward = [], 0, bool(j % 2)
            while t < frames:
                a, b = (30.0, y), (w - 30.0, y)
                legs.append(Leg(t, t + span, a if forward else b, b if forward else a))
                t, forward = t + span, not forward
            actors.append(SiteActor(j % 2, 2 * j + 1, tuple(legs)))
        return actors
    raise ValueError(f"site kinds are {SITE_KINDS}, got {kind!r}")


class SiteScene:
    """``render(frame)`` gives BGR frames and their truth, one camera per kind, at SITE_FPS;
    deterministic in (kinds, frames, seed, frame)."""

    def __init__(self, kinds: Sequence[str] = SITE_KINDS, frames: int = 20 * SITE_FPS, seed: int = 0):
        unknown = [k for k in kinds if k not in SITE_KINDS]
        if unknown or not kinds:
            raise ValueError(f"site kinds are {SITE_KINDS}, got {list(kinds)}")
        self.kinds, self.frames, self.seed = tuple(kinds), int(frames), int(seed)
        rng = np.random.default_rng(seed)
        h, w = SIZE
        self._backgrounds = [np.clip(BACKGROUND + rng.integers(-3, 4, (h, w, 3)), 0, 255).astype(np.int16)
                             for _ in kinds]
        self.actors = [tuple(_script(k, self.frames, rng)) for k in kinds]
        self._phase = rng.uniform(0, 2 * np.pi, len(kinds))
        self._full = {c: _full_area(c) for c in (0, 1)}

    @property
    def num_classes(self) -> int:
        return 2

    def full_area(self, class_index: int) -> float:
        return self._full[class_index] / (SIZE[0] * SIZE[1])

    def moving(self, camera: int, frame: int) -> bool:
        """Whether any object of the camera moved since the frame before (the truth of "changed")."""
        return frame > 0 and any(a.centre(frame) != a.centre(frame - 1) for a in self.actors[camera])

    def render(self, frame: int) -> Tuple[List[np.ndarray], List[TrackTruth]]:
        frames, truths = [], []
        noise_rng = np.random.default_rng((self.seed, frame))
        for cam, actors in enumerate(self.actors):
            drift = DRIFT_LEVELS * np.sin(2 * np.pi * frame / (DRIFT_PERIOD_S * SITE_FPS) + self._phase[cam])
            image = self._backgrounds[cam].copy()
            labels = np.zeros(SIZE, np.uint8)
            for k, actor in enumerate(actors):
                actor.draw(image, frame, instance_rgb(actor.class_index, actor.instance)[::-1])
                actor.draw(labels, frame, k + 1)
            image = image + int(round(drift)) + noise_rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, image.shape)
            frames.append(np.clip(image, 0, 255).astype(np.uint8))
            counts = np.bincount(labels.ravel(), minlength=len(actors) + 1)[1:]
            truths.append(TrackTruth(cam, self.kinds[cam], labels, actors, tuple(int(v) for v in counts),
                                     tuple(self._full[a.class_index] for a in actors)))
        return frames, truths
