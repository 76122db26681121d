"""Zones, lines and dwell on the masks: the events a site acts on, per track.

A zone is a polygon in fractions of a camera's frame. Membership of a detection is the share of
its mask inside the polygon (``ZoneMasks``: computed on the GPU from the Tracker's packed
low-res masks, one kernel a round on the round's stream, or by the C++ CPU twin), not one point
of its box: a partly hidden person, a long diagonal object or a hand over a counter moves its
box's bottom centre across a zone's edge while its pixels stay put. The peers' rule (the box's
bottom centre inside the polygon) is available as ``rule="bottom_centre"`` for comparison.

A line is a segment with a named inward side; its two strips (the segment's span on either side)
are two regions of the same kernel, and a track's side is where the larger share of its mask
lies. ``ZoneMonitor`` turns each round's shares into events, per track: ``zone_entered`` /
``zone_left`` (after ``inertia`` frames of the new state, stamped at the first of them),
``zone_dwell`` (a stay of ``dwell_seconds``), ``zone_count`` (occupancy per zone and class when it
changes; ``overcrowded`` above ``max_count``) and ``line_crossed`` (direction "in" or "out").

Config (the pipeline's ``"zones"`` block, or ``segpost run --zones zones.json``), keyed by camera::

    {"0": [{"name": "counter", "polygon": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]],
            "classes": ["person"], "min_overlap": 0.3, "dwell_seconds": 40, "max_count": 3}],
     "1": [{"name": "door", "line": [[0.5, 0.2], [0.5, 0.9]], "inward": "right"}]}
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _ext
from ._arrays import stream_handle

ZONE_RULES = ("mask", "bottom_centre")   # codes of csrc/zones/zones.h's ZoneRule
EVENT_KINDS = ("zone_entered", "zone_left", "zone_dwell", "zone_count", "line_crossed")
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


# -- the op ------------------------------------------------------------------------------------

class ZoneMasks:
    """Each round, the share of every kept detection's mask inside each region (ZoneSet.regions)
    of its camera, from a segpost.Tracker's packed masks. After every class's tracker.enqueue (on
    the same stream), ``enqueue(tracker, posts, cameras)``; after the round's results,
    ``overlap()`` [classes, capacity, max_regions]: row k of class c is record k of that class."""

    def __init__(self, zones: ZoneSet, *, tracker: Any, mask_size: Tuple[int, int],
                 camera_keys: Optional[Sequence[str]] = None, rule: str = "mask"):
        if rule not in ZONE_RULES:
            raise ValueError(f"rule must be one of {ZONE_RULES}, got {rule!r}")
        if not isinstance(zones, ZoneSet):
            raise TypeError(f"zones must be a segpost.zones.ZoneSet, got {zones!r}")
        self.zones, self.rule, self.device, self._tracker = zones, rule, tracker.device, tracker
        classes, capacity = tracker._ids.shape   # [classes, capacity]: the Tracker's own sizes
        self.max_regions = zones.max_regions
        self._core = _ext.ZoneMasks(max_cameras=tracker.cameras, num_classes=int(classes), capacity=int(capacity),
                                    mask_h=int(mask_size[0]), mask_w=int(mask_size[1]), max_zones=self.max_regions,
                                    use_cuda=self.device == "cuda")
        self.set_camera_keys([str(c) for c in range(tracker.cameras)] if camera_keys is None else camera_keys)
        self._view = self._core.overlap()
        self._view.flags.writeable = False

    def set_camera_keys(self, keys: Sequence[str]) -> None:
        """Which camera key each pipeline slot has (its zones are rasterised again)."""
        if len(keys) > self._tracker.cameras:
            raise ValueError(f"{len(keys)} camera keys for {self._tracker.cameras} camera slots")
        self.camera_keys = [str(k) for k in keys]
        for slot in range(len(self.camera_keys), self._tracker.cameras):
            self._core.set_zones(slot, [])
        for slot, key in enumerate(self.camera_keys):
            self._core.set_zones(slot, self.zones.regions(key))

    def enqueue(self, postprocessors: Sequence[Any], cameras: Sequence[int], stream: Any = None) -> None:
        posts = [p._core for p in postprocessors]
        cameras = [int(c) for c in cameras]
        rule = ZONE_RULES.index(self.rule)
        if self.device == "cuda":
            self._core.enqueue(self._tracker._core, posts, cameras, rule, stream_handle(stream))
        else:
            self._core.run_cpu(self._tracker._core, posts, cameras, rule)

    def overlap(self) -> np.ndarray:
        """The last round's shares [classes, capacity, max_regions] (a view until the next round)."""
        self._core.synchronize()
        return self._view

    def bitmap(self, camera: int, region: int) -> np.ndarray:
        """Region ``region`` of camera slot ``camera`` as rasterised: [mask_h, mask_w] bool."""
        return self._core.bitmap(int(camera), int(region))

    def memory_report(self) -> dict:
        return {"device": self._core.device_bytes, "pinned_host": self._core.pinned_bytes}


