"""The op: the share of every kept detection's mask inside each region of its camera (GPU, or
the C++ CPU twin), and the pipeline's hook that runs it and the rules each round."""
from __future__ import annotations

import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _ext
from ..encodings import RunLengthMask
from .._arrays import stream_handle
from .._settings import to_struct
from .config import ZONE_RULES, ZoneSet
from .rules import ZoneEvent, ZoneMonitor


# -- the op ------------------------------------------------------------------------------------

class ZoneMasks:
    """Each round, the share of every kept detection's mask inside each region (ZoneSet.regions)
    of its camera, from a segpost.Tracker's packed masks. After every class's tracker.enqueue (on
    the same stream), ``enqueue(postprocessors, cameras)`` (it reads their round_view()s); after
    the round's results, ``overlap()`` [classes, capacity, max_regions]: row k of class c is record k of that class."""

    def __init__(self, zones: ZoneSet, *, tracker: Any, mask_size: Tuple[int, int],
                 camera_keys: Optional[Sequence[str]] = None, rule: str = "mask"):
        if rule not in ZONE_RULES:
            raise ValueError(f"rule must be one of {ZONE_RULES}, got {rule!r}")
        if not isinstance(zones, ZoneSet):
            raise TypeError(f"zones must be a segpost.zones.ZoneSet, got {zones!r}")
        self.zones, self.rule, self.device, self._tracker = zones, rule, tracker.device, tracker
        classes, capacity = tracker._ids.shape   # [classes, capacity]: the Tracker's own sizes
        self.max_regions = zones.max_regions
        sizes = dict(max_cameras=tracker.cameras, num_classes=int(classes), capacity=int(capacity),
                     mask_h=int(mask_size[0]), mask_w=int(mask_size[1]), max_zones=self.max_regions,
                     use_cuda=self.device == "cuda")
        self._core = _ext.ZoneMasks(to_struct(sizes, _ext.ZoneMasksConfig()))   # C++ struct, filled by name
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
        views = [p.round_view() for p in postprocessors]   # all the zones read of a class-batch
        cameras = [int(c) for c in cameras]
        rule = ZONE_RULES.index(self.rule)
        if self.device == "cuda":
            self._core.enqueue(self._tracker._core, views, cameras, rule, stream_handle(stream))
        else:
            self._core.run_cpu(self._tracker._core, views, cameras, rule)

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
        self._pipeline, self._lock, self._requested = pipeline, threading.Lock(), None
        self._bitmap_cache: dict = {}   # predicted_events' region bitmaps per (slot, camera key)
        self._confirmed: Dict[int, set] = {}   # per camera slot: its confirmed tracks, for a new monitor

    # -- new zones while running (the live page's editor) --------------------------------------

    def request(self, zones: ZoneSet) -> None:
        """New zones, from any thread: the owner of the rounds applies them between two rounds
        (``apply_requested``); a later request replaces one not applied yet."""
        if not isinstance(zones, ZoneSet):
            raise TypeError(f"zones must be a segpost.zones.ZoneSet, got {zones!r}")
        with self._lock:
            self._requested = zones

    def apply_requested(self) -> Optional[List[ZoneEvent]]:
        """Between rounds (no round submitted and not collected): swap in the requested zones, if
        any. The tracks inside the old zones leave them (zone_left, zone_count, as a track that
        ends), the rules start again on the new ones (a track inside a new zone enters it after
        ``inertia`` frames). Returns those events, or None when nothing was requested."""
        with self._lock:
            zones, self._requested = self._requested, None
        if zones is None:
            return None
        # Built before anything is swapped: a failure leaves the old zones working.
        masks = ZoneMasks(zones, tracker=self._pipeline.tracker, mask_size=self._pipeline.geometry.mask_size,
                          camera_keys=self.masks.camera_keys, rule=self.masks.rule)
        monitor = ZoneMonitor(zones)
        for slot, tracks in self._confirmed.items():   # they count in the new zones at once
            for track in tracks:
                monitor.confirm(self.masks.camera_keys[slot], track)
        events = self.monitor.leave_all()
        self.masks, self.monitor = masks, monitor
        self._bitmap_cache.clear()   # the old zones' region bitmaps
        return events

    def set_camera_keys(self, keys: Sequence[str]) -> None:
        """Which camera key (the zones' and the events' name) each pipeline slot has: the fleet
        names its cameras; ``segpost run`` numbers them ("0", "1", ...: the default)."""
        self.masks.set_camera_keys(keys)

    def enqueue(self, cameras: Sequence[int], stream: Any = None) -> None:
        self.masks.enqueue(self._posts, cameras, stream)

    def events(self, result: Any, frame_ids: Mapping[int, int], times: Mapping[int, float]) -> List[ZoneEvent]:
        keys = self.masks.camera_keys
        for e in result.track_events:   # confirmed this round: its detections of this round count
            if e.kind == "track_started":
                self._confirmed.setdefault(e.camera, set()).add(int(e.track_id))
                self.monitor.confirm(keys[e.camera], e.track_id)
        slots = list(result.cameras)    # batch order: the order of each class's rows
        counts = np.array([[len(result.cameras[slot].by_class[name]) for slot in slots] for name in self.class_names],
                          np.int32).reshape(len(self.class_names), len(slots))
        events = self.monitor.update_batch([keys[slot] for slot in slots], [int(frame_ids[slot]) for slot in slots],
                                           [float(times[slot]) for slot in slots], self.class_names, counts,
                                           self._pipeline.tracker.ids, self.masks.overlap(), confirmed_only=True)
        events += self.end_tracks(result.track_events)
        return events

    def predicted_events(self, predicted: Mapping[int, Sequence[dict]], frame_ids: Mapping[int, int],
                         time: float) -> List[ZoneEvent]:
        """The zone events of predicted frames (the on_change schedule's, segpost.schedule:
        detection dicts with class, box, dense mask and track_id, per camera slot): they count as
        the tracker sees them. Shares on the host, the way the round's kernel takes them: the
        dense mask sampled at the mask grid's cell centres against each region's bitmap (the
        bottom-centre rule: the box's bottom centre in the polygon)."""
        frames = []
        for slot in sorted(predicted):
            key = self.masks.camera_keys[slot]
            regions = self.masks.zones.regions(key)
            detections = predicted[slot]
            if not regions or not detections:
                continue
            shares = np.zeros((len(detections), len(regions)), np.float32)
            for i, d in enumerate(detections):
                shares[i] = self._predicted_shares(slot, regions, d)
            frames.append((key, int(frame_ids[slot]), float(time), [d["class"] for d in detections],
                           np.array([int(d["track_id"]) for d in detections], np.int64), shares))
        return self.monitor.update_round(frames, confirmed_only=True) if frames else []

    def _predicted_shares(self, slot: int, regions, detection: dict) -> np.ndarray:
        # A dense (H, W) array or the schedule's RunLengthMask (sampled from its runs): both have .shape.
        h, w = detection["mask"].shape[:2]
        if self.masks.rule == "bottom_centre":   # the box alone: no decode
            x0, _, x1, y1 = (float(v) for v in detection["box"])
            point = ((x0 + x1) / 2 / w, y1 / h)
            return np.array([_inside(point, polygon) for polygon in regions], np.float32)
        grid = self._bitmaps(slot, len(regions))
        mh, mw = grid.shape[1:]
        ys = np.minimum(((np.arange(mh) + 0.5) * h / mh).astype(np.int64), h - 1)
        xs = np.minimum(((np.arange(mw) + 0.5) * w / mw).astype(np.int64), w - 1)
        mask = detection["mask"]
        low = mask.sample(ys, xs) if isinstance(mask, RunLengthMask) else np.asarray(mask, bool)[ys][:, xs]
        total = int(low.sum())
        if total == 0:
            return np.zeros(len(regions), np.float32)
        return (grid & low).reshape(len(regions), -1).sum(1).astype(np.float32) / total

    def _bitmaps(self, slot: int, count: int) -> np.ndarray:
        """[regions, mask_h, mask_w] bool of a slot's regions as the kernel rasterised them (cached
        per slot and camera key: set_camera_keys rasterises again)."""
        key = (slot, self.masks.camera_keys[slot])
        if key not in self._bitmap_cache:
            self._bitmap_cache[key] = np.stack([self.masks.bitmap(slot, r) for r in range(count)])
        return self._bitmap_cache[key]

    def end_tracks(self, track_events: Iterable[Any]) -> List[ZoneEvent]:
        """The zone_left of the tracks that ``track_events`` (segpost.TrackEvent) ended."""
        events: List[ZoneEvent] = []
        for e in track_events:
            if e.kind == "track_ended":
                self._confirmed.get(e.camera, set()).discard(int(e.track_id))
                events += self.monitor.end_track(self.masks.camera_keys[e.camera], e.track_id)
        return events


def _inside(point: Tuple[float, float], polygon) -> float:
    """1.0 when ``point`` is inside ``polygon`` (even-odd rule, fractions of the frame), else 0.0."""
    x, y = point
    inside = False
    n = len(polygon)
    for i in range(n):
        # the kernel's vertices are float32: round alike
        (ax, ay), (bx, by) = [[float(np.float32(v)) for v in p] for p in (polygon[i], polygon[(i + 1) % n])]
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return 1.0 if inside else 0.0
