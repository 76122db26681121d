"""segpost.schedule.ScheduledPipeline (CPU, synthetic engines): a pipeline of engine batch 2
serving 6 cameras; the moving camera gets the model every round, the static ones predicted
records that still show their objects, and each is seen at least every max_interval."""
import numpy as np

from pipeline_cases import NAMES, camera_sizes, geometry_for, prompts
from segpost import TrackerConfig
from segpost.pipeline import MultiCameraPipeline, PipelineConfig
from segpost.schedule import ScheduleConfig, ScheduledPipeline
from segpost.synthetic.engines import SyntheticDecoder, SyntheticVisionEncoder
from segpost.synthetic.scene import Scene

ROUND_S = 0.1
CAMERAS, BATCH, MOVING = 6, 2, 5


def scheduled(max_interval=1.0, predict_limit=1.0):
    geometry = geometry_for("cpu")
    sizes = camera_sizes("cpu", CAMERAS)
    config = PipelineConfig(prompts(geometry, 2), max_cameras=BATCH, cameras=CAMERAS,
                            max_frame_size=(max(h for h, _ in sizes), max(w for _, w in sizes)),
                            track=TrackerConfig(min_hits=1))
    pipeline = MultiCameraPipeline(SyntheticVisionEncoder(geometry, device="cpu"),
                                   SyntheticDecoder(geometry, device="cpu"), config)
    rounds = ScheduledPipeline(pipeline, ScheduleConfig(mode="on_change", max_interval=max_interval, output_fps=100,
                                                        predict_limit=predict_limit))
    return rounds, Scene(sizes, num_classes=2, seed=3)


def mask_iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_batch_of_two_serves_six_cameras():
    rounds, scene = scheduled()
    served = {c: [] for c in range(CAMERAS)}
    still, still_truths = scene.render(0)
    moved_iou = []
    for r in range(30):
        now = r * ROUND_S
        moving, truths = scene.render(r * 8)   # camera 5 moves; the others show round 0 for ever
        frames = [moving[c] if c == MOVING else still[c] for c in range(CAMERAS)]
        overdue = int((rounds.scheduler.staleness(now) >= 1.0)[:MOVING].sum())
        result, predicted = rounds.process(frames, [r] * CAMERAS, now)
        picked = sorted(result.cameras) if result else []
        assert len(picked) <= BATCH
        assert set(picked) | set(predicted) == set(range(CAMERAS))   # every camera got a record
        assert not set(picked) & set(predicted)
        for c in picked:
            served[c].append(now)
        if r >= 3:   # once every camera was seen: the moving camera is served in every round
            # that the still cameras due by max_interval leave a slot in (they go first)
            assert MOVING in picked or overdue >= BATCH, (r, picked)
            for c, detections in predicted.items():   # each camera's objects, where they are now
                assert len(detections) == 4 and all(d["predicted"] and d["observed_frame"] < r for d in detections)
                truth = truths[c] if c == MOVING else still_truths[c]
                for d in detections:
                    k = [i for i, o in enumerate(truth.objects) if NAMES[o.class_index] == d["class"]]
                    best = max(mask_iou(d["mask"], truth.mask(i)) for i in k)
                    if c != MOVING:   # the still cameras' masks stay put
                        assert best > 0.9, (r, c, d["class"], best)
                        continue
                    # the moving camera's are extrapolated: closer to the truth than the last mask seen
                    seen = rounds.motion._tracks[c][d["track_id"]].mask   # the mask it holds
                    moved_iou.append((best, max(mask_iou(seen, truth.mask(i)) for i in k)))
    for c in range(CAMERAS):   # seen at least every max_interval (+ one round), and at the start
        gaps = np.diff([0.0] + served[c] + [29 * ROUND_S])
        assert served[c] and gaps.max() <= 1.0 + ROUND_S + 1e-9, (c, served[c])
    assert len(moved_iou) >= 8, moved_iou   # the moving camera was predicted too (while still cameras were due)
    predicted_iou, stale_iou = np.mean(moved_iou, axis=0)
    assert predicted_iou > 0.8 and predicted_iou > stale_iou + 0.1, moved_iou
    counts = rounds.counts
    assert counts["model_frames"] + counts["predicted_frames"] == 30 * CAMERAS
    assert counts["model_frames"] < 30 * BATCH * 0.8, counts   # the still cameras left slots free
    summary = rounds.summary()
    assert summary["skipped_share"] == 1 - counts["model_frames"] / (30 * CAMERAS)
    # Records are at most max_interval (+ a round) older than the model's look at their camera.
    assert 0 < summary["staleness_p95_s"] <= 1.0 + ROUND_S and summary["staleness_p50_s"] <= summary["staleness_p95_s"]


def test_tracks_predicted_too_long_ask_for_the_model():
    """max_interval 10 s, predict_limit 0.3 s: the still cameras' tracks bring them back to the
    model long before max_interval (in the slot the changing camera leaves)."""
    rounds, scene = scheduled(max_interval=10.0, predict_limit=0.3)
    still, _ = scene.render(0)
    served = {c: [] for c in range(CAMERAS)}
    for r in range(40):
        moving, _ = scene.render(r * 8)
        frames = [moving[c] if c == MOVING else still[c] for c in range(CAMERAS)]
        result, _ = rounds.process(frames, [r] * CAMERAS, r * ROUND_S)
        for c in result.cameras if result else ():
            served[c].append(r * ROUND_S)
    for c in range(MOVING):
        gaps = np.diff(served[c] + [39 * ROUND_S])
        # 5 still cameras share one slot a round: each waits its turn after predict_limit
        assert len(served[c]) >= 4 and gaps.max() <= 0.3 + CAMERAS * ROUND_S, (c, served[c])
