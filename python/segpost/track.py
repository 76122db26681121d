"""segpost.Tracker: identities across frames, per camera and class, on the compacted results.

Each class-batch, right after its Postprocessor compacted it (on the same stream, while the
engine's pred_masks is intact), every kept detection's low-res mask is packed into bits and
compared with the last mask of every live track of its camera and class, moved by the track's
predicted motion: a mask IoU matrix, computed on the GPU (or by the C++ CPU twin for numpy
inputs). Once per round, ``update`` associates on the host as ByteTrack does (high-score
detections against every track, then low-score ones against the confirmed and lost tracks left
over) on a similarity fusing the box IoU of a Kalman-predicted box and that mask IoU, so two
objects that share one box stay apart. The model's query slots are never used as identities. A fixed pool of
``max_tracks`` slots per camera keeps each track's last mask on the device: memory is allocated
at construction and stays constant.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

from pydantic import Field, TypeAdapter, ValidationError

import numpy as np

from . import _ext
from ._settings import Int, Number, cpp_values, describe_errors, settings, to_struct
from ._arrays import as_array_ref, stream_handle
from .results import BatchResult

EVENT_KINDS = ("track_started", "track_ended")   # codes of csrc/track/tracks.h's TrackEventKind


@settings
class TrackerConfig:
    """How tracks are matched and how long they live (frames are the camera's own frames).

    high_score: detections scoring at least this are matched first, against every track; lower
      ones only continue confirmed or lost tracks (lower the pipeline's score_threshold to get any).
    The C++ side is csrc/track/tracks.h's TrackerConfig, bound field by field
    (segpost._ext.TrackerConfig) and filled by ``cpp_config``.
    """

    max_tracks: Int = Field(64, ge=1, le=4096,
                            description="track slots per camera, shared by its classes; a full pool gives up its "
                                        "longest-lost track for a new one, or refuses it (Tracker.refused)")
    max_age: Int = Field(30, ge=0, le=2**31 - 1,
                         description="frames a lost (unmatched) track is kept before it ends (30: about a second)")
    min_hits: Int = Field(3, ge=1, le=2**31 - 1,
                          description="matched frames that confirm a track (track_started); 1 confirms at once")
    high_score: Number = Field(0.5, ge=0, le=1,
                               description="detections scoring at least this are matched first, against every "
                                           "track; lower ones only continue confirmed or lost tracks")
    match_threshold: Number = Field(0.1, gt=0, le=1,
                                    description="least similarity of a match: (1 - mask_weight) box IoU + "
                                                "mask_weight mask IoU (above 0: 0 would match objects apart)")
    mask_weight: Number = Field(0.5, ge=0, le=1, description="the mask IoU's share of the similarity")
    new_track_score: Number = Field(0.6, ge=0, le=1, description="least score of an unmatched detection that "
                                                                 "starts a track")

    CPP_SPELLED: ClassVar[Dict[str, Tuple[str, ...]]] = {}

    def cpp_config(self, struct: Any, *, cameras: int, classes: int, capacity: int, mask_size: Tuple[int, int],
                   device: str) -> Any:
        """csrc's TrackerConfig (``struct``: a segpost._ext.TrackerConfig to fill): these settings
        and the sizes the pipeline knows."""
        return to_struct(cpp_values(self, {}, max_cameras=int(cameras), num_classes=int(classes),
                                    capacity=int(capacity), mask_h=int(mask_size[0]), mask_w=int(mask_size[1]),
                                    use_cuda=device == "cuda"), struct)

    @classmethod
    def from_value(cls, value: Any, where: str = "track") -> Optional["TrackerConfig"]:
        """A config file's ``"track"``: true / false, or an object of TrackerConfig fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be true, false or an object of tracker settings, got {value!r}")
        try:
            return TypeAdapter(cls).validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{where}: " + describe_errors(exc, model=cls)) from None


@dataclass(frozen=True)
class TrackEvent:
    """A track confirmed (``track_started``: first_frame is when it was first seen) or removed
    (``track_ended``: last_frame is its last matched frame). camera: the pipeline's camera slot."""

    kind: str
    camera: int
    class_name: str
    track_id: int
    first_frame: int
    last_frame: int
    frames_seen: int


class Tracker:
    """A tracker for ``cameras`` cameras and the classes ``class_names`` (in class-index order),
    fed each round by one Postprocessor per class (capacity at most ``capacity``, masks of
    ``mask_size``). MultiCameraPipeline(PipelineConfig(track=...)) builds and drives one; the
    calls below are for pipelines of your own:

        for c, post in enumerate(posts):              # every class, in order, one stream
            post.enqueue(logits[c], presence[c], boxes[c], masks[c], sizes, class_id=c, stream=s)
            tracker.enqueue(c, post, masks[c], cameras, stream=s)   # before masks[c] is overwritten
        results = [post.result() for post in posts]
        ids, events = tracker.update(posts, frame_ids, sizes)   # ids[c][k]: record k's track id

    Track ids are int64, per camera, increasing from 1 and never reused; -1 marks a detection
    without a track (a low-score one that continued none, or one the full pool refused).
    """

    def __init__(self, config: TrackerConfig, *, cameras: int, class_names: Sequence[str], capacity: int,
                 mask_size: Tuple[int, int], device: str):
        if not isinstance(config, TrackerConfig):
            raise TypeError(f"config must be a segpost.TrackerConfig, got {config!r}")
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        self.config, self.device = config, device
        self.class_names = tuple(class_names)
        self.cameras = int(cameras)
        self._core = _ext.Tracker(config.cpp_config(_ext.TrackerConfig(), cameras=self.cameras,
                                                    classes=len(self.class_names), capacity=capacity,
                                                    mask_size=mask_size, device=device))
        self._ids = self._core.track_ids()
        self._ids.flags.writeable = False

    def enqueue(self, class_index: int, postprocessor: Any, pred_masks: Any, cameras: Sequence[int],
                stream: Any = None) -> None:
        """Class ``class_index``'s batch, right after ``postprocessor.enqueue`` with the same
        pred_masks and stream; frame f of the batch is camera ``cameras[f]``. The tracker reads
        the batch through ``postprocessor.round_view()`` alone (csrc/postprocess/round_view.h)."""
        masks = as_array_ref(pred_masks, "pred_masks")
        cameras = [int(c) for c in cameras]
        if masks.on_device:
            if self.device != "cuda":
                raise TypeError("CUDA arrays given to a Tracker built with device='cpu'")
            self._core.enqueue(int(class_index), postprocessor.round_view(), masks.ptr, masks.dtype_code, cameras,
                               stream_handle(stream))
        else:
            if self.device != "cpu":
                raise TypeError("numpy arrays given to a Tracker built with device='cuda'")
            self._core.run_cpu(int(class_index), postprocessor.round_view(), masks.ptr, masks.dtype_code, cameras)

    def update(self, postprocessors: Sequence[Any], frame_ids: Sequence[int],
               frame_sizes: Sequence[Tuple[int, int]]) -> Tuple[np.ndarray, Tuple[TrackEvent, ...]]:
        """Match the round (after each Postprocessor's result()): returns ids [classes, capacity]
        (int64, record k of class c's batch has ids[c, k]; a view valid until the next update) and
        the round's events."""
        raw = self._core.update([p.round_view(synchronize=True) for p in postprocessors], [int(i) for i in frame_ids],
                                [int(h) for h, _ in frame_sizes], [int(w) for _, w in frame_sizes])
        return self._ids, self._events(raw)

    @property
    def ids(self) -> np.ndarray:
        """The last update's track ids [classes, capacity] (update's array: a read-only view)."""
        return self._ids

    def track_round(self, postprocessors: Sequence[Any], batches: Sequence[BatchResult], frame_ids: Sequence[int],
                    frame_sizes: Sequence[Tuple[int, int]]) -> Tuple[List[BatchResult], Tuple[TrackEvent, ...]]:
        """update(), then each class's BatchResult with its frames' track_ids."""
        ids, events = self.update(postprocessors, frame_ids, frame_sizes)
        return [with_track_ids(batch, ids[c]) for c, batch in enumerate(batches)], events

    def abandon_round(self) -> None:
        """Forget the classes enqueued since the last update (their round failed part-way): the
        tracks stay as they were and the next round starts afresh."""
        self._core.abandon_round()

    def finish(self, camera: Optional[int] = None) -> Tuple[TrackEvent, ...]:
        """End the live tracks of ``camera`` (None: of every camera): the end of a file, shutdown."""
        return self._events(self._core.finish(-1 if camera is None else self._camera(camera)))

    def set_next_id(self, camera: int, next_id: int) -> None:
        """Continue ``camera``'s ids from ``next_id`` (a restarted worker resuming a camera);
        ids already used stay used (ValueError otherwise)."""
        self._core.set_next_id(self._camera(camera), int(next_id))

    def next_id(self, camera: int) -> int:
        return self._core.next_id(self._camera(camera))

    def refused(self, camera: int) -> int:
        """New tracks refused so far because the camera's pool was full of live tracks."""
        return self._core.refused(self._camera(camera))

    def live_tracks(self, camera: int) -> int:
        return self._core.live(self._camera(camera))

    def mask_iou(self) -> np.ndarray:
        """The last round's mask IoU matrices [classes, capacity, max_tracks] (read-only view)."""
        view = self._core.mask_iou()
        view.flags.writeable = False
        return view

    def memory_report(self) -> dict:
        """Bytes held, all allocated at construction and constant after."""
        return {"device": self._core.device_bytes, "pinned_host": self._core.pinned_bytes,
                "host": self._core.host_bytes}

    def _camera(self, camera: int) -> int:
        if isinstance(camera, bool) or not isinstance(camera, (int, np.integer)) or not 0 <= camera < self.cameras:
            raise ValueError(f"camera must be an int in [0, {self.cameras - 1}], got {camera!r}")
        return int(camera)

    def _events(self, raw: List[tuple]) -> Tuple[TrackEvent, ...]:
        return tuple(TrackEvent(EVENT_KINDS[kind], camera, self.class_names[c], *rest)
                     for kind, camera, c, *rest in raw)


def with_track_ids(batch: BatchResult, ids: np.ndarray) -> BatchResult:
    """``batch`` with each frame's track ids: the slices of one class's ids row, in record order."""
    frames, start = [], 0
    for frame in batch.frames:
        frames.append(dataclasses.replace(frame, track_ids=ids[start: start + len(frame)]))
        start += len(frame)
    return dataclasses.replace(batch, frames=tuple(frames))


class FrameIds:
    """Each camera's frame index for the track events: given with each round, or counted (how
    many frames the camera was given before)."""

    def __init__(self, cameras: int):
        self._seen = [0] * cameras

    def round(self, frames: Sequence[Any], frame_ids: Optional[Sequence[Optional[int]]]) -> List[Optional[int]]:
        if frame_ids is None:
            ids = [None if f is None else self._seen[c] for c, f in enumerate(frames)]
        elif not isinstance(frame_ids, (list, tuple)) or len(frame_ids) != len(frames):
            raise ValueError(f"frame_ids must be a list with one entry per entry of frames ({len(frames)})")
        else:
            ids = list(frame_ids)
            for c, (frame, i) in enumerate(zip(frames, ids)):
                if frame is not None and (isinstance(i, bool) or not isinstance(i, (int, np.integer))):
                    raise ValueError(f"frame_ids[{c}] must be an int for a camera with a frame, got {i!r}")
        for c, frame in enumerate(frames):
            self._seen[c] += frame is not None
        return ids
