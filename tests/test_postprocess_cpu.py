"""The C++ CPU twin against the independent numpy + OpenCV reference."""
import numpy as np
import pytest

import segpost
from cases import check_against_reference, make_case
from host_memory import host_allocations


def cpu_postprocessor(case, **kwargs):
    opts = dict(max_frames=case.num_frames, num_queries=case.logits.shape[1],
                mask_size=case.masks.shape[2:], capacity=256,
                max_frame_size=(max(h for h, _ in case.frame_sizes), max(w for _, w in case.frame_sizes)),
                score_threshold=case.score_threshold, device="cpu")
    opts.update(kwargs)
    return segpost.Postprocessor(**opts)


def run(case, **kwargs):
    return cpu_postprocessor(case, **kwargs).run(case.logits, case.presence, case.boxes, case.masks,
                                                 case.frame_sizes, class_id=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (1080, 1920), (2160, 3840)])
def test_twin_matches_reference(size, dtype):
    kept = 2 if size[0] > 1000 else 6
    case = make_case(num_frames=2, frame_sizes=[size], dtype=dtype, kept_per_frame=kept, seed=size[0])
    result = run(case)
    assert result.num_detections == 2 * kept
    check_against_reference(result, case)
    for frame in result:
        assert frame.masks.dtype == np.bool_ and frame.boxes.dtype == np.float32
        assert (frame.class_ids == 3).all()


def test_mixed_frame_sizes_in_one_batch():
    case = make_case(num_frames=4, frame_sizes=[(480, 640), (7, 5), (1, 1), (1080, 1920)], kept_per_frame=3, seed=7)
    check_against_reference(run(case), case)


def test_small_masks_and_queries_and_downscale():
    # Downscaling (mask larger than the frame) and a non-square, non-SAM mask size.
    case = make_case(num_frames=3, num_queries=17, mask_size=(40, 24), frame_sizes=[(13, 9), (300, 17)],
                     kept_per_frame=4, seed=11, smooth=False)
    check_against_reference(run(case), case)


def test_zero_detections():
    case = make_case(num_frames=3, kept_per_frame=0)
    result = run(case)
    assert result.num_detections == 0 and result.passed == 0 and not result.overflow
    for frame, (h, w) in zip(result, case.frame_sizes):
        assert frame.masks.shape == (0, h, w) and frame.boxes.shape == (0, 4)


def test_all_200_kept():
    case = make_case(num_frames=1, kept_per_frame=200, frame_sizes=[(30, 40)], score_threshold=0.0)
    result = run(case, capacity=200)
    assert len(result[0]) == 200 and not result.overflow
    check_against_reference(result, case)


def test_capacity_overflow_keeps_the_best_scores():
    case = make_case(num_frames=4, kept_per_frame=30, frame_sizes=[(20, 30)], seed=3)
    result = run(case, capacity=50)
    assert result.overflow and result.passed == 120 and result.num_detections == 50
    check_against_reference(result, case, capacity=50)
    kept_scores = np.concatenate([f.scores for f in result])
    all_passing = np.sort(np.concatenate([f.scores for f in run(case, capacity=256)]))[::-1]
    np.testing.assert_array_equal(np.sort(kept_scores)[::-1], all_passing[:50])


def test_top_k_per_frame():
    case = make_case(num_frames=3, kept_per_frame=12, frame_sizes=[(20, 30)], seed=5)
    result = run(case, top_k=4)
    assert [len(f) for f in result] == [4, 4, 4]
    check_against_reference(result, case, top_k=4)


def test_ties_are_ordered_by_query_index():
    case = make_case(num_frames=1, kept_per_frame=0, frame_sizes=[(8, 8)])
    case.logits[0, [150, 3, 77]] = 5.0
    result = run(case)
    np.testing.assert_array_equal(result[0].query_ids, [3, 77, 150])


def test_presence_is_optional_and_may_be_flat():
    case = make_case(num_frames=2, presence=False, seed=9)
    check_against_reference(run(case), case)
    case2 = make_case(num_frames=2, seed=9)
    flat = run(case2)  # presence [F, 1]
    pp = cpu_postprocessor(case2)
    flat2 = pp.run(case2.logits, case2.presence.reshape(-1), case2.boxes, case2.masks, case2.frame_sizes)
    np.testing.assert_array_equal(flat[1].scores, flat2[1].scores)


def test_probability_mode_matches_transformers_order():
    case = make_case(num_frames=2, seed=13, frame_sizes=[(333, 517)])
    result = run(case, mask_mode=segpost.MaskMode.PROBABILITY)
    check_against_reference(result, case, probability=True)


