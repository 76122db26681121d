"""Tracking quality on the synthetic tracking world (segpost.synthetic.tracking): one pipeline
run per seed; every camera's detections of every class go, per frame, to segpost's tracker (the
pipeline's ``track=``) and to each peer (track_peers.py), identical boxes, scores and masks. The
ids are scored by TrackEval (HOTA, CLEAR, Identity) with mask IoU as the similarity, MOTS-style:
two bars sharing one box are told apart only by their pixels, so a swap of them counts.

A sequence is one (seed, camera, class). Objects less than MIN_VISIBILITY visible are "don't
care" (as MOTChallenge's distractors): neither counted when missed nor, when a detection lies on
one (mask IoU >= 0.5), counted as a false positive.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from segpost.postprocess import OutputKind
from segpost.synthetic.engines import SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder, prompt_for_class
from segpost.synthetic.tracking import SIZE, TrackingScene

# Thin bars need a finer mask grid than SyntheticGeometry.small(): 144 cells over 240 x 360 pixels
# (the 288 image halves into it; 504 or 1008 would only slow the CPU encoder down).
GEOMETRY = SyntheticGeometry(image_size=288, mask_size=144, channels=4, num_queries=16, prompt_length=4, prompt_width=8)
NAMES = ("red", "green", "blue", "yellow")
SCORE_THRESHOLD = 0.1   # low-score detections reach the trackers (ByteTrack's second stage)
SCORE_NOISE = 0.03      # frame-to-frame jitter of the engine's scores
MIN_VISIBILITY = 0.1
SEGPOST = "segpost"


@dataclass
class Frame:
    """One camera's detections of one class in one round, against its truth."""

    gt: Tuple[Tuple[int, int, int], ...]   # identities of the objects that count
    sim: np.ndarray                        # [len(gt), detections] mask IoU
    ignored: np.ndarray                    # [detections] on a don't-care object
    ids: Dict[str, np.ndarray] = field(default_factory=dict)   # tracker -> [detections] id (-1: none)


@dataclass
class Recording:
    sequences: Dict[Tuple[int, int, int], List[Frame]] = field(default_factory=dict)   # (seed, camera, class)
    kinds: Dict[Tuple[int, int], str] = field(default_factory=dict)                    # (seed, camera) -> kind
    seconds: Dict[str, float] = field(default_factory=dict)   # tracker -> time spent tracking
    camera_frames: int = 0


def build_pipeline(world: TrackingScene, seed: int, track=None, permute_slots: bool = True) -> MultiCameraPipeline:
    """The tracking world's pipeline: DETR-like decoder (slots permuted, scores by visibility)."""
    prompts = [ClassPrompt(n, *prompt_for_class(i, GEOMETRY, full_area=world.full_area(i))) for i, n in enumerate(NAMES)]
    extra = {} if track is None else {"track": track}
    config = PipelineConfig(prompts, max_cameras=len(world.kinds), max_frame_size=SIZE, score_threshold=SCORE_THRESHOLD,
                            output=OutputKind.FULL, **extra)
    decoder = SyntheticDecoder(GEOMETRY, permute_slots=permute_slots, score_noise=SCORE_NOISE, seed=seed)
    return MultiCameraPipeline(SyntheticVisionEncoder(GEOMETRY), decoder, config)


def record(kinds: Sequence[str], seeds: Sequence[int], rounds: int, peers: Dict[str, Callable[[], object]],
           track=None, permute_slots: bool = True, progress: Optional[Callable[[int], None]] = None) -> Recording:
    """Run the world and every tracker over it. With ``track`` (a segpost TrackerConfig), segpost's
    ids come from the pipeline's results; each peer gets one instance per camera and class."""
    rec = Recording()
    for seed in seeds:
        world = TrackingScene(kinds, seed=seed)
        pipeline = build_pipeline(world, seed, track, permute_slots)
        if track is not None:
            _time_tracker(pipeline.tracker, rec.seconds)
        instances = {(name, cam, cls): make() for name, make in peers.items()
                     for cam in range(len(kinds)) for cls in range(len(NAMES))}
        for cam, kind in enumerate(kinds):
            rec.kinds[(seed, cam)] = kind
        for r in range(rounds):
            frames, truths = world.render(r)
            result = pipeline.process(frames)
            for cam, camera in result.cameras.items():
                rgb = frames[cam][..., ::-1]
                for cls, name in enumerate(NAMES):
                    found = camera.by_class[name]
                    boxes, scores, masks = found.boxes.copy(), found.scores.copy(), np.asarray(found.masks).copy()
                    frame = truth_frame(truths[cam], cls, masks)
                    if track is not None:
                        frame.ids[SEGPOST] = np.asarray(found.track_ids, np.int64).copy()
                    for peer in peers:
                        start = time.perf_counter()
                        frame.ids[peer] = instances[(peer, cam, cls)].update(boxes, scores, masks, rgb)
                        rec.seconds[peer] = rec.seconds.get(peer, 0.0) + time.perf_counter() - start
                    rec.sequences.setdefault((seed, cam, cls), []).append(frame)
            rec.camera_frames += len(result.cameras)
            if progress:
                progress(1)
    return rec


