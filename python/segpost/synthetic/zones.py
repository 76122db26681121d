"""A synthetic world for zones and lines: one camera per kind of scene, scripted paths, zones and
lines declared as a site would, and the ground-truth events of each object.

Truth is physical: an object is in a zone when at least the zone's ``min_overlap`` of its whole
body (drawn alone, hidden parts included) lies inside the polygon, pixel centres tested; a
change counts once it holds for the zone's ``inertia`` frames, stamped at its first frame (a
poke shorter than that is no entry). A line's side is the side holding the larger share of the
body within the segment's span. Dwell: a stay reaching ``dwell_seconds``. Counts: the
occupancy per (zone, class) after each frame's changes.

Kinds (every object moves inside the frame, the watched classes are red, green and blue):
  enter_leave  objects walking into and out of a rectangle and a pentagon, fully visible;
  hidden       a person standing in a zone near its edge while a wider object (not watched)
               passes in front of the part deeper inside: its box's bottom centre leaves the
               zone, most of what is visible of it does not; then it walks out;
  diagonal     long bars at 45 degrees: one sweeps past a zone's corner (its box's bottom
               centre inside, its pixels not), one goes down into the zone and back;
  wedge        a long bar lying along a triangular zone's long edge, just outside it, sliding
               along it (its box and its box's bottom centre are in the zone, its pixels are not),
               and an object going into the triangle and out;
  hover        an object poking into the zone for fewer than ``inertia`` frames, then staying,
               poking out briefly, and leaving;
  dwell        stays longer and shorter than the zone's dwell_seconds;
  lines        objects (a bar among them) crossing a line both ways.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..zones import LineConfig, ZoneConfig, ZoneSet
from .scene import BACKGROUND, instance_rgb

KINDS = ("enter_leave", "hidden", "diagonal", "wedge", "hover", "dwell", "lines")
FPS = 10
SIZE = (240, 360)     # (H, W)
ROUNDS = 120
# Per class: shape and half extents (ellipse: half axes; rect: half sides; bar: half length, half width).
SHAPES = {0: ("ellipse", (24, 18)), 1: ("rect", (20, 30)), 2: ("bar", (60, 4)), 3: ("rect", (50, 45))}
CLASS_NAMES = ("red", "green", "blue", "yellow")
WATCHED = ("red", "green", "blue")


@dataclass(frozen=True)
class Path:
    """A coordinate through keyframes (round, value), linear between them, held past the ends."""

    keys: Tuple[Tuple[float, float], ...]

    def at(self, r: float) -> float:
        ts, vs = zip(*self.keys)
        return float(np.interp(r, ts, vs))


def _const(v: float) -> Path:
    return Path(((0, v),))


@dataclass(frozen=True)
class Body:
    class_index: int
    instance: int
    x: Path
    y: Path
    angle: float = 0.0    # bars: degrees, y down (45: from top-left to bottom-right)

    def draw(self, image: np.ndarray, r: int, colour) -> None:
        import cv2

        shape, (a, b) = SHAPES[self.class_index]
        cx, cy = self.x.at(r), self.y.at(r)
        if shape == "ellipse":
            cv2.ellipse(image, (int(round(cx)), int(round(cy))), (a, b), 0, 0, 360, colour, -1, cv2.LINE_8)
        elif shape == "rect":
            x, y = int(round(cx)), int(round(cy))
            cv2.rectangle(image, (x - a, y - b), (x + a - 1, y + b - 1), colour, -1, cv2.LINE_8)
        else:
            t = np.deg2rad(self.angle)
            along, across = np.array([np.cos(t), np.sin(t)]), np.array([-np.sin(t), np.cos(t)])
            corners = [np.array([cx, cy]) + sa * a * along + sb * b * across for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            cv2.fillConvexPoly(image, np.round(corners).astype(np.int32), colour, cv2.LINE_8)


@dataclass(frozen=True)
class Camera:
    kind: str
    bodies: Tuple[Body, ...]          # z order, back first
    items: Tuple[object, ...]         # ZoneConfig / LineConfig


@dataclass(frozen=True)
class TruthEvent:
    kind: str
    camera: str
    zone: str
    body: int            # index into the camera's bodies (-1: zone_count)
    class_name: str
    frame: int
    direction: Optional[str] = None
    count: Optional[int] = None


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _jitter(rng, v, spread):
    return v + rng.uniform(-spread, spread)


def _enter_leave(rng) -> Camera:
    h = SIZE[0]
    t = rng.integers(0, 6)
    red = Body(0, 2, Path(((5 + t, 50), (25 + t, 280), (55 + t, 280), (75 + t, 50))), _const(0.3 * h))
    green = Body(1, 3, Path(((10 + t, 200), (28 + t, 60), (70 + t, 60), (88 + t, 200))), _const(0.7 * h))
    zones = (ZoneConfig("right", _rect(0.55, 0.05, 0.95, 0.5), classes=WATCHED),
             ZoneConfig("pentagon", [[0.02, 0.5], [0.3, 0.45], [0.42, 0.7], [0.3, 0.97], [0.05, 0.95]], classes=WATCHED))
    return Camera("enter_leave", (red, green), zones)


def _hidden(rng) -> Camera:
    h = SIZE[0]
    t = int(rng.integers(0, 6))
    # Zone: x >= 180. The person (40 wide) stands at 165..205 (62% inside); the wall (100 wide)
    # then covers it from x = 190: what stays visible (165..190) is 40% inside, its centre outside.
    person = Body(1, 2, Path(((0, 60), (12 + t, 185), (72 + t, 185), (84 + t, 60))), _const(0.5 * h))
    wall = Body(3, 0, Path(((0, 410), (22 + t, 410), (35 + t, 240), (50 + t, 240), (63 + t, 410))), _const(0.5 * h))
    zones = (ZoneConfig("bay", _rect(0.5, 0.02, 0.98, 0.98), classes=WATCHED, min_overlap=0.2),)
    return Camera("hidden", (person, wall), zones)


def _diagonal(rng) -> Camera:
    t = int(rng.integers(0, 6))
    # Zone: x >= 180, y >= 144. Bar "/" (angle -45) sweeping along with its box bottom at 154.
    sweep = Body(2, 2, Path(((0, 50), (40 + t, 300), (80 + t, 50))), _const(112), angle=-45.0)
    # Bar "\" going down into the zone and back up.
    dive = Body(2, 5, _const(300), Path(((0, 50), (15 + t, 50), (35 + t, 190), (70 + t, 190), (90 + t, 50))), angle=45.0)
    zones = (ZoneConfig("corner", _rect(0.5, 0.6, 0.99, 0.99), classes=WATCHED),)
    return Camera("diagonal", (sweep, dive), zones)


def _wedge(rng) -> Camera:
    t = int(rng.integers(0, 6))
    # Zone: x + y >= 420 (pixels; the frame's lower-right triangle). The bar "/" lies along
    # x + y = 410, 6 px from the edge at its closest; its box is ~40% inside.
    cx = Path(((0, 215), (40 + t, 255), (80 + t, 215)))
    slider = Body(2, 2, cx, Path(((0, 410 - 215), (40 + t, 410 - 255), (80 + t, 410 - 215))), angle=-45.0)
    ellipse = Body(0, 3, _const(330), Path(((0, 30), (15 + t, 30), (35 + t, 200), (60 + t, 200), (80 + t, 30))))
    w, h = SIZE[1], SIZE[0]
    zones = (ZoneConfig("wedge", [[1.0, 60 / h], [1.0, 1.0], [180 / w, 1.0]], classes=WATCHED),)
    return Camera("wedge", (slider, ellipse), zones)


def _hover(rng) -> Camera:
    h = SIZE[0]
    # Shares in the zone (x >= 180) of the ellipse (48 wide) at these centres: ~0.13 and ~0.66;
    # steps of 20 px, which the tracker follows (a jump past the object's size would start a new track).
    out, inside = 165.0, 185.0
    keys, r = [(0, out)], 6 + int(rng.integers(0, 4))
    for _ in range(3):            # pokes of 2 frames (inertia 3): no entry
        keys += [(r, out), (r + 1, inside), (r + 2, inside), (r + 3, out)]
        r += 8
    keys += [(r, out), (r + 1, inside)]    # the entry
    r += 20
    keys += [(r, inside), (r + 1, out), (r + 2, out), (r + 3, inside)]   # a 2-frame poke out: no exit
    r += 20
    keys += [(r, inside), (r + 1, out), (r + 5, 120.0)]    # the exit
    body = Body(0, 3, Path(tuple(keys)), _const(0.5 * h))
    zones = (ZoneConfig("hover", _rect(0.5, 0.02, 0.98, 0.98), classes=WATCHED, inertia=3),)
    return Camera("hover", (body,), zones)


def _dwell(rng) -> Camera:
    h = SIZE[0]
    t = int(rng.integers(0, 6))
    long = Body(1, 2, Path(((5 + t, 60), (15 + t, 260), (55 + t, 260), (65 + t, 60))), _const(0.3 * h))   # 4 s in
    short = Body(0, 3, Path(((60 + t, 60), (70 + t, 260), (82 + t, 260), (92 + t, 60))), _const(0.72 * h))  # ~1.2 s in
    zones = (ZoneConfig("counter", _rect(0.55, 0.02, 0.98, 0.98), classes=WATCHED, dwell_seconds=2.0, max_count=1),)
    return Camera("dwell", (long, short), zones)


def _lines(rng) -> Camera:
    h = SIZE[0]
    t = int(rng.integers(0, 6))
    green = Body(1, 2, Path(((5 + t, 80), (20 + t, 280), (50 + t, 280), (65 + t, 80))), _const(0.3 * h))
    red = Body(0, 3, Path(((10 + t, 290), (25 + t, 70), (60 + t, 70), (75 + t, 290))), _const(0.62 * h))
    bar = Body(2, 2, Path(((30 + t, 60), (55 + t, 300), (95 + t, 300), (115 + t, 60))), _const(0.8 * h - 10), angle=-30.0)
    lines = (LineConfig("door", [[0.5, 0.05], [0.5, 0.97]], inward="right", classes=WATCHED),)
    return Camera("lines", (green, red, bar), lines)


_SCRIPTS = {"enter_leave": _enter_leave, "hidden": _hidden, "diagonal": _diagonal, "wedge": _wedge, "hover": _hover,
            "dwell": _dwell, "lines": _lines}


class ZoneWorld:
    """``render(r)``: BGR frames and per-camera label maps of the visible pixels (0 background,
    k + 1 body k); ``truth_events(rounds)``: the ground truth. Cameras are keyed "0", "1", ..."""

    def __init__(self, kinds: Sequence[str] = KINDS, seed: int = 0, noise: int = 3):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"zone world kinds are {KINDS}, got {list(kinds)}")
        self.kinds = tuple(kinds)
        rng = np.random.default_rng(seed)
        h, w = SIZE
        self.camera_sizes = [SIZE] * len(kinds)
        self._backgrounds = [np.clip(BACKGROUND + rng.integers(-noise, noise + 1, (h, w, 3)), 0, 255).astype(np.uint8)
                             for _ in kinds]
        self.cameras = [_SCRIPTS[k](rng) for k in kinds]
        self.zones = ZoneSet.from_value({str(c): list(cam.items) for c, cam in enumerate(self.cameras)},
                                        class_names=CLASS_NAMES)
        self._full = {c: int(self._alone(Body(c, 0, _const(180), _const(120), 45.0 if c == 2 else 0.0), 0).sum())
                      for c in SHAPES}

    @property
    def num_classes(self) -> int:
        return len(SHAPES)

    def full_area(self, class_index: int) -> float:
        return self._full[class_index] / (SIZE[0] * SIZE[1])

    def render(self, r: int) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        frames, labels = [], []
        for c, cam in enumerate(self.cameras):
            frame = self._backgrounds[c].copy()
            label = np.zeros(SIZE, np.uint8)
            for k, body in enumerate(cam.bodies):
                body.draw(frame, r, instance_rgb(body.class_index, body.instance)[::-1])
                body.draw(label, r, k + 1)
            frames.append(frame)
            labels.append(label)
        return frames, labels

    @staticmethod
    def _alone(body: Body, r: int) -> np.ndarray:
        canvas = np.zeros(SIZE, np.uint8)
        body.draw(canvas, r, 1)
        return canvas.astype(bool)

    def truth_events(self, rounds: int) -> List[TruthEvent]:
        h, w = SIZE
        ys, xs = np.mgrid[0:h, 0:w]
        centres = np.stack([(xs + 0.5) / w, (ys + 0.5) / h], -1).reshape(-1, 2)
        events: List[TruthEvent] = []
        for c, cam in enumerate(self.cameras):
            key = str(c)
            regions = {item.name: [pixel_polygon(poly, centres).reshape(h, w) for poly in item.regions()]
                       for item in cam.items}
            bodies = [[self._alone(b, r) for r in range(rounds)] for b in cam.bodies]
            occupancy: Dict[Tuple[str, str], List[int]] = {}
            for k, body in enumerate(cam.bodies):
                cls = CLASS_NAMES[body.class_index]
                for item in cam.items:
                    if item.classes and cls not in item.classes:
                        continue
                    shares = [[float((m & reg).sum()) / max(int(m.sum()), 1) for reg in regions[item.name]]
                              for m in bodies[k]]
                    if isinstance(item, ZoneConfig):
                        raw = [int(s[0] >= item.min_overlap) for s in shares]
                        changes = _confirmed_changes(raw, item.inertia, initial=0)
                        occ = occupancy.setdefault((item.name, cls), [0] * rounds)
                        state, since = 0, 0
                        for frame, value in changes + [(rounds, None)]:
                            if state == 1:
                                for f in range(since, frame):
                                    occ[f] += 1
                                if item.dwell_seconds is not None:
                                    at = since + int(np.ceil(item.dwell_seconds * FPS - 1e-9))
                                    if at < frame:
                                        events.append(TruthEvent("zone_dwell", key, item.name, k, cls, at))
                            if value is None:
                                break
                            events.append(TruthEvent("zone_entered" if value else "zone_left", key, item.name, k,
                                                     cls, frame))
                            state, since = value, frame
                    else:
                        raw = [None if s[0] + s[1] < item.min_overlap or s[0] == s[1] else (1 if s[0] > s[1] else -1)
                               for s in shares]
                        first = True
                        for frame, value in _confirmed_changes(raw, item.inertia, initial=0):
                            if not first:
                                events.append(TruthEvent("line_crossed", key, item.name, k, cls, frame,
                                                         direction="in" if value > 0 else "out"))
                            first = False
            for (zone, cls), occ in occupancy.items():
                previous = 0
                for f, n in enumerate(occ):
                    if n != previous:
                        events.append(TruthEvent("zone_count", key, zone, -1, cls, f, count=n))
                    previous = n
        return events


def _confirmed_changes(raw: Sequence[Optional[int]], inertia: int, initial: int) -> List[Tuple[int, int]]:
    """(first frame, new state) of each change that holds for ``inertia`` frames with evidence
    (None: no evidence, skipped)."""
    state, pending, streak, start, out = initial, None, 0, 0, []
    for f, v in enumerate(raw):
        if v is None:
            continue
        if v == state:
            streak = 0
            continue
        if streak and v == pending:
            streak += 1
        else:
            pending, streak, start = v, 1, f
        if streak >= inertia:
            state, streak = v, 0
            out.append((start, v))
    return out


def pixel_polygon(polygon: Sequence[Tuple[float, float]], points: np.ndarray) -> np.ndarray:
    """Which points (fractions, [n, 2]) lie inside the polygon: even-odd crossings, vectorised."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    n = len(polygon)
    for i in range(n):
        (xi, yi), (xj, yj) = polygon[i], polygon[i - 1]
        if yi == yj:
            continue
        straddle = (yi > y) != (yj > y)
        cross = xi + (y - yi) / (yj - yi) * (xj - xi)
        inside ^= straddle & (x < cross)
    return inside
