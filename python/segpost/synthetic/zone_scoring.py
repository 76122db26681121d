"""Running zone rules over the synthetic zone world (synthetic.zones) and scoring their events
against its truth: segpost's mask rule, the bottom-centre rule and supervision's zones, fed the
same tracked detections (bench/zone_quality.py, tests/test_zones_quality.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..zones import LineConfig, ZoneConfig, ZoneSet
from .zones import CLASS_NAMES, FPS, ROUNDS, SIZE, WATCHED, Camera, TruthEvent, ZoneWorld

METHODS = ("mask", "bottom_centre", "supervision")
TOLERANCE = 2          # frames between a predicted event and its truth
TRACK_EVENTS = ("zone_entered", "zone_left", "zone_dwell", "line_crossed")


@dataclass(frozen=True)
class PredictedEvent:
    method: str
    seed: int
    event: object          # segpost.zones.ZoneEvent
    body: int              # the object its track followed most (-2: none)


@dataclass
class ZoneRecording:
    truth: Dict[int, List[TruthEvent]] = field(default_factory=dict)          # seed -> events
    predicted: List[PredictedEvent] = field(default_factory=list)
    kinds: Tuple[str, ...] = ()
    seconds: Dict[str, float] = field(default_factory=dict)                   # method -> rule time


def build_pipeline(world: ZoneWorld, seed: int, device: str = "cpu", zones: Optional[ZoneSet] = None):
    """The world's pipeline: a DETR-like synthetic decoder (slots permuted, scores by
    visibility, jittered) and segpost's tracker, as the tracking world's; ``zones``: the
    pipeline's own (PipelineConfig.zones)."""
    from ..pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
    from ..postprocess import OutputKind
    from ..track import TrackerConfig
    from .engines import SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder, prompt_for_class

    geometry = SyntheticGeometry(image_size=288, mask_size=144, channels=4, num_queries=16, prompt_length=4,
                                 prompt_width=8)
    prompts = [ClassPrompt(n, *prompt_for_class(i, geometry, full_area=world.full_area(i)))
               for i, n in enumerate(CLASS_NAMES)]
    config = PipelineConfig(prompts, max_cameras=len(world.kinds), max_frame_size=SIZE, score_threshold=0.1,
                            output=OutputKind.FULL, track=TrackerConfig(), zones=zones)
    decoder = SyntheticDecoder(geometry, device=device, permute_slots=True, score_noise=0.03, seed=seed)
    return MultiCameraPipeline(SyntheticVisionEncoder(geometry, device=device), decoder, config), geometry