# -- the rules ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoneEvent:
    """One event of a camera's zone or line. frame / time: when the new state began (for entries
    and exits the first of the ``inertia`` frames that confirmed it). track_id -1 for zone_count.
    count / overcrowded: zone_count's occupancy of (zone, class); direction: line_crossed's "in" or
    "out"; seconds: zone_dwell's time inside."""

    kind: str
    camera: str
    zone: str
    class_name: str
    track_id: int
    frame: int
    time: float
    count: Optional[int] = None
    overcrowded: Optional[bool] = None
    direction: Optional[str] = None
    seconds: Optional[float] = None

    def as_record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class _RuleState:
    """The rules' state of every camera: a row per (camera, track, class) seen, a column per
    zone or line slot of its camera (the cameras' items padded to the longest list), so a
    round's detections update together (numpy); only flips and dwells take Python steps."""

    ARRAYS = ("state", "pending", "streak", "streak_frame", "streak_time", "since_time", "dwelled", "last_frame",
              "last_time")

    def __init__(self, zones: ZoneSet):
        self.cameras = list(zones.cameras)
        self.camera_index = {k: i for i, k in enumerate(self.cameras)}
        self.slots = max([len(items) for items in zones.cameras.values()] + [1])
        shape = (len(self.cameras), self.slots)
        self.items: List[List[Any]] = [list(zones.cameras[k]) for k in self.cameras]
        self.valid = np.zeros(shape, bool)
        self.is_line = np.zeros(shape, bool)
        self.col = np.zeros(shape, np.int64)            # the item's first region among its camera's
        self.min_overlap = np.ones(shape, np.float32)
        self.inertia = np.ones(shape, np.int32)
        self.dwell = np.full(shape, np.inf)
        self.region_count = [len(zones.regions(k)) for k in self.cameras]
        for c, items in enumerate(self.items):
            col = 0
            for z, item in enumerate(items):
                self.valid[c, z], self.is_line[c, z], self.col[c, z] = True, isinstance(item, LineConfig), col
                self.min_overlap[c, z], self.inertia[c, z] = item.min_overlap, item.inertia
                self.dwell[c, z] = getattr(item, "dwell_seconds", None) or np.inf
                col += len(item.regions())
        self.col2 = np.where(self.is_line, self.col + 1, self.col)   # a line's outward strip
        self.has_dwell = bool(np.isfinite(self.dwell).any())
        self.regions = max(self.region_count + [1])
        self.class_index: Dict[str, int] = {}
        self.allowed = np.zeros((0,) + shape, bool)    # [class, camera, slot]
        self.rows: Dict[Tuple[int, int, str], int] = {}
        self.free: List[int] = []
        n = self.slots
        self.state = np.zeros((0, n), np.int8)         # zone: 0 out, 1 in; line: 0 unknown, +-1 side
        self.pending = np.zeros((0, n), np.int8)
        self.streak = np.zeros((0, n), np.int32)
        self.streak_frame = np.zeros((0, n), np.int64)
        self.streak_time = np.zeros((0, n), np.float64)
        self.since_time = np.zeros((0, n), np.float64)
        self.dwelled = np.zeros((0, n), bool)
        self.last_frame = np.zeros(0, np.int64)        # per row
        self.last_time = np.zeros(0, np.float64)

    def class_of(self, name: str) -> int:
        index = self.class_index.get(name)
        if index is None:
            index = self.class_index[name] = len(self.class_index)
            table = np.zeros(self.valid.shape, bool)
            for c, items in enumerate(self.items):
                for z, item in enumerate(items):
                    table[c, z] = not item.classes or name in item.classes
            self.allowed = np.concatenate([self.allowed, table[None]])
        return index

    def row(self, key: Tuple[int, int, str]) -> int:
        r = self.rows.get(key)
        if r is not None:
            return r
        if not self.free:
            old = len(self.last_frame)
            grow = max(64, old)
            for name in self.ARRAYS:
                a = getattr(self, name)
                setattr(self, name, np.concatenate([a, np.zeros((grow,) + a.shape[1:], a.dtype)]))
            self.free = list(range(old + grow - 1, old - 1, -1))
        r = self.rows[key] = self.free.pop()
        return r

    def release(self, r: int) -> None:
        for name in ("state", "pending", "streak", "dwelled"):
            getattr(self, name)[r] = 0
        self.free.append(r)


