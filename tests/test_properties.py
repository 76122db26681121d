"""Property tests: random shapes, frame sizes, thresholds, dtypes, top-k and capacity. The CPU twin
is compared with the reference, CUDA with the twin. derandomize=True: CI runs a fixed list."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import segpost  # noqa: E402
from cases import Case, assert_same_results, check_against_reference  # noqa: E402
from reference import reference_scores  # noqa: E402

SETTINGS = dict(max_examples=60, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def batches(draw):
    num_frames = draw(st.integers(1, 4))
    num_queries = draw(st.integers(1, 40))
    mask_h, mask_w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    sizes = [(draw(st.integers(1, 90)), draw(st.integers(1, 90))) for _ in range(num_frames)]
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (num_frames, num_queries)).astype(dtype)
    presence = rng.normal(2.0, 2.0, (num_frames, 1)).astype(dtype) if draw(st.booleans()) else None
    boxes = rng.uniform(-0.2, 1.2, (num_frames, num_queries, 4)).astype(dtype)
    masks = rng.normal(0.0, 2.0, (num_frames, num_queries, mask_h, mask_w)).astype(dtype)
    threshold = draw(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.9, 1.0]))
    case = Case(logits, presence, boxes, masks, sizes, threshold)
    # A score within float rounding of the threshold may be kept by one side and not the other.
    scores = reference_scores(logits.astype(np.float32), None if presence is None else presence.astype(np.float32))
    assume(np.all(np.abs(scores - threshold) > 1e-5))
    options = dict(top_k=draw(st.one_of(st.none(), st.integers(1, 6))),
                   capacity=draw(st.integers(1, 60)),
                   mask_mode=draw(st.sampled_from(list(segpost.MaskMode))))
    return case, options


def postprocessor(case, device, **options):
    return segpost.Postprocessor(
        max_frames=case.num_frames, num_queries=case.logits.shape[1], mask_size=case.masks.shape[2:],
        max_frame_size=(max(h for h, _ in case.frame_sizes), max(w for _, w in case.frame_sizes)),
        score_threshold=case.score_threshold, device=device, **options)


def arrays(case):
    return case.logits, case.presence, case.boxes, case.masks


@settings(**SETTINGS)
@given(batches())
def test_twin_matches_reference_on_random_batches(batch):
    case, options = batch
    result = postprocessor(case, "cpu", **options).run(*arrays(case), case.frame_sizes)
    check_against_reference(result, case, probability=options["mask_mode"] is segpost.MaskMode.PROBABILITY,
                            top_k=options["top_k"], capacity=options["capacity"], max_fraction=1.0)


@pytest.mark.gpu
@settings(**SETTINGS)
@given(batches())
def test_cuda_matches_twin_on_random_batches(batch):
    import cupy as cp

    case, options = batch
    cpu = postprocessor(case, "cpu", **options).run(*arrays(case), case.frame_sizes)
    gpu = postprocessor(case, "cuda", **options).run(
        *[None if a is None else cp.asarray(a) for a in arrays(case)], case.frame_sizes)
    # Logit masks agree bit for bit; probability masks may differ where expf's last ulp does.
    assert_same_results(gpu, cpu, exact_masks=options["mask_mode"] is segpost.MaskMode.LOGIT)
