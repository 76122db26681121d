"""Zones and lines of each camera, declared once and validated: one-line errors name the camera and
the zone."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

ZONE_RULES = ("mask", "bottom_centre")   # codes of csrc/zones/zones.h's ZoneRule
DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
MAX_VERTICES = 32    # csrc/zones/zones.h's kMaxZoneVertices
LINE_REACH = 2.0     # depth of a line's strips, in frame fractions: the whole frame on each side

Point = Tuple[float, float]


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def _points(where: str, what: str, value: Any, minimum: int) -> Tuple[Point, ...]:
    if not isinstance(value, (list, tuple)) or len(value) < minimum:
        count = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        raise ValueError(f"{where}: {what} needs at least {minimum} [x, y] points, got {count}")
    points = []
    for i, p in enumerate(value):
        if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(_number(v) for v in p):
            raise ValueError(f"{where}: {what} point {i} must be [x, y] numbers, got {p!r}")
        x, y = float(p[0]), float(p[1])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"{where}: {what} point {i} {[x, y]} is outside [0, 1] (coordinates are fractions of the frame)")
        points.append((x, y))
    return tuple(points)


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_meet(a: Point, b: Point, c: Point, d: Point) -> bool:
    """True when segments ab and cd share a point (touching and collinear overlap included)."""
    d1, d2, d3, d4 = _cross(c, d, a), _cross(c, d, b), _cross(a, b, c), _cross(a, b, d)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and _on_segment(a, c, d)) or (d2 == 0 and _on_segment(b, c, d))
            or (d3 == 0 and _on_segment(c, a, b)) or (d4 == 0 and _on_segment(d, a, b)))


def polygon_problem(points: Sequence[Point]) -> Optional[str]:
    """Why ``points`` is not a simple polygon (repeated vertex, edges crossing, no area), or None."""
    n = len(points)
    if len(set(points)) != n:
        return "repeats a vertex"
    for i in range(n):
        a, b = points[i], points[(i + 1) % n]
        for j in range(i + 1, n):
            c, d = points[j], points[(j + 1) % n]
            if j == i + 1 or (i == 0 and j == n - 1):
                # Adjacent edges share one vertex; they may not fold back over each other.
                shared, p, q = (b, a, d) if j == i + 1 else (a, b, c)
                if _cross(shared, p, q) == 0 and ((p[0] - shared[0]) * (q[0] - shared[0]) +
                                                  (p[1] - shared[1]) * (q[1] - shared[1])) > 0:
                    return f"edges {i} and {j} fold back over each other"
                continue
            if _segments_meet(a, b, c, d):
                return f"is self-intersecting (edges {i} and {j} cross)"
    area = 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
    if abs(area) < 1e-9:
        return "has no area"
    return None


def _fraction(where: str, name: str, value: Any, low_open: bool = True) -> float:
    if not _number(value) or not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(f"{where}: {name} must be a number in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)


def _inertia(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 10_000:
        raise ValueError(f"{where}: inertia must be an int in [1, 10000] (frames), got {value!r}")
    return int(value)


def _classes(where: str, value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{where}: classes must be a list of class names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class ZoneConfig:
    """A polygon zone (fractions of the frame, y down; at most 32 vertices, not self-intersecting).

    classes: the classes it watches (empty: every class). min_overlap: least share of a mask
    inside (rule "mask") for a detection to be in. inertia: frames a track must be seen in (or
    out) before it counts as entered (left). dwell_seconds: a stay this long gives zone_dwell
    (None: never). max_count: occupancy above it is overcrowded (None: no limit)."""

    name: str
    polygon: Tuple[Point, ...]
    classes: Tuple[str, ...] = ()
    min_overlap: float = 0.3
    inertia: int = 3
    dwell_seconds: Optional[float] = None
    max_count: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"zone name must be a non-empty string, got {self.name!r}")
        where = f"zone {self.name!r}"
        polygon = _points(where, "polygon", self.polygon, 3)
        if len(polygon) > MAX_VERTICES:
            raise ValueError(f"{where}: polygon has {len(polygon)} points; at most {MAX_VERTICES}")
        problem = polygon_problem(polygon)
        if problem:
            raise ValueError(f"{where}: polygon {problem}")
        object.__setattr__(self, "polygon", polygon)
        object.__setattr__(self, "classes", _classes(where, self.classes))
        object.__setattr__(self, "min_overlap", _fraction(where, "min_overlap", self.min_overlap))
        object.__setattr__(self, "inertia", _inertia(where, self.inertia))
        if self.dwell_seconds is not None and (not _number(self.dwell_seconds) or self.dwell_seconds <= 0):
            raise ValueError(f"{where}: dwell_seconds must be a positive number or null, got {self.dwell_seconds!r}")
        if self.max_count is not None and (isinstance(self.max_count, bool) or not isinstance(self.max_count, int)
                                           or self.max_count < 0):
            raise ValueError(f"{where}: max_count must be an int >= 0 or null, got {self.max_count!r}")

    def regions(self) -> List[Tuple[Point, ...]]:
        return [self.polygon]


@dataclass(frozen=True)
class LineConfig:
    """A line segment [a, b] (fractions of the frame) with its inward side: "up", "down", "left",
    "right" (frame directions, y down) or a point [x, y] on that side. A track crosses when the
    side holding the larger share of its mask (within the segment's span) flips and stays flipped
    for ``inertia`` frames; min_overlap: least share of the mask within the span to count a side."""

    name: str
    line: Tuple[Point, Point]
    inward: Any = "right"
    classes: Tuple[str, ...] = ()
    min_overlap: float = 0.3
    inertia: int = 3

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"line name must be a non-empty string, got {self.name!r}")
        where = f"line {self.name!r}"
        line = _points(where, "line", self.line, 2)
        if len(line) != 2:
            raise ValueError(f"{where}: line needs exactly 2 points, got {len(line)}")
        if line[0] == line[1]:
            raise ValueError(f"{where}: line's two points are the same")
        object.__setattr__(self, "line", line)
        if isinstance(self.inward, str):
            if self.inward not in DIRECTIONS:
                raise ValueError(f"{where}: inward must be one of {sorted(DIRECTIONS)} or a point [x, y], got {self.inward!r}")
            towards = DIRECTIONS[self.inward]
        else:
            point = _points(where, "inward", [self.inward], 1)[0]
            object.__setattr__(self, "inward", point)
            towards = (point[0] - line[0][0], point[1] - line[0][1])
        if abs(self._normal()[0] * towards[0] + self._normal()[1] * towards[1]) < 1e-9:
            raise ValueError(f"{where}: inward {self.inward!r} is along the line, not to one side of it")
        object.__setattr__(self, "classes", _classes(where, self.classes))
        object.__setattr__(self, "min_overlap", _fraction(where, "min_overlap", self.min_overlap))
        object.__setattr__(self, "inertia", _inertia(where, self.inertia))

    def _normal(self) -> Point:
        (ax, ay), (bx, by) = self.line
        length = math.hypot(bx - ax, by - ay)
        return (-(by - ay) / length, (bx - ax) / length)

    def inward_normal(self) -> Point:
        nx, ny = self._normal()
        if isinstance(self.inward, str):
            tx, ty = DIRECTIONS[self.inward]
        else:
            tx, ty = self.inward[0] - self.line[0][0], self.inward[1] - self.line[0][1]
        sign = 1.0 if nx * tx + ny * ty > 0 else -1.0
        return (sign * nx, sign * ny)

    def regions(self) -> List[Tuple[Point, ...]]:
        """The inward strip, then the outward one: the segment's span, LINE_REACH deep."""
        (ax, ay), (bx, by) = self.line
        nx, ny = self.inward_normal()
        strips = []
        for s in (LINE_REACH, -LINE_REACH):
            strips.append(((ax, ay), (bx, by), (bx + s * nx, by + s * ny), (ax + s * nx, ay + s * ny)))
        return strips


@dataclass(frozen=True)
class ZoneSet:
    """Every camera's zones and lines (declared once, validated against the pipeline's cameras
    and classes). ``cameras``: camera key (as records name it) -> its zones and lines."""

    cameras: Mapping[str, Tuple[Any, ...]]

    @classmethod
    def from_value(cls, value: Any, *, cameras: Optional[Sequence[str]] = None,
                   class_names: Optional[Sequence[str]] = None, where: str = "zones") -> "ZoneSet":
        """A config's ``"zones"`` mapping {camera: [zone or line, ...]}; one-line ValueErrors
        naming the camera and zone. ``cameras`` / ``class_names``: the known ones (None: any)."""
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be an object {{camera: [zones]}}, got {type(value).__name__}")
        known_cameras = None if cameras is None else [str(c) for c in cameras]
        out: Dict[str, Tuple[Any, ...]] = {}
        for camera, entries in value.items():
            camera = str(camera)
            here = f"{where}[{camera!r}]"
            if known_cameras is not None and camera not in known_cameras:
                raise ValueError(f"{here}: no camera {camera!r}; the cameras are {known_cameras}")
            if not isinstance(entries, (list, tuple)):
                raise ValueError(f"{here} must be a list of zones and lines, got {type(entries).__name__}")
            parsed, names = [], set()
            for i, entry in enumerate(entries):
                item = _parse_entry(f"{here}[{i}]", entry, here)
                if item.name in names:
                    raise ValueError(f"{here}: zone {item.name!r} is named twice")
                names.add(item.name)
                if class_names is not None:
                    unknown = [c for c in item.classes if c not in class_names]
                    if unknown:
                        raise ValueError(f"{here}: zone {item.name!r}: unknown class(es) {unknown}; the classes are "
                                         f"{list(class_names)}")
                parsed.append(item)
            out[camera] = tuple(parsed)
        return cls(out)

    def regions(self, camera: str) -> List[Tuple[Point, ...]]:
        """The camera's polygons as ZoneMasks takes them: each zone's, each line's two strips."""
        return [r for item in self.cameras.get(str(camera), ()) for r in item.regions()]

    @property
    def max_regions(self) -> int:
        return max([len(self.regions(c)) for c in self.cameras] + [1])


def _parse_entry(where: str, entry: Any, camera_where: str):
    if isinstance(entry, (ZoneConfig, LineConfig)):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object with \"polygon\" or \"line\", got {type(entry).__name__}")
    name = entry.get("name")
    label = f"zone {name!r}" if name is not None else where
    kinds = [k for k in ("polygon", "line") if k in entry]
    if len(kinds) != 1:
        raise ValueError(f"{camera_where}: {label}: give exactly one of \"polygon\" (a zone) or \"line\"")
    config = ZoneConfig if kinds[0] == "polygon" else LineConfig
    known = set(config.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{camera_where}: {label}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    if name is None:
        raise ValueError(f"{camera_where}: {where} has no \"name\"")
    try:
        return config(**entry)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{camera_where}: {exc}") from None
