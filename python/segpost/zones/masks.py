"""The op: the share of every kept detection's mask inside each region of its camera (GPU, or
the C++ CPU twin), and the pipeline's hook that runs it and the rules each round."""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _ext
from .._arrays import stream_handle
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