def _time_tracker(tracker, seconds: Dict[str, float]) -> None:
    """Count segpost's tracking time as the peers' is counted, whole: the per-class enqueue (on the
    CPU, the twin's mask packing and IoU run there) and the round's matching (track_round)."""
    for name in ("enqueue", "track_round"):
        method = getattr(tracker, name)

        def timed(*args, _method=method, **kwargs):
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                seconds[SEGPOST] = seconds.get(SEGPOST, 0.0) + time.perf_counter() - start
        setattr(tracker, name, timed)


def truth_frame(truth, class_index: int, masks: np.ndarray) -> Frame:
    """Mask IoU of the detections with the class's visible objects; don't-care objects apart."""
    objects = [k for k, a in enumerate(truth.objects) if a.class_index == class_index and truth.visible[k] > 0]
    counted = [k for k in objects if truth.visibility(k) >= MIN_VISIBILITY]
    faint = [k for k in objects if truth.visibility(k) < MIN_VISIBILITY]
    sim = mask_iou(np.stack([truth.mask(k) for k in counted + faint]) if objects else np.zeros((0,) + SIZE, bool), masks)
    ignored = (sim[len(counted):] >= 0.5).any(axis=0)
    return Frame(tuple(truth.identity(k) for k in counted), sim[:len(counted)], ignored)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of two stacks of boolean frame-sized masks."""
    pixels = SIZE[0] * SIZE[1]
    fa, fb = a.reshape(len(a), pixels).astype(np.float32), b.reshape(len(b), pixels).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def sequence_data(frames: List[Frame], tracker: str) -> Optional[dict]:
    """TrackEval's per-sequence input; None when the sequence has neither truth nor predictions."""
    gt_map: Dict[tuple, int] = {}
    tr_map: Dict[int, int] = {}
    gt_ids, tr_ids, sims = [], [], []
    for f in frames:
        ids = f.ids[tracker]
        keep = (ids >= 0) & ~f.ignored
        if len(set(ids[keep].tolist())) != int(keep.sum()):
            raise AssertionError(f"{tracker} gave one id to two detections in one frame: {ids.tolist()}")
        gt_ids.append(np.array([gt_map.setdefault(g, len(gt_map)) for g in f.gt], int))
        tr_ids.append(np.array([tr_map.setdefault(int(i), len(tr_map)) for i in ids[keep]], int))
        sims.append(f.sim[:, keep].astype(float))
    if not gt_map and not tr_map:
        return None
    return {"num_timesteps": len(frames), "num_gt_ids": len(gt_map), "num_tracker_ids": len(tr_map),
            "num_gt_dets": sum(map(len, gt_ids)), "num_tracker_dets": sum(map(len, tr_ids)),
            "gt_ids": gt_ids, "tracker_ids": tr_ids, "similarity_scores": sims}


def _metrics():
    from trackeval.metrics import CLEAR, HOTA, Identity

    return [HOTA(), CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}), Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False})]


def score(rec: Recording, tracker: str, kind: Optional[str] = None) -> Dict[str, float]:
    """HOTA, DetA, AssA, IDF1, MOTA, IDSW over the sequences (of one kind, or all)."""
    metrics = _metrics()
    per_sequence = {}
    for (seed, cam, cls), frames in rec.sequences.items():
        if kind is not None and rec.kinds[(seed, cam)] != kind:
            continue
        data = sequence_data(frames, tracker)
        if data is not None:
            per_sequence[f"{seed}/{cam}/{cls}"] = [m.eval_sequence(data) for m in metrics]
    if not per_sequence:
        raise ValueError(f"no sequence of kind {kind!r} in the recording")
    hota, clear, identity = (m.combine_sequences({s: r[i] for s, r in per_sequence.items()})
                             for i, m in enumerate(metrics))
    return {"HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])), "IDF1": float(identity["IDF1"]), "MOTA": float(clear["MOTA"]),
            "IDSW": int(clear["IDSW"]), "GT_dets": int(clear["CLR_TP"] + clear["CLR_FN"]),
            "sequences": len(per_sequence)}


def table(rec: Recording, trackers: Sequence[str], kinds: Sequence[str]) -> Dict[str, Dict[str, dict]]:
    """{tracker: {kind or "overall": scores, plus "camera_frames_per_s"}}."""
    out = {}
    for tracker in trackers:
        rows = {kind: score(rec, tracker, kind) for kind in kinds}
        rows["overall"] = score(rec, tracker)
        seconds = rec.seconds.get(tracker, 0.0)
        rows["overall"]["camera_frames_per_s"] = rec.camera_frames / seconds if seconds > 0 else float("inf")
        out[tracker] = rows
    return out
