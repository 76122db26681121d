"""Which cameras a round's engine batch takes, when there are more cameras than the batch holds.

Pure logic (no frames, no GPU): each round the caller says, per camera, whether a new frame is
waiting, whether the change gate saw its scene change since the model last saw it, and whether
its tracks need the model (a tentative track to confirm, a lost one to find, or one predicted
for too long). ``Scheduler.pick`` returns at most ``batch`` cameras, by tier:

  0. overdue: not seen by the model for ``max_interval`` seconds (or never): every camera is
     seen at least that often (a parked forklift is re-checked), whatever the others do;
  1. changed: the scene changed since the model last saw it;
  2. tracks: its tracks need the model;
  3. (only with ``fill``) any other camera, to use a batch's free slots.

Within a tier, the camera the model saw longest ago (in rounds) goes first, and cameras seen in
the same round take turns (a rotation that starts after the last pick): no camera waits behind
its equals for ever. ``mark_seen`` records the cameras a round actually served (a failed round is not).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Literal, Optional, Sequence

import numpy as np
from pydantic import Field, StrictBool

from ._settings import Int, Number, settings
from .encodings import RunLengthMask

MODES = ("every_frame", "on_change")
TIERS = ("overdue", "changed", "tracks", "fill")
# Cameras one engine slot (one camera of max_cameras) may serve under on_change: the
# measured goal is 3x-4x fewer model frames (bench/schedule_quality.py), so more cameras than
# that would starve max_interval as soon as the scenes change at once.
CAMERAS_PER_SLOT = 4


def most_cameras(max_cameras: int, schedule: Optional["ScheduleConfig"]) -> int:
    """How many cameras a pipeline of engine batch `max_cameras` may serve under `schedule`."""
    on_change = schedule is not None and schedule.mode == "on_change"
    return max_cameras * CAMERAS_PER_SLOT if on_change else max_cameras


def schedule_object(value: Any) -> Any:
    """A config's "schedule" as ScheduleConfig's fields: "on_change" is that mode with the defaults."""
    return {"mode": value} if isinstance(value, str) else value


@settings
class ScheduleConfig:
    """The pipeline config's ``"schedule"``: every_frame (the model sees every frame it takes,
    today's behaviour) or on_change (the model sees the cameras this module picks; the others get
    predicted records), with on_change's knobs."""

    mode: Literal["every_frame", "on_change"] = Field(
        "every_frame", description="every_frame, or on_change: the model where the scene changed, predicted "
                                   "records elsewhere")
    change_threshold: Number = Field(4.0, gt=0, le=255, description="luma levels (0-255) a grid cell must move, "
                                     "beyond the frame-wide light shift, to count as changed (ChangeGate)")
    change_cells: Int = Field(1, ge=1, le=1024, description="changed cells that make a camera's scene changed")
    max_interval: Number = Field(2.0, gt=0, description="seconds: every camera is seen by the model at least "
                                                        "this often (a parked object re-checked)")
    output_fps: Number = Field(5.0, gt=0, description="records a second per camera, observed or predicted")
    predict_limit: Number = Field(1.0, gt=0, description="seconds a track may be predicted before its camera "
                                                         "asks the model")
    fill: StrictBool = Field(False, description="use a batch's free slots for cameras that need nothing "
                                                "(fresher observations, more model frames)")

    @classmethod
    def from_value(cls, value: Any, where: str = "schedule") -> "ScheduleConfig":
        """A config file's ``"schedule"``: a mode name, or an object of ScheduleConfig fields."""
        if value is None:
            return cls()
        if not isinstance(value, (str, dict)):
            raise ValueError(f"{where} must be {list(MODES)} or an object of schedule settings, got {value!r}")
        try:
            return cls(**schedule_object(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


class Scheduler:
    """Picks each round's cameras (at most ``batch`` of ``cameras``); times are seconds on the
    caller's clock (``now``), so tests and replays drive it without sleeping."""

    def __init__(self, *, cameras: int, batch: int, max_interval: float, fill: bool = False):
        if not isinstance(cameras, int) or cameras < 1 or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"cameras and batch must be positive ints, got {cameras!r}, {batch!r}")
        if not max_interval > 0:
            raise ValueError(f"max_interval must be above 0 seconds, got {max_interval!r}")
        self.cameras, self.batch, self.max_interval, self.fill = cameras, batch, float(max_interval), bool(fill)
        self._seen_at = np.full(cameras, -np.inf)     # when the model last saw each camera
        self._seen_round = np.full(cameras, -1, np.int64)
        self._round = 0
        self._offset = 0   # where the rotation among equals starts: after the last pick
        self.last_tiers: List[str] = []               # the tier of each camera of the last pick

    def pick(self, now: float, ready: Sequence[bool], changed: Sequence[bool],
             tracks: Optional[Sequence[bool]] = None, limit: Optional[int] = None) -> List[int]:
        """The cameras of this round, most urgent first. ready[c]: camera c has a new frame;
        changed[c]: its scene changed since the model saw it; tracks[c]: its tracks need the model;
        limit: at most this many this round (below the batch: the model is busy; 0: none)."""
        ready, changed = self._flags("ready", ready), self._flags("changed", changed)
        tracks = self._flags("tracks", tracks) if tracks is not None else np.zeros(self.cameras, bool)
        overdue = now - self._seen_at >= self.max_interval
        tier = np.where(overdue, 0, np.where(changed, 1, np.where(tracks, 2, 3)))
        candidates = [c for c in range(self.cameras) if ready[c] and (tier[c] < 3 or self.fill)]
        # Oldest observation first; cameras seen in the same round rotate, starting after the last pick.
        candidates.sort(key=lambda c: (tier[c], self._seen_round[c], (c - self._offset) % self.cameras))
        picked = candidates[: self.batch if limit is None else max(0, min(int(limit), self.batch))]
        self.last_tiers = [TIERS[tier[c]] for c in picked]
        self._round += 1
        if picked:
            self._offset = (picked[-1] + 1) % self.cameras
        return picked

    def mark_seen(self, cameras: Sequence[int], now: float) -> None:
        """The model saw these cameras' frames in the round that ran at ``now``."""
        for c in cameras:
            if not 0 <= int(c) < self.cameras:
                raise ValueError(f"camera {c} outside 0 .. {self.cameras - 1}")
            self._seen_at[int(c)] = now
            self._seen_round[int(c)] = self._round

    def staleness(self, now: float) -> np.ndarray:
        """Seconds since the model last saw each camera (inf: never)."""
        return now - self._seen_at

    def _flags(self, name: str, flags: Sequence[bool]) -> np.ndarray:
        flags = np.asarray(flags, bool)
        if flags.shape != (self.cameras,):
            raise ValueError(f"{name} must hold one flag per camera ({self.cameras}), got shape {flags.shape}")
        return flags


class TrackMotion:
    """Per camera, the tracks of the model's last observation, to predict the frames
    the model does not see: each track's last mask moved by its velocity.

    The velocity is in pixels per camera frame, from the track's last two observations (box
    centres, or the edge the object owns where the frame's edge cuts its box: _edge_velocity,
    over the frames between them), so irregular gaps between model frames extrapolate right.
    A track is predicted until an observation of its camera lacks it (lost or ended).
    """

    def __init__(self):
        self._tracks = {}   # camera -> {track_id: _Observed}

    def observe(self, camera: int, frame: int, detections) -> None:
        """The model's record of `camera` at camera frame `frame`: detections are
        (track_id, class_name, score, box xyxy, mask: an encodings.RunLengthMask or a dense
        (H, W) bool array); untracked ones (id < 0) are not predicted."""
        before = self._tracks.get(camera, {})
        now = {}
        for track_id, class_name, score, box, mask in detections:
            if track_id is None or track_id < 0:
                continue
            box = np.array(box, np.float64)   # copies: a round's results are views into reused buffers
            mask = mask if isinstance(mask, RunLengthMask) else RunLengthMask.of_dense(mask)   # copies: reused buffers
            velocity = np.zeros(2)
            last = before.get(track_id)
            if last is not None and frame > last.frame:
                velocity = _edge_velocity(last.box, box, mask.shape) / (frame - last.frame)
            now[track_id] = _Observed(frame, class_name, float(score), box, velocity, mask)
        self._tracks[camera] = now

    def forget(self, camera: int) -> None:
        self._tracks.pop(camera, None)

    def track_ids(self, camera: int) -> set:
        """The ids of the tracks predicted for `camera`."""
        return set(self._tracks.get(camera, {}))

    def predict(self, camera: int, frame: int, moving: bool = True) -> list:
        """The detections of `camera` at camera frame `frame` (>= the last observation's): dicts
        with class, score, box, mask (an encodings.RunLengthMask: np.asarray() for the dense mask),
        track_id, predicted True and observed_frame.
        ``moving`` False (the change gate saw no change since that observation): where they were."""
        out = []
        for track_id, t in self._tracks.get(camera, {}).items():
            dx, dy = np.rint(t.velocity * (frame - t.frame) * moving).astype(int)
            mask = t.mask.moved(int(dx), int(dy))
            h, w = mask.shape
            box = t.box + np.array([dx, dy, dx, dy], np.float64)
            box = np.clip(box, 0, [w, h, w, h])
            out.append({"class": t.class_name, "score": t.score, "box": box, "mask": mask, "track_id": track_id,
                        "predicted": True, "observed_frame": t.frame})
        return out


def _edge_velocity(before: np.ndarray, now: np.ndarray, size) -> np.ndarray:
    """How far an object moved between two boxes (xyxy), per axis. The box of an object cut by a
    frame's edge (arriving, leaving) grows or shrinks there, so its centre moves at about half the
    object's speed: the opposite edge, which is the object's own, is followed instead."""
    h, w = size
    moved = (now[:2] + now[2:]) / 2 - (before[:2] + before[2:]) / 2
    for axis, limit in ((0, w), (1, h)):
        low = min(before[axis], now[axis]) <= 0.5                       # cut at the left / top
        high = max(before[axis + 2], now[axis + 2]) >= limit - 1.5      # cut at the right / bottom
        if high and not low:
            moved[axis] = now[axis] - before[axis]
        elif low and not high:
            moved[axis] = now[axis + 2] - before[axis + 2]
    return moved


@dataclass(frozen=True)
class _Observed:
    frame: int
    class_name: str
    score: float
    box: np.ndarray
    velocity: np.ndarray
    mask: RunLengthMask



class ScheduledPipeline:
    """on_change: a MultiCameraPipeline of engine batch F (max_cameras) serving its
    ``pipeline.cameras`` cameras (PipelineConfig.cameras). Each round the change gate measures
    every new frame, the Scheduler picks at most F cameras for the model, and the other cameras
    get predicted detections (TrackMotion) at no more than ``output_fps`` records a second.

        rounds = ScheduledPipeline(pipeline, ScheduleConfig(mode="on_change"))
        result, predicted = rounds.process(frames, frame_ids, now=time.monotonic())
        # result: the model's RoundResult for the picked cameras (None when none was picked);
        # predicted: {camera: [detection dicts]} for the others that are due a record.
    """

    def __init__(self, pipeline, config: ScheduleConfig):
        from .gate import ChangeGate

        self.pipeline, self.config = pipeline, config
        n = pipeline.cameras
        if n > pipeline.config.max_cameras * CAMERAS_PER_SLOT:   # the CLI and the fleet say it first
            raise ValueError(f"on_change serves at most {CAMERAS_PER_SLOT} x max_cameras="
                             f"{pipeline.config.max_cameras} = {pipeline.config.max_cameras * CAMERAS_PER_SLOT} "
                             f"cameras per pipeline, got {n}")
        self.gate = ChangeGate(cameras=n, threshold=config.change_threshold, min_cells=config.change_cells,
                               device=pipeline.device)
        self.scheduler = Scheduler(cameras=n, batch=pipeline.config.max_cameras, max_interval=config.max_interval,
                                   fill=config.fill)
        self.motion = TrackMotion()
        self._observed_at = np.full(n, -np.inf)      # when the model last saw each camera
        self._needs_model = np.zeros(n, bool)        # its last observation left a track unsure
        self._output_at = np.full(n, -np.inf)        # when each camera last got a predicted record
        self._confirmed = [set() for _ in range(n)]  # track ids confirmed (track_started), per camera
        self.counts = {"model_frames": 0, "predicted_frames": 0, "dropped_frames": 0}
        self.staleness_s: List[float] = []   # per record written: seconds since the model saw its camera
        # The last round's cameras by what they got (model, predicted, dropped) and its records' staleness.
        self.last_round: dict = {"model": [], "predicted": [], "dropped": [], "staleness": []}

    def process(self, frames: Sequence[Any], frame_ids: Sequence[Optional[int]], now: float,
                limit: Optional[int] = None):
        """One round: `limit` caps the cameras the model may see in it (None: the batch; 0: every
        camera predicted, as when the GPU is still busy with the last round)."""
        n = self.pipeline.cameras
        if len(frames) > n or len(frame_ids) != len(frames):
            raise ValueError(f"frames and frame_ids must hold one entry per camera (at most {n})")
        frames = list(frames) + [None] * (n - len(frames))
        frame_ids = list(frame_ids) + [None] * (n - len(frame_ids))
        ready = [c for c in range(n) if frames[c] is not None]
        changed = np.zeros(n, bool)
        if ready:
            changed[ready] = self.gate.measure([frames[c] for c in ready], ready)
        # Tracks predicted for longer than predict_limit need the model too.
        tracks = self._needs_model | ((now - self._observed_at > self.config.predict_limit)
                                      & np.array([bool(self.motion.track_ids(c)) for c in range(n)]))
        picked = self.scheduler.pick(now, [f is not None for f in frames], changed, tracks, limit=limit)
        result = None
        last = self.last_round = {"model": [], "predicted": [], "dropped": [], "staleness": []}
        if picked:
            chosen = set(picked)
            result = self.pipeline.process([f if c in chosen else None for c, f in enumerate(frames)],
                                           [i if c in chosen else None for c, i in enumerate(frame_ids)])
            seen = sorted(result.cameras)   # a skipped frame (a bad image) was not seen
            for event in result.track_events:
                ids = self._confirmed[event.camera]
                ids.add(event.track_id) if event.kind == "track_started" else ids.discard(event.track_id)
            self.gate.mark_seen(seen)
            self.scheduler.mark_seen(seen, now)
            for c in seen:
                self._observe(c, frame_ids[c], result.cameras[c], now)
            self.counts["model_frames"] += len(seen)
            self.staleness_s += [0.0] * len(seen)
            last["model"], last["staleness"] = list(seen), [0.0] * len(seen)
        predicted = {}
        for c in ready:
            if c in picked:
                continue
            if now - self._output_at[c] < 1.0 / self.config.output_fps - 1e-9:   # (a frame clock's rounding)
                self.counts["dropped_frames"] += 1
                last["dropped"].append(c)
                continue
            self._output_at[c] = now
            # No change since the model's look: the objects stand where it saw them (an object that
            # stopped is not extrapolated away); a change: they move on at their velocity.
            predicted[c] = self.motion.predict(c, frame_ids[c], moving=bool(changed[c]))
            self.counts["predicted_frames"] += 1
            self.staleness_s.append(float(now - self._observed_at[c]))
            last["predicted"].append(c)
            last["staleness"].append(self.staleness_s[-1])
        return result, predicted

    def summary(self) -> dict:
        """Model and predicted frames, the share of frames the model skipped, and the staleness
        (age of the newest observation) of the records written, p50 and p95 in seconds."""
        c = self.counts
        taken = c["model_frames"] + c["predicted_frames"] + c["dropped_frames"]
        finite = [v for v in self.staleness_s if np.isfinite(v)]   # a camera not seen yet has none
        out = dict(c, skipped_share=1 - c["model_frames"] / taken if taken else 0.0)
        if finite:
            out.update(staleness_p50_s=float(np.percentile(finite, 50)), staleness_p95_s=float(np.percentile(finite, 95)))
        return out

    def _observe(self, camera: int, frame_id: int, camera_result, now: float) -> None:
        detections, unsure = [], False
        for name, r in camera_result.by_class.items():
            for k in range(len(r)):
                track_id = -1 if r.track_ids is None else int(r.track_ids[k])
                if track_id not in self._confirmed[camera]:   # untracked or tentative: the model should look again
                    unsure = True
                if track_id < 0:   # untracked: nothing to follow (a tentative track is predicted, as
                    continue       # every_frame outputs it: waiting for max_interval would hide it)
                detections.append((track_id, name, float(r.scores[k]), np.asarray(r.boxes[k]),
                               RunLengthMask.of(r.masks, k)))
        before = self.motion.track_ids(camera)
        self.motion.observe(camera, frame_id, detections)
        # A detection without a confirmed track, or a track not found again, asks for the model.
        self._needs_model[camera] = unsure or not before <= self.motion.track_ids(camera)
        self._observed_at[camera] = now


def coco_rle(mask) -> dict:
    """A mask (an encodings.RunLengthMask, or an (H, W) bool array) as a COCO RLE dict
    {"size": [H, W], "counts": bytes}, as the Postprocessor's RLE output gives it."""
    return (mask if isinstance(mask, RunLengthMask) else RunLengthMask.of_dense(mask)).rle()