class ZoneMonitor:
    """Per track rules of one ZoneSet, fed each round's tracked detections with their region
    shares (ZoneMasks.overlap rows, or 1/0 memberships from any rule):

        events = monitor.update_round([(camera_key, frame_index, time, classes, track_ids, shares), ...])
        events = monitor.update(camera_key, frame_index, time, classes, track_ids, shares)   # one camera

    classes[i], track_ids[i], shares[i] (one value per region of the camera, ZoneSet.regions
    order; extra columns are ignored) per detection; detections without a track (id < 0) are
    ignored. ``end_track`` closes a track the tracker ended (zone_left at its last seen frame)."""

    def __init__(self, zones: ZoneSet):
        self.zones = zones
        self._s = _RuleState(zones)
        self._counts: Dict[Tuple[str, str, str], int] = {}                # (camera, zone, class) -> occupancy
        self._changed: Dict[Tuple[str, str, str], Tuple[int, float]] = {}  # -> when the last change began

    def update(self, camera: str, frame: int, time: float, classes: Sequence[str], track_ids: Sequence[int],
               shares: np.ndarray) -> List[ZoneEvent]:
        return self.update_round([(camera, frame, time, classes, track_ids, shares)])

    def update_round(self, frames: Sequence[Tuple[str, int, float, Sequence[str], Sequence[int], np.ndarray]]
                     ) -> List[ZoneEvent]:
        st = self._s
        rows, cams, frame_of, time_of, names, tracks, blocks = [], [], [], [], [], [], []
        for camera, frame, time, classes, track_ids, shares in frames:
            c = st.camera_index.get(str(camera))
            if c is None:
                continue
            ids = np.asarray(track_ids, np.int64)
            keep = np.nonzero(ids >= 0)[0]
            if len(keep) == 0:
                continue
            for i in keep:
                track, name = int(ids[i]), classes[i]
                rows.append(st.row((c, track, name)))
                names.append(name)
                tracks.append(track)
            cams += [c] * len(keep)
            frame_of += [int(frame)] * len(keep)
            time_of += [float(time)] * len(keep)
            blocks.append(np.asarray(shares, np.float32)[keep][:, :st.region_count[c]])
        if not rows:
            return []
        rows = np.asarray(rows, np.int64)
        cams = np.asarray(cams, np.int64)
        frame_d = np.asarray(frame_of, np.int64)[:, None]
        time_d = np.asarray(time_of, np.float64)[:, None]
        shares = np.zeros((len(rows), st.regions), np.float32)
        at = 0
        for block in blocks:
            shares[at:at + len(block), :block.shape[1]] = block
            at += len(block)
        class_rows = np.array([st.class_of(name) for name in names])   # may grow st.allowed: before reading it
        allowed = st.allowed[class_rows, cams]
        is_line, min_overlap, inertia = st.is_line[cams], st.min_overlap[cams], st.inertia[cams]
        first = np.take_along_axis(shares, st.col[cams], 1)
        second = np.take_along_axis(shares, st.col2[cams], 1)
        # Zones: in when the share reaches min_overlap. Lines: the side with the larger share,
        # when enough of the mask lies within the span (else no evidence).
        zone_raw = (first >= min_overlap).astype(np.int8)
        line_evidence = (first + second >= min_overlap) & (first != second)
        raw = np.where(is_line, np.where(first > second, 1, -1).astype(np.int8), zone_raw)
        evidence = allowed & (~is_line | line_evidence)
        state, pending, streak = st.state[rows], st.pending[rows], st.streak[rows]
        differ = evidence & (raw != state)
        going_on = differ & (streak > 0) & (raw == pending)
        started = differ & ~going_on
        streak = np.where(evidence & ~differ, 0, np.where(going_on, streak + 1, np.where(started, 1, streak)))
        st.pending[rows] = np.where(started, raw, pending)
        st.streak_frame[rows] = np.where(started, frame_d, st.streak_frame[rows])
        st.streak_time[rows] = np.where(started, time_d, st.streak_time[rows])
        flips = differ & (streak >= inertia)
        st.streak[rows] = np.where(flips, 0, streak)
        st.last_frame[rows], st.last_time[rows] = frame_d[:, 0], time_d[:, 0]
        events: List[ZoneEvent] = []
        changed = set()
        for d, z in zip(*np.nonzero(flips)):
            r, item, value = rows[d], st.items[cams[d]][z], int(raw[d, z])
            camera = st.cameras[cams[d]]
            began = (int(st.streak_frame[r, z]), float(st.streak_time[r, z]))
            was = int(st.state[r, z])
            st.state[r, z] = value
            if is_line[d, z]:
                if was != 0:
                    events.append(ZoneEvent("line_crossed", camera, item.name, names[d], tracks[d], *began,
                                            direction="in" if value > 0 else "out"))
                continue
            st.since_time[r, z], st.dwelled[r, z] = began[1], False
            events.append(ZoneEvent("zone_entered" if value else "zone_left", camera, item.name, names[d],
                                    tracks[d], *began))
            key = (camera, item.name, names[d])
            self._counts[key] = self._counts.get(key, 0) + (1 if value else -1)
            self._changed[key] = began   # the count changed when the entry or exit began
            changed.add(key)
        if st.has_dwell:
            # Dwell only on a frame seen inside: a pending exit may still date the stay's end before now.
            inside = evidence & ~is_line & (raw == 1) & (st.state[rows] == 1) & ~st.dwelled[rows]
            stayed = time_d - st.since_time[rows]
            due = inside & (stayed >= st.dwell[cams] - 1e-9)   # times are sums of frame steps: allow rounding
            for d, z in zip(*np.nonzero(due)):
                st.dwelled[rows[d], z] = True
                events.append(ZoneEvent("zone_dwell", st.cameras[cams[d]], st.items[cams[d]][z].name, names[d],
                                        tracks[d], int(frame_d[d, 0]), float(time_d[d, 0]),
                                        seconds=float(stayed[d, z])))
        self._count_events(events, changed)
        return events

    def _count_events(self, events: List[ZoneEvent], changed) -> None:
        for camera, zone_name, cls in sorted(changed):
            count = self._counts[(camera, zone_name, cls)]
            zone = next(z for z in self.zones.cameras[camera] if z.name == zone_name)
            over = zone.max_count is not None and count > zone.max_count
            at = self._changed[(camera, zone_name, cls)]
            events.append(ZoneEvent("zone_count", camera, zone_name, cls, -1, at[0], at[1], count=count,
                                    overcrowded=over))

    def end_track(self, camera: str, track_id: int) -> List[ZoneEvent]:
        """The tracker ended ``track_id``: it leaves every zone it is in, at its last seen frame."""
        st = self._s
        camera = str(camera)
        c = st.camera_index.get(camera)
        events: List[ZoneEvent] = []
        if c is None:
            return events
        changed = set()
        for key in [k for k in st.rows if k[0] == c and k[1] == int(track_id)]:
            r = st.rows.pop(key)
            seen = (int(st.last_frame[r]), float(st.last_time[r]))
            for z in np.nonzero(st.valid[c] & ~st.is_line[c] & (st.state[r] == 1))[0]:
                name = st.items[c][z].name
                events.append(ZoneEvent("zone_left", camera, name, key[2], key[1], *seen))
                self._counts[(camera, name, key[2])] -= 1
                self._changed[(camera, name, key[2])] = seen
                changed.add((camera, name, key[2]))
            st.release(r)
        self._count_events(events, changed)
        return events

    def occupancy(self, camera: str) -> Dict[Tuple[str, str], int]:
        """(zone, class) -> tracks inside now (the per-zone gauges)."""
        return {(z, c): n for (cam, z, c), n in self._counts.items() if cam == str(camera)}


