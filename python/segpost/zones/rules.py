"""The rules, per track: entered / left with inertia, dwell, counts with overcrowding, lines
crossed; each round's shares in, events out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import LineConfig, ZoneSet


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
        self.class_names: List[str] = []
        self.native: Any = None   # the C++ rules (ZoneMonitor's default), fed the same tables
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
            self.class_names.append(name)
            table = np.zeros(self.valid.shape, bool)
            for c, items in enumerate(self.items):
                for z, item in enumerate(items):
                    table[c, z] = not item.classes or name in item.classes
            self.allowed = np.concatenate([self.allowed, table[None]])
            if self.native is not None:
                self.native.add_class(table.ravel().astype(np.uint8).tolist())
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


def _native_rules(st: "_RuleState"):
    from .. import _ext

    flat = lambda a, t: a.ravel().astype(t).tolist()  # noqa: E731
    return _ext.ZoneRules(len(st.cameras), st.slots, flat(st.valid, np.uint8), flat(st.is_line, np.uint8),
                          flat(st.col, np.int32), flat(st.col2, np.int32), flat(st.min_overlap, np.float32),
                          flat(st.inertia, np.int32), flat(st.dwell, np.float64))


class ZoneMonitor:
    """Per track rules of one ZoneSet, fed each round's tracked detections with their region
    shares (ZoneMasks.overlap rows, or 1/0 memberships from any rule):

        events = monitor.update_round([(camera_key, frame_index, time, classes, track_ids, shares), ...])
        events = monitor.update(camera_key, frame_index, time, classes, track_ids, shares)   # one camera
        events = monitor.update_batch(camera_keys, frame_ids, times, class_names, counts, ids, overlap)

    classes[i], track_ids[i], shares[i] (one value per region of the camera, ZoneSet.regions
    order; extra columns are ignored) per detection; detections without a track (id < 0) are
    ignored. update_batch takes a pipeline round as it lies (the Postprocessors' class-major rows,
    the Tracker's ids, ZoneMasks.overlap) without a Python step per camera. ``end_track`` closes a
    track the tracker ended (zone_left at its last seen frame). With ``confirmed_only`` only the
    tracks ``confirm``ed since count: a track the tracker drops before confirming it gets no end,
    so it must never enter a zone.

    engine "cpp" (the default) runs the per-track state machine in C++ (csrc/zones/zone_rules.cpp:
    a round's host work was ~0.7 ms in numpy); "numpy" is its twin, the same events."""

    def __init__(self, zones: ZoneSet, engine: str = "cpp"):
        if engine not in ("cpp", "numpy"):
            raise ValueError(f"ZoneMonitor engine must be 'cpp' or 'numpy', got {engine!r}")
        self.zones = zones
        self.engine = engine
        self._s = _RuleState(zones)
        if engine == "cpp":
            self._s.native = _native_rules(self._s)
        self._confirmed: Dict[int, set] = {}   # the numpy engine's confirmed tracks, per camera index
        self._counts: Dict[Tuple[str, str, str], int] = {}                # (camera, zone, class) -> occupancy
        self._changed: Dict[Tuple[str, str, str], Tuple[int, float]] = {}  # -> when the last change began

    def update(self, camera: str, frame: int, time: float, classes: Sequence[str], track_ids: Sequence[int],
               shares: np.ndarray) -> List[ZoneEvent]:
        return self.update_round([(camera, frame, time, classes, track_ids, shares)])

    def confirm(self, camera: str, track_id: int) -> None:
        """The tracker confirmed ``track_id``: with ``confirmed_only`` its detections count from now on."""
        c = self._s.camera_index.get(str(camera))
        if c is None:
            return
        if self._s.native is not None:
            self._s.native.confirm(c, int(track_id))
        else:
            self._confirmed.setdefault(c, set()).add(int(track_id))

    def update_round(self, frames: Sequence[Tuple[str, int, float, Sequence[str], Sequence[int], np.ndarray]],
                     confirmed_only: bool = False) -> List[ZoneEvent]:
        st = self._s
        if st.native is None:
            return self._update_numpy(frames, confirmed_only)
        index, native = st.class_index, st.native
        for camera, frame, time, classes, track_ids, shares in frames:
            c = st.camera_index.get(str(camera))
            if c is None:
                continue
            cls = [index[n] if n in index else st.class_of(n) for n in classes]
            native.update(c, int(frame), float(time), cls, track_ids, shares, confirmed_only)
        return self._native_events()

    def update_batch(self, cameras: Sequence[str], frame_ids: Sequence[int], times: Sequence[float],
                     class_names: Sequence[str], counts: np.ndarray, track_ids: np.ndarray, shares: np.ndarray,
                     confirmed_only: bool = False) -> List[ZoneEvent]:
        """A round of F frames (batch order) and K classes as a pipeline holds it: counts [K, F]
        (frame f's detections of class k), track_ids [K, rows] and shares [K, rows, regions], class
        k's rows its frames' detections in batch order. The same events as update_round of each
        frame's detections class by class."""
        st = self._s
        counts = np.asarray(counts, np.int32)
        if counts.shape != (len(class_names), len(cameras)):
            raise ValueError(f"counts must be [classes, frames] = [{len(class_names)}, {len(cameras)}], "
                             f"got {counts.shape}")
        if st.native is None:
            return self._update_numpy(_frames_of_batch(cameras, frame_ids, times, class_names, counts, track_ids,
                                                       shares), confirmed_only)
        camera_index = np.array([st.camera_index.get(str(k), -1) for k in cameras], np.int32)
        klass = np.array([st.class_index[n] if n in st.class_index else st.class_of(n) for n in class_names],
                         np.int32)
        st.native.update_batch(camera_index, frame_ids, times, klass, counts, track_ids, shares, confirmed_only)
        return self._native_events()

    def _native_events(self) -> List[ZoneEvent]:
        st = self._s
        events: List[ZoneEvent] = []
        changed = set()
        for kind, c, z, k, track, value, frame, time, seconds in st.native.take_events():
            camera, zone, name = st.cameras[c], st.items[c][z].name, st.class_names[k]
            if kind == 1:
                events.append(ZoneEvent("line_crossed", camera, zone, name, track, frame, time,
                                        direction="in" if value > 0 else "out"))
            elif kind == 0:
                events.append(ZoneEvent("zone_entered" if value else "zone_left", camera, zone, name, track, frame,
                                        time))
                key = (camera, zone, name)
                self._counts[key] = self._counts.get(key, 0) + (1 if value else -1)
                self._changed[key] = (frame, time)   # the count changed when the entry or exit began
                changed.add(key)
            else:
                events.append(ZoneEvent("zone_dwell", camera, zone, name, track, frame, time, seconds=seconds))
        self._count_events(events, changed)
        return events

    def _update_numpy(self, frames, confirmed_only: bool) -> List[ZoneEvent]:
        st = self._s
        rows, cams, frame_of, time_of, names, tracks, blocks = [], [], [], [], [], [], []
        for camera, frame, time, classes, track_ids, shares in frames:
            c = st.camera_index.get(str(camera))
            if c is None:
                continue
            ids = np.asarray(track_ids, np.int64)
            counted = ids >= 0
            if confirmed_only:
                confirmed = self._confirmed.get(c, set())
                counted &= np.array([i in confirmed for i in ids.tolist()], bool).reshape(ids.shape)
            keep = np.nonzero(counted)[0]
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
        self._confirmed.get(c, set()).discard(int(track_id))
        if st.native is not None:
            for _, _, z, k, track, _, frame, time, _ in st.native.end_track(c, int(track_id)):
                name, cls = st.items[c][z].name, st.class_names[k]
                events.append(ZoneEvent("zone_left", camera, name, cls, track, frame, time))
                self._counts[(camera, name, cls)] -= 1
                self._changed[(camera, name, cls)] = (frame, time)
                changed.add((camera, name, cls))
            self._count_events(events, changed)
            return events
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

    def leave_all(self) -> List[ZoneEvent]:
        """Every track leaves every zone it is in (the zones are being replaced)."""
        st = self._s
        live = st.native.live_tracks() if st.native is not None else {(c, t) for c, t, _ in st.rows}
        events: List[ZoneEvent] = []
        for camera, track in sorted({(st.cameras[c], t) for c, t in live}, key=str):
            events += self.end_track(camera, track)
        return events

    def occupancy(self, camera: str) -> Dict[Tuple[str, str], int]:
        """(zone, class) -> tracks inside now (the per-zone gauges)."""
        return {(z, c): n for (cam, z, c), n in self._counts.items() if cam == str(camera)}


def _frames_of_batch(cameras, frame_ids, times, class_names, counts, track_ids, shares) -> list:
    """update_batch's round as update_round's frames: each frame's detections, class by class."""
    starts = [0] * len(class_names)
    frames = []
    for f, camera in enumerate(cameras):
        classes, ids, rows = [], [], []
        for k, name in enumerate(class_names):
            n = int(counts[k, f])
            classes += [name] * n
            ids.append(np.asarray(track_ids[k, starts[k]:starts[k] + n], np.int64))
            rows.append(np.asarray(shares[k, starts[k]:starts[k] + n], np.float32))
            starts[k] += n
        frames.append((camera, int(frame_ids[f]), float(times[f]), classes, np.concatenate(ids), np.concatenate(rows)))
    return frames