def test_custom_mask_threshold():
    case = make_case(num_frames=1, seed=17, frame_sizes=[(100, 120)])
    check_against_reference(run(case, mask_threshold=1.5), case, mask_threshold=1.5)


def test_nan_and_inf_have_defined_behaviour():
    case = make_case(num_frames=2, kept_per_frame=3, frame_sizes=[(50, 70)], seed=21)
    case.logits[0, :3] = np.nan            # never kept
    case.logits[0, 10] = np.inf            # score = sigmoid(presence)
    case.logits[1, 20] = -np.inf           # never kept
    case.boxes[0, 10] = [np.nan, 0.2, np.inf, -np.inf]
    case.masks[0, 10, :50, :] = np.nan     # background
    case.masks[0, 10, 100:120, :] = np.inf
    case.masks[0, 10, 200:210, 5:9] = -np.inf
    result = run(case)
    assert 10 in result[0].query_ids and not set(result[0].query_ids) & {0, 1, 2}
    assert 20 not in result[1].query_ids
    k = list(result[0].query_ids).index(10)
    np.testing.assert_allclose(result[0].scores[k], 1.0 / (1.0 + np.exp(-case.presence[0, 0])), rtol=1e-6)
    np.testing.assert_array_equal(result[0].boxes[k], [0.0, 0.2 * 50, 70.0, 0.0])
    check_against_reference(result, case)


def test_nan_presence_keeps_nothing_in_that_frame():
    case = make_case(num_frames=2, kept_per_frame=4, seed=23)
    case.presence[1, 0] = np.nan
    result = run(case)
    assert len(result[0]) == 4 and len(result[1]) == 0


def test_single_frame_size_pair_applies_to_all_frames():
    case = make_case(num_frames=3, frame_sizes=[(40, 60)], seed=2)
    pp = cpu_postprocessor(case)
    result = pp.run(case.logits, case.presence, case.boxes, case.masks, (40, 60))
    assert all(f.masks.shape[1:] == (40, 60) for f in result)


def test_fewer_frames_than_max():
    case = make_case(num_frames=3, frame_sizes=[(40, 60)], seed=4)
    result = cpu_postprocessor(case, max_frames=8).run(case.logits, case.presence, case.boxes, case.masks,
                                                        case.frame_sizes)
    check_against_reference(result, case)


def test_results_are_views_until_the_next_run_and_copy_keeps_them():
    a = make_case(num_frames=1, seed=30, frame_sizes=[(20, 20)])
    b = make_case(num_frames=1, seed=31, frame_sizes=[(20, 20)])
    pp = cpu_postprocessor(a)
    first = pp.run(a.logits, a.presence, a.boxes, a.masks, a.frame_sizes)
    kept = first.copy()
    before = kept[0].query_ids.copy()
    pp.run(b.logits, b.presence, b.boxes, b.masks, b.frame_sizes)
    np.testing.assert_array_equal(kept[0].query_ids, before)
    assert not first[0].scores.flags.writeable


def test_torch_cpu_tensors_go_to_the_twin():
    torch = pytest.importorskip("torch")
    case = make_case(num_frames=2, seed=40)
    result = run(case).copy()
    pp = cpu_postprocessor(case)
    from_torch = pp.run(*(torch.from_numpy(a) for a in (case.logits, case.presence, case.boxes, case.masks)),
                        case.frame_sizes, class_id=3)
    for x, y in zip(result, from_torch):
        np.testing.assert_array_equal(x.masks, y.masks)
        np.testing.assert_array_equal(x.scores, y.scores)


def test_a_run_allocates_nothing_on_the_host():
    """Results are views into buffers allocated at construction: 50 runs (each keeping ~3 MB of
    masks) allocate no numpy buffer and leave nothing behind."""
    case = make_case(num_frames=2, frame_sizes=((480, 640),), seed=50)
    pp = cpu_postprocessor(case)
    assert pp.memory_report()["host"] > 0
    kept = pp.run(case.logits, case.presence, case.boxes, case.masks, case.frame_sizes)
    assert sum(np.asarray(f.masks).nbytes for f in kept) > 1 << 20
    with host_allocations() as seen:
        for _ in range(50):
            pp.run(case.logits, case.presence, case.boxes, case.masks, case.frame_sizes)
    assert seen.traced_peak < 256 * 1024 and seen.traced_growth < 256 * 1024 and seen.heap_growth < 1024 * 1024, seen