class _Supervision:
    """supervision's PolygonZone (membership, its default bottom-centre anchor; our rules on top
    for inertia, dwell and counts) and LineZone (its own crossing logic, minimum_crossing_threshold
    = the line's inertia, events stamped back to the first frame like ours)."""

    def __init__(self, zones: ZoneSet):
        import supervision as sv

        from ..zones import ZoneMonitor

        self.sv, self.zones, self.monitor = sv, zones, ZoneMonitor(zones)
        h, w = SIZE
        self.polygons, self.lines = {}, {}
        for camera, items in zones.cameras.items():
            for item in items:
                if isinstance(item, ZoneConfig):
                    poly = np.round(np.array(item.polygon) * [w, h]).astype(np.int64)
                    self.polygons[(camera, item.name)] = sv.PolygonZone(polygon=poly)
                else:
                    self.lines[(camera, item.name)] = self._line(item)

    def _line(self, item: LineConfig):
        """A LineZone whose "in" is our inward side (its start / end swapped if needed)."""
        sv = self.sv
        h, w = SIZE
        (ax, ay), (bx, by) = item.line
        nx, ny = item.inward_normal()
        for start, end in (((ax, ay), (bx, by)), ((bx, by), (ax, ay))):
            make = lambda: sv.LineZone(start=sv.Point(start[0] * w, start[1] * h), end=sv.Point(end[0] * w, end[1] * h),
                                       minimum_crossing_threshold=item.inertia)  # noqa: E731
            probe = make()
            mx, my = (ax + bx) / 2 * w, (ay + by) / 2 * h
            for step in range(-10, 11):
                cx, cy = mx + nx * w * 0.01 * step * 3, my + ny * h * 0.01 * step * 3
                probe.trigger(sv.Detections(xyxy=np.array([[cx - 3, cy - 3, cx + 3, cy + 3]], float),
                                            tracker_id=np.array([1]), class_id=np.array([0])))
            if probe.in_count == 1 and probe.out_count == 0:
                return make()
        raise AssertionError(f"could not orient supervision's LineZone for line {item.name!r}")

    def update(self, camera: str, frame: int, time: float, classes, track_ids, boxes, masks):
        from ..zones import ZoneEvent

        sv = self.sv
        items = self.zones.cameras.get(camera, ())
        n = len(track_ids)
        shares = np.zeros((n, len(self.zones.regions(camera))), np.float32)
        events = []
        if n:
            class_ids = np.array([CLASS_NAMES.index(c) for c in classes])
            detections = sv.Detections(xyxy=np.asarray(boxes, float), mask=np.asarray(masks, bool),
                                       class_id=class_ids, tracker_id=np.asarray(track_ids))
        region = 0
        for item in items:
            width = len(item.regions())
            watched = np.array([not item.classes or c in item.classes for c in classes], bool)
            if isinstance(item, ZoneConfig):
                if n:
                    shares[:, region] = self.polygons[(camera, item.name)].trigger(detections) & watched
            else:
                line = self.lines[(camera, item.name)]
                crossed_in, crossed_out = line.trigger(detections[watched]) if watched.any() else ([], [])
                ids, cls = np.asarray(track_ids)[watched], [c for c, w in zip(classes, watched) if w]
                for i, (a, b) in enumerate(zip(crossed_in, crossed_out)):
                    if a or b:
                        began = frame - (item.inertia - 1)
                        events.append(ZoneEvent("line_crossed", camera, item.name, cls[i], int(ids[i]), began,
                                                began / FPS, direction="in" if a else "out"))
            region += width
        events += self.monitor.update(camera, frame, time, classes, track_ids, shares)
        return events


def record(kinds: Sequence[str], seeds: Sequence[int], rounds: int = ROUNDS, methods: Sequence[str] = METHODS
           ) -> ZoneRecording:
    """Run the world through the pipeline (CPU), and every method's rules over the same tracked
    detections (the same boxes, masks and track ids)."""
    import time as clock

    from ..zones import PipelineZones

    rec = ZoneRecording(kinds=tuple(kinds))
    for seed in seeds:
        world = ZoneWorld(kinds, seed=seed)
        rec.truth[seed] = world.truth_events(rounds)
        pipeline, _ = build_pipeline(world, seed)
        rules = {m: PipelineZones(world.zones, pipeline, rule=m) for m in methods if m != "supervision"}
        peer = _Supervision(world.zones) if "supervision" in methods else None
        votes: Dict[Tuple[int, int], Dict[int, int]] = {}
        raw: List[Tuple[str, object, int]] = []
        for r in range(rounds):
            frames, labels = world.render(r)
            result = pipeline.process(frames)
            live = sorted(result.cameras)
            for m, zones in rules.items():
                start = clock.perf_counter()
                zones.enqueue(live)
                for event in zones.events(result, {c: r for c in live}, {c: r / FPS for c in live}):
                    raw.append((m, event, int(event.camera)))
                rec.seconds[m] = rec.seconds.get(m, 0.0) + clock.perf_counter() - start
            for cam in live:
                camera = result.cameras[cam]
                classes, ids, boxes, dmasks = [], [], [], []
                for c, name in enumerate(CLASS_NAMES):
                    found = camera.by_class[name]
                    for k in range(len(found)):
                        track = int(found.track_ids[k])
                        if track < 0 or name not in WATCHED:
                            continue
                        mask = np.asarray(found.masks[k], bool)
                        classes.append(name)
                        ids.append(track)
                        boxes.append(found.boxes[k])
                        dmasks.append(mask)
                        _vote(votes, cam, track, mask, labels[cam], world.cameras[cam], c)
                if peer is not None:
                    start = clock.perf_counter()
                    for event in peer.update(str(cam), r, r / FPS, classes, ids, boxes,
                                             np.stack(dmasks) if dmasks else np.zeros((0,) + SIZE, bool)):
                        raw.append(("supervision", event, cam))
                    rec.seconds["supervision"] = rec.seconds.get("supervision", 0.0) + clock.perf_counter() - start
            if peer is not None:
                for event in result.track_events:
                    if event.kind == "track_ended":
                        for e in peer.monitor.end_track(str(event.camera), event.track_id):
                            raw.append(("supervision", e, event.camera))
        for m, event, cam in raw:
            body = -1 if event.track_id < 0 else _majority(votes.get((cam, event.track_id)))
            rec.predicted.append(PredictedEvent(m, seed, event, body))
    return rec


