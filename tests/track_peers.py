"""The peers segpost's tracker is measured against: Roboflow's ``trackers`` (Apache-2.0; SORT,
ByteTrack, OC-SORT, BoT-SORT, McByte); boxmot (AGPL) is an optional peer of
bench/track_quality.py only. Each is fed one camera's detections of one class per frame, exactly
the boxes and scores (and masks) the pipeline produced, and answers a track id per detection
(-1: none, e.g. a tentative track).

Settings are each tracker's defaults, except: the world's frame rate (synthetic/tracking.FPS, so
``lost_track_buffer`` means the same second as segpost's ``max_age``), and camera motion
compensation off (the synthetic cameras do not move; it would need frames the peers are not given).
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Dict, Optional

import numpy as np

from segpost.synthetic.tracking import FPS

TRACKERS_MISSING = None if importlib.util.find_spec("trackers") else (
    "the peers need Roboflow's trackers package: pip install '.[track-eval]'")


class BoxPeer:
    """A ``trackers`` tracker fed boxes and scores (masks and frame unused)."""

    uses_frame = False

    def __init__(self, tracker):
        self.tracker = tracker

    def update(self, boxes: np.ndarray, scores: np.ndarray, masks: np.ndarray, frame: Optional[np.ndarray]) -> np.ndarray:
        import supervision as sv

        n = len(boxes)
        ids = np.full(n, -1, np.int64)
        detections = sv.Detections(xyxy=boxes.astype(np.float32).reshape(n, 4), confidence=scores.astype(np.float32),
                                   class_id=np.zeros(n, int), data={"det": np.arange(n)})
        out = self._run(detections, frame)
        if len(out):
            ids[np.asarray(out.data["det"])] = out.tracker_id
        return ids

    def _run(self, detections, frame):
        return self.tracker.update(detections)


class McBytePeer(BoxPeer):
    """McByte given the engine's masks the one way its API takes masks: a MaskManager answering,
    for each live tracklet, a mask and its confidence. Its own manager propagates SAM masks with
    Cutie (weights downloaded at run time: impossible here); this one hands each tracklet the mask
    of the detection it was given last (zero-motion propagation) with that detection's score.
    McByte compares a tracklet's mask with the candidate detections' boxes (coverage, fill), not
    with their masks."""

    uses_frame = True

    def __init__(self, tracker, manager):
        super().__init__(tracker)
        self.manager = manager

    def update(self, boxes, scores, masks, frame):
        ids = super().update(boxes, scores, masks, frame)
        self.manager.observe(ids, masks, scores)
        return ids

    def _run(self, detections, frame):
        return self.tracker.update(detections, frame=frame)


def _mask_manager():
    from trackers.core.mcbyte.mask_manager import MaskManager
    from trackers.core.mcbyte.masks.base import MaskOutput

    class LastDetectionMasks(MaskManager):
        def __init__(self):   # no generator/propagator: the masks come from the detections
            self.last: Dict[int, tuple] = {}

        def reset(self) -> None:
            self.last.clear()

        def observe(self, ids, masks, scores) -> None:
            for k in np.flatnonzero(ids >= 0):
                self.last[int(ids[k])] = (np.asarray(masks[k], bool), float(scores[k]))

        def get_updated_masks(self, frame, previous_frame, previous_tracklets, new_tracklets=None,
                              removed_tracklet_ids=None):
            for tracker_id in removed_tracklet_ids or ():
                self.last.pop(tracker_id, None)
            if not self.last:
                return None
            order = list(self.last)
            return MaskOutput(np.stack([self.last[i][0] for i in order]), {i: k for k, i in enumerate(order)},
                              {i: self.last[i][1] for i in order})

    return LastDetectionMasks()


def trackers_peers() -> Dict[str, Callable[[], BoxPeer]]:
    """Name -> a factory of one fresh peer (one per camera and class)."""
    from trackers import BoTSORTTracker, ByteTrackTracker, McByteTracker, OCSORTTracker, SORTTracker

    def mcbyte_masks():
        manager = _mask_manager()
        return McBytePeer(McByteTracker(frame_rate=FPS, enable_cmc=False, mask_manager=manager), manager)

    return {
        "SORT": lambda: BoxPeer(SORTTracker(frame_rate=FPS)),
        "ByteTrack": lambda: BoxPeer(ByteTrackTracker(frame_rate=FPS)),
        "OC-SORT": lambda: BoxPeer(OCSORTTracker(frame_rate=FPS)),
        "BoT-SORT": lambda: BoxPeer(BoTSORTTracker(frame_rate=FPS, enable_cmc=False)),
        "McByte": lambda: BoxPeer(McByteTracker(frame_rate=FPS, enable_cmc=False)),
        "McByte+masks": mcbyte_masks,
    }