class PipelineZones:
    """Zones for a tracking MultiCameraPipeline: ZoneMasks on its tracker plus a ZoneMonitor.

    In the round (the pipeline's stream, after the last class's tracker.enqueue):
    ``enqueue(cameras, stream)``; after the round's results and the tracker's update:
    ``events(result, frame_ids, times)`` (frame index and time of each camera slot in the round)
    gives the round's ZoneEvents, track_ended included (the ended tracks leave their zones).
    Pipelines on numpy may call both after ``process()``: the tracker keeps the round's packed
    masks until the next round."""

    def __init__(self, zones: ZoneSet, pipeline: Any, *, camera_keys: Optional[Sequence[str]] = None,
                 rule: str = "mask"):
        if pipeline.tracker is None:
            raise ValueError("zones need a tracking pipeline (PipelineConfig.track)")
        if not isinstance(zones, ZoneSet):   # a config's "zones" mapping, keyed by camera slot
            zones = ZoneSet.from_value(zones, cameras=camera_keys or [str(c) for c in range(pipeline.tracker.cameras)],
                                       class_names=pipeline.class_names)
        self.class_names = tuple(pipeline.class_names)
        unknown = sorted({c for items in zones.cameras.values() for item in items for c in item.classes}
                         - set(self.class_names))
        if unknown:
            raise ValueError(f"zones name unknown class(es) {unknown}; the classes are {list(self.class_names)}")
        self.masks = ZoneMasks(zones, tracker=pipeline.tracker, mask_size=pipeline.geometry.mask_size,
                               camera_keys=camera_keys, rule=rule)
        self.monitor = ZoneMonitor(zones)
        self._posts = pipeline._post

    def enqueue(self, cameras: Sequence[int], stream: Any = None) -> None:
        self.masks.enqueue(self._posts, cameras, stream)

    def events(self, result: Any, frame_ids: Mapping[int, int], times: Mapping[int, float]) -> List[ZoneEvent]:
        overlap = self.masks.overlap()
        starts = [0] * len(self.class_names)
        frames = []
        for slot in sorted(result.cameras):   # the round's frames, in batch order
            camera = result.cameras[slot]
            classes, ids, rows = [], [], []
            for c, name in enumerate(self.class_names):
                found = camera.by_class[name]
                n = len(found)
                classes += [name] * n
                ids.append(np.asarray(found.track_ids, np.int64))
                rows.append(overlap[c, starts[c]:starts[c] + n])
                starts[c] += n
            frames.append((self.masks.camera_keys[slot], int(frame_ids[slot]), float(times[slot]), classes,
                           np.concatenate(ids), np.concatenate(rows)))
        events = self.monitor.update_round(frames)
        events += self.end_tracks(result.track_events)
        return events

    def end_tracks(self, track_events: Iterable[Any]) -> List[ZoneEvent]:
        """The zone_left of the tracks that ``track_events`` (segpost.TrackEvent) ended."""
        events: List[ZoneEvent] = []
        for e in track_events:
            if e.kind == "track_ended":
                events += self.monitor.end_track(self.masks.camera_keys[e.camera], e.track_id)
        return events