def _vote(votes, cam: int, track: int, mask: np.ndarray, labels: np.ndarray, camera: Camera, class_index: int):
    best, best_iou = -2, 0.3
    for k, body in enumerate(camera.bodies):
        if body.class_index != class_index:
            continue
        visible = labels == k + 1
        union = np.count_nonzero(mask | visible)
        iou = np.count_nonzero(mask & visible) / union if union else 0.0
        if iou >= best_iou:
            best, best_iou = k, iou
    if best >= 0:
        counts = votes.setdefault((cam, track), {})
        counts[best] = counts.get(best, 0) + 1


def _majority(counts: Optional[Dict[int, int]]) -> int:
    return max(counts, key=counts.get) if counts else -2


def _key(kind: str, camera: str, zone: str, body: int, class_name: str, direction, count):
    return (kind, camera, zone, class_name, count) if kind == "zone_count" else (kind, camera, zone, body, direction)


def score(rec: ZoneRecording, method: str, kinds: Optional[Sequence[str]] = None,
          events: Sequence[str] = TRACK_EVENTS) -> Dict[str, float]:
    """Precision, recall, F1 and mean |frame error| of one method's events of ``events`` kinds
    (on cameras of scene ``kinds``, None: all), matched one to one within TOLERANCE frames;
    false_changes: unmatched predicted zone_entered / zone_left."""
    tp = fp = fn = false_changes = 0
    errors: List[int] = []
    for seed, truth in rec.truth.items():
        wanted = lambda camera: kinds is None or rec.kinds[int(camera)] in kinds  # noqa: E731
        t_events = [e for e in truth if e.kind in events and wanted(e.camera)]
        p_events = [p for p in rec.predicted if p.method == method and p.seed == seed and p.event.kind in events
                    and wanted(p.event.camera)]
        pool: Dict[tuple, List[int]] = {}
        for e in t_events:
            pool.setdefault(_key(e.kind, e.camera, e.zone, e.body, e.class_name, e.direction, e.count), []).append(e.frame)
        for p in sorted(p_events, key=lambda p: p.event.frame):
            e = p.event
            frames = pool.get(_key(e.kind, e.camera, e.zone, p.body, e.class_name, e.direction, e.count), [])
            near = [f for f in frames if abs(f - e.frame) <= TOLERANCE]
            if near:
                f = min(near, key=lambda f: abs(f - e.frame))
                frames.remove(f)
                tp += 1
                errors.append(abs(f - e.frame))
            else:
                fp += 1
                false_changes += e.kind in ("zone_entered", "zone_left")
        fn += sum(len(v) for v in pool.values())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "false_changes": false_changes, "mean_frame_error": float(np.mean(errors)) if errors else 0.0}
