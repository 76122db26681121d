"""What on_change costs in tracking quality (issue 32): the site scenes (segpost.synthetic.site:
long static periods, arrive/stay/leave, busy; light drift and sensor noise) at 25 fps, the
output stream scored at full rate (mask HOTA with TrackEval, tests/track_harness.py) for
every_frame (the model on every frame of every camera) and on_change (a batch of --batch
cameras a round, the others predicted), with the model frames per camera-second each spent.

    python bench/schedule_quality.py --out DIR [--seconds 20] [--batch 1] [--seeds 0,1]
    python bench/schedule_quality.py --out DIR --apart --every 4    # each scene alone, a round every 4 frames

Runs on the CPU (synthetic engines). One round per frame tick (1/25 s on the scene's clock):
on_change's budget is --batch model frames a tick for the scene's cameras. Writes
DIR/schedule_quality.json and prints a Markdown table. ``first_record_delay_p95``: frames from an
object's first visible frame to its first record with a track id (p95 over objects); the extra
delay in rounds is on_change's minus every_frame's, over --every (frames a round).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig  # noqa: E402
from segpost.postprocess import OutputKind  # noqa: E402
from segpost.schedule import ScheduleConfig, ScheduledPipeline  # noqa: E402
from segpost.synthetic.engines import SyntheticDecoder, SyntheticVisionEncoder, prompt_for_class  # noqa: E402
from segpost.synthetic.site import SITE_FPS, SITE_KINDS, SiteScene  # noqa: E402
from segpost.synthetic.tracking import SIZE  # noqa: E402
from segpost.track import TrackerConfig  # noqa: E402
from track_harness import GEOMETRY, NAMES, SCORE_NOISE, SCORE_THRESHOLD, Recording, score, truth_frame  # noqa: E402

TRACKER = "segpost"


def build(scene: SiteScene, seed: int, batch=None) -> MultiCameraPipeline:
    classes = [ClassPrompt(n, *prompt_for_class(i, GEOMETRY, full_area=scene.full_area(i)))
               for i, n in enumerate(NAMES[:scene.num_classes])]
    n = len(scene.kinds)
    config = PipelineConfig(classes, max_cameras=batch or n, cameras=n if batch else None, max_frame_size=SIZE,
                            score_threshold=SCORE_THRESHOLD, output=OutputKind.FULL, track=TrackerConfig())
    decoder = SyntheticDecoder(GEOMETRY, permute_slots=True, score_noise=SCORE_NOISE, seed=seed)
    return MultiCameraPipeline(SyntheticVisionEncoder(GEOMETRY), decoder, config)


def _add(rec: Recording, seed: int, camera: int, truth, by_class: Dict[str, tuple], t: int, predicted: bool,
         phases: List[tuple]) -> None:
    """One camera's output at one frame: by_class[name] = (masks [n, H, W] bool, ids [n]). Each
    counted object's best mask IoU goes to `phases` as (kind, its phase, predicted, IoU)."""
    rec.kinds[(seed, camera)] = truth.kind
    for c, name in enumerate(NAMES[:2]):
        masks, ids = by_class.get(name, (np.zeros((0,) + SIZE, bool), np.zeros(0, np.int64)))
        frame = truth_frame(truth, c, masks)
        frame.ids[TRACKER] = np.asarray(ids, np.int64)
        rec.sequences.setdefault((seed, camera, c), []).append(frame)
        by_identity = {truth.identity(k): k for k in range(len(truth.objects))}
        for row, identity in enumerate(frame.gt):   # truth_frame's counted objects
            best = float(frame.sim[row].max()) if frame.sim.shape[1] else 0.0
            phases.append((truth.kind, truth.objects[by_identity[identity]].phase(t), predicted, best))


def run(mode: str, kinds, seconds: float, seed: int, batch: int, schedule: ScheduleConfig, every: int = 1) -> dict:
    frames_total = int(seconds * SITE_FPS)
    scene = SiteScene(kinds, frames=frames_total, seed=seed)
    n = len(kinds)
    rec = Recording()
    pipeline = build(scene, seed, None if mode == "every_frame" else batch)
    rounds = ScheduledPipeline(pipeline, schedule) if mode == "on_change" else None
    model_frames = np.zeros(n)   # per camera: the site's cameras share the batch, not evenly
    phases: List[tuple] = []
    for t in range(frames_total):
        frames, truths = scene.render(t)
        if rounds is None:
            result, predicted = pipeline.process(frames, frame_ids=[t] * n), {}
        else:
            # A model round every `every` frames (the GPU's round time); the frames between: predicted.
            result, predicted = rounds.process(frames, [t] * n, now=t / SITE_FPS, limit=None if t % every == 0 else 0)
        observed = {} if result is None else result.cameras
        model_frames[list(observed)] += 1
        for cam in range(n):
            if cam in observed:
                out = {name: (np.asarray(r.masks, bool).copy(), r.track_ids.copy())
                       for name, r in observed[cam].by_class.items()}
            else:
                ds = predicted.get(cam)
                assert ds is not None, f"camera {cam} got no record at frame {t}"
                out = {}
                for name in NAMES[:2]:
                    mine = [d for d in ds if d["class"] == name]
                    out[name] = (np.stack([np.asarray(d["mask"], bool) for d in mine]) if mine else np.zeros((0,) + SIZE, bool),
                                 np.array([d["track_id"] for d in mine], np.int64))
            _add(rec, seed, cam, truths[cam], out, t, cam not in observed, phases)
    if rounds is not None:
        assert rounds.counts["model_frames"] == model_frames.sum()
    return {"recording": rec, "model_frames_per_camera_s": model_frames / seconds, "phases": phases}


