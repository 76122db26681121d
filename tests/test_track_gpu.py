"""The tracker's kernels on the GPU: equal to the C++ twin over whole runs (IoU matrices, ids,
events, slot plans), VRAM constant, every output kind through the pipeline."""
import numpy as np
import pytest

import segpost
from pipeline_cases import make_pipeline
from segpost import TrackerConfig
from segpost.postprocess import OutputKind
from track_cases import blob_rounds, run_round, tracked_side

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("size,dtype,mode,threshold", [
    ((288, 288), np.float16, segpost.MaskMode.LOGIT, 0.0),        # SAM3's maps
    ((37, 45), np.float32, segpost.MaskMode.LOGIT, 0.7),
    ((40, 100), np.float16, segpost.MaskMode.PROBABILITY, 0.3),
])
def test_gpu_equals_twin_over_a_run(cp, size, dtype, mode, threshold):
    config = TrackerConfig(min_hits=2, max_age=4, match_threshold=0.05)
    gpu = tracked_side(size, 4, 3, "cuda", config, mask_mode=mode, mask_threshold=threshold)
    cpu = tracked_side(size, 4, 3, "cpu", config, mask_mode=mode, mask_threshold=threshold)
    matched = 0
    for r, outputs in enumerate(blob_rounds(size, dtype, 20, cameras=4, classes=3, seed=size[1])):
        g_results, g_ids, g_events = run_round(*gpu, outputs, r, to_device=cp.asarray)
        c_results, c_ids, c_events = run_round(*cpu, outputs, r)
        for c, (g, h) in enumerate(zip(g_results, c_results)):
            n = g.num_detections
            assert n == h.num_detections
            assert np.array_equal(gpu[1].mask_iou()[c, :n], cpu[1].mask_iou()[c, :n]), (r, c)
            assert np.array_equal(g_ids[c, :n], c_ids[c, :n]), (r, c)
            matched += int(np.count_nonzero(g_ids[c, :n] >= 0))
        assert g_events == c_events
        assert np.array_equal(gpu[1]._core.slot_plan(), cpu[1]._core.slot_plan())
    assert matched > 100


def test_vram_is_constant_over_300_tracked_rounds(cp):
    pipeline, scene = make_pipeline("cuda", cameras=8, track=TrackerConfig(min_hits=1))
    frames = [scene.render(r)[0] for r in range(4)]
    pipeline.process(frames[0])
    cp.cuda.Device().synchronize()
    free_before = segpost._ext.cuda_free_memory()
    report = pipeline.memory_report()
    ids = None
    for r in range(300):
        result = pipeline.process(frames[r % 4])
        ids = ids or {c: result.cameras[c].by_class["red"].track_ids.tolist() for c in result.cameras}
    cp.cuda.Device().synchronize()
    assert segpost._ext.cuda_free_memory() == free_before
    assert pipeline.memory_report() == report and report["tracker"] > 0
    assert ids == {c: result.cameras[c].by_class["red"].track_ids.tolist() for c in result.cameras}


@pytest.mark.parametrize("output", list(OutputKind))
@pytest.mark.parametrize("classes_per_call", [1, "all"])
def test_every_output_kind_gets_the_same_ids(cp, output, classes_per_call):
    reference, scene = make_pipeline("cuda", cameras=4, track=TrackerConfig(min_hits=2))
    pipeline, _ = make_pipeline("cuda", cameras=4, output=output, classes_per_call=classes_per_call,
                                track=TrackerConfig(min_hits=2))
    for r in range(6):
        frames = scene.render(r)[0]
        want, got = reference.process(frames), pipeline.process(frames)
        for camera, result in want.cameras.items():
            for name, frame in result.by_class.items():
                assert np.array_equal(frame.track_ids, got.cameras[camera].by_class[name].track_ids)
        assert got.track_events == want.track_events