def first_record_delays(rec: Recording) -> List[int]:
    """Per object: frames from its first visible frame to its first record with a track id on it."""
    delays = []
    for frames in rec.sequences.values():
        first_seen, first_found = {}, {}
        for t, f in enumerate(frames):
            keep = f.ids[TRACKER] >= 0
            for g_index, g in enumerate(f.gt):
                first_seen.setdefault(g, t)
                if g not in first_found and keep.any() and (f.sim[g_index, keep] >= 0.5).any():
                    first_found[g] = t
        delays += [first_found.get(g, len(frames)) - t0 for g, t0 in first_seen.items()]
    return delays


def evaluate(kinds, seconds: float, seeds, batch: int, schedule: ScheduleConfig, every: int = 1,
             apart: bool = False) -> List[dict]:
    """apart: each kind a site of its own (one camera, `batch` 1), else the kinds are the cameras of one site."""
    rows = []
    sites = [(k,) for k in kinds] if apart else [tuple(kinds)]
    for mode in ("every_frame", "on_change"):
        merged, spent, phases = Recording(), {}, []
        for site in sites:
            for seed in seeds:
                out = run(mode, site, seconds, seed, 1 if apart else batch, schedule, every)
                phases += out["phases"]
                # Sites apart: each one's camera 0, told apart by its kind's index in the key.
                offset = kinds.index(site[0]) if apart else 0
                merged.sequences.update({(s, c + offset, k): v for (s, c, k), v in out["recording"].sequences.items()})
                merged.kinds.update({(s, c + offset): v for (s, c), v in out["recording"].kinds.items()})
                for camera, kind in enumerate(site):
                    spent.setdefault(kind, []).append(out["model_frames_per_camera_s"][camera])
        for kind in kinds:
            sub = Recording({k: v for k, v in merged.sequences.items() if merged.kinds[k[:2]] == kind},
                            {k: v for k, v in merged.kinds.items() if v == kind})
            s = score(sub, TRACKER)
            rows.append({"mode": mode, "kind": kind, "HOTA": 100 * s["HOTA"], "DetA": 100 * s["DetA"],
                         "AssA": 100 * s["AssA"], "IDSW": s["IDSW"],
                         "first_record_delay_p95": float(np.percentile(first_record_delays(sub), 95)),
                         "model_frames_per_camera_s": float(np.mean(spent[kind])), "frames_per_round": every if mode == "on_change" else 1,
                         "iou_by_phase": _by_phase([p for p in phases if p[0] == kind])})
    return rows


def _by_phase(phases: List[tuple]) -> Dict[str, dict]:
    """Mean best IoU of the true objects, per phase, on the model's frames and the predicted ones."""
    out: Dict[str, dict] = {}
    for phase in sorted({p[1] for p in phases if p[1]}):
        for predicted, name in ((False, "model"), (True, "predicted")):
            values = [p[3] for p in phases if p[1] == phase and p[2] == predicted]
            if values:
                out.setdefault(phase, {})[name] = {"iou": float(np.mean(values)), "frames": len(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=1, help="on_change: model frames a tick for the scene's cameras")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--max-interval", type=float, default=2.0)
    parser.add_argument("--every", type=int, default=1,
                        help="on_change: a model round every N camera frames (the GPU's round time in frames)")
    parser.add_argument("--apart", action="store_true", help="each scene kind a site of its own (one camera)")
    parser.add_argument("--kinds", default=",".join(SITE_KINDS))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    schedule = ScheduleConfig(mode="on_change", max_interval=args.max_interval, output_fps=SITE_FPS)
    rows = evaluate(args.kinds.split(","), args.seconds, [int(s) for s in args.seeds.split(",")], args.batch, schedule,
                    every=args.every, apart=args.apart)
    reference = {r["kind"]: r for r in rows if r["mode"] == "every_frame"}
    for r in rows:   # the goal: a new object's first record at most one round later than every_frame's (p95)
        r["first_record_extra_rounds_p95"] = (r["first_record_delay_p95"] - reference[r["kind"]]["first_record_delay_p95"]
                                              ) / r["frames_per_round"]
    from tables import print_table, save_json

    save_json(os.path.join(args.out, "schedule_quality.json"), rows)
    print_table(["mode", "scene", "HOTA", "DetA", "AssA", "IDSW", "first record delay p95 (frames)",
                 "extra delay p95 (rounds)", "model frames / camera-s"], rows,
                lambda r: [r["mode"], r["kind"], f"{r['HOTA']:.1f}", f"{r['DetA']:.1f}", f"{r['AssA']:.1f}",
                           str(r["IDSW"]), f"{r['first_record_delay_p95']:.0f}",
                           f"{r['first_record_extra_rounds_p95']:.2f}", f"{r['model_frames_per_camera_s']:.1f}"],
                ["mode", "kind"])
    # Where on_change loses: each true object's best mask IoU by what it does, model and predicted frames.
    cells = []
    for r in rows:
        for phase, by in r["iou_by_phase"].items():
            cells.append({"mode": r["mode"], "kind": r["kind"], "phase": phase, **{
                k: f"{v['iou']:.3f} ({v['frames']})" for k, v in by.items()}})
    print_table(["mode", "scene", "phase", "IoU on the model's frames (frames)", "IoU on predicted frames (frames)"],
                cells, lambda c: [c["mode"], c["kind"], c["phase"], c.get("model", "-"), c.get("predicted", "-")],
                ["mode", "kind"])


if __name__ == "__main__":
    main()
