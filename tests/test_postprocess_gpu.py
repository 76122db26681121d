"""CUDA kernels against the C++ CPU twin (bit-exact masks) and the numpy + OpenCV reference."""
import numpy as np
import pytest

import segpost
from cases import assert_same_results, check_against_reference, make_case

pytestmark = pytest.mark.gpu


def options(case, **kwargs):
    opts = dict(max_frames=case.num_frames, num_queries=case.logits.shape[1], mask_size=case.masks.shape[2:],
                capacity=256, score_threshold=case.score_threshold,
                max_frame_size=(max(h for h, _ in case.frame_sizes), max(w for _, w in case.frame_sizes)))
    opts.update(kwargs)
    return opts


def host_arrays(case):
    return case.logits, case.presence, case.boxes, case.masks


def device_arrays(cp, case):
    return [None if a is None else cp.asarray(a) for a in host_arrays(case)]


def run_both(cp, case, **kwargs):
    gpu = segpost.Postprocessor(device="cuda", **options(case, **kwargs))
    cpu = segpost.Postprocessor(device="cpu", **options(case, **kwargs))
    g = gpu.run(*device_arrays(cp, case), case.frame_sizes, class_id=2).copy()
    c = cpu.run(*host_arrays(case), case.frame_sizes, class_id=2).copy()
    return g, c


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (1080, 1920), (2160, 3840)])
def test_gpu_matches_twin_and_reference(cp, size, dtype):
    kept = 2 if size[0] > 1000 else 6
    case = make_case(num_frames=2, frame_sizes=[size], dtype=dtype, kept_per_frame=kept, seed=size[1])
    g, c = run_both(cp, case)
    assert g.num_detections == 2 * kept
    assert_same_results(g, c)
    check_against_reference(g, case)


def test_gpu_sam3_shaped_batch(cp):
    case = make_case(num_frames=8, frame_sizes=[(1080, 1920), (720, 1280), (480, 640), (1, 1)], kept_per_frame=5,
                     dtype=np.float16, seed=99)
    g, c = run_both(cp, case)
    assert_same_results(g, c)
    check_against_reference(g, case)


@pytest.mark.parametrize("kwargs,case_kwargs", [
    (dict(), dict(kept_per_frame=0)),
    (dict(capacity=200), dict(num_frames=1, kept_per_frame=200, score_threshold=0.0, frame_sizes=[(30, 40)])),
    (dict(capacity=50), dict(num_frames=4, kept_per_frame=30, frame_sizes=[(20, 30)])),
    (dict(capacity=100), dict(num_frames=8, kept_per_frame=200, score_threshold=0.0, frame_sizes=[(9, 11)])),
    (dict(top_k=4), dict(num_frames=3, kept_per_frame=12, frame_sizes=[(20, 30)])),
    (dict(top_k=3, capacity=5), dict(num_frames=3, kept_per_frame=12, frame_sizes=[(20, 30)])),
    (dict(), dict(num_frames=3, presence=False)),
    (dict(), dict(num_queries=17, mask_size=(40, 24), frame_sizes=[(13, 9), (300, 17)], smooth=False)),
])
def test_gpu_edge_cases_match_twin(cp, kwargs, case_kwargs):
    case = make_case(**{"seed": 5, **case_kwargs})
    g, c = run_both(cp, case, **kwargs)
    assert_same_results(g, c)
    check_against_reference(g, case, top_k=kwargs.get("top_k"), capacity=kwargs.get("capacity", 256))


def test_gpu_ties_and_nan_inf(cp):
    case = make_case(num_frames=2, kept_per_frame=3, frame_sizes=[(50, 70)], seed=21)
    case.logits[1, [150, 3, 77]] = 5.0
    case.logits[0, :3] = np.nan
    case.logits[0, 10] = np.inf
    case.boxes[0, 10] = [np.nan, 0.2, np.inf, -np.inf]
    case.masks[0, 10, :50, :] = np.nan
    case.masks[0, 10, 100:120, :] = np.inf
    case.masks[0, 10, 200:210, 5:9] = -np.inf
    g, c = run_both(cp, case)
    assert_same_results(g, c)
    check_against_reference(g, case)


def test_gpu_probability_mode(cp):
    case = make_case(num_frames=2, seed=13, frame_sizes=[(333, 517)])
    g, c = run_both(cp, case, mask_mode=segpost.MaskMode.PROBABILITY)
    # expf may differ in the last ulp between CUDA and glibc: boundary pixels may differ.
    assert_same_results(g, c, exact_masks=False)
    check_against_reference(g, case, probability=True)


def test_device_output_equals_host_output(cp):
    case = make_case(num_frames=4, frame_sizes=[(480, 640), (7, 5)], seed=8)
    case.logits[1] = -10.0  # a frame without detections: zero-length views
    host = segpost.Postprocessor(device="cuda", **options(case)).run(*device_arrays(cp, case), case.frame_sizes)
    dev_pp = segpost.Postprocessor(device="cuda", output=segpost.OutputKind.DEVICE_FULL, **options(case))
    dev = dev_pp.run(*device_arrays(cp, case), case.frame_sizes)
    assert isinstance(dev[0].masks, cp.ndarray)
    assert dev[1].masks.shape == (0, 7, 5) and len(dev[1].class_ids) == 0
    assert_same_results(dev, host)


def test_torch_dlpack_and_raw_pointer_inputs(cp):
    case = make_case(num_frames=2, seed=33, dtype=np.float16)
    ref = segpost.Postprocessor(device="cuda", **options(case)).run(*device_arrays(cp, case), case.frame_sizes).copy()
    pp = segpost.Postprocessor(device="cuda", **options(case))
    arrays = device_arrays(cp, case)

    class DLPackOnly:
        def __init__(self, a):
            self._a = a

        def __dlpack__(self, **kwargs):
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    assert_same_results(pp.run(*[DLPackOnly(a) for a in arrays], case.frame_sizes), ref)
    raw = [segpost.DeviceBuffer(a.data.ptr, a.shape, a.dtype) for a in arrays]
    assert_same_results(pp.run(*raw, case.frame_sizes), ref)
    torch = pytest.importorskip("torch")
    tensors = [torch.from_numpy(a).cuda() for a in host_arrays(case)]
    assert_same_results(pp.run(*tensors, case.frame_sizes, stream=torch.cuda.current_stream()), ref)


def test_pred_masks_may_be_overwritten_once_stage_one_ran(cp):
    """The pipeline's contract: after enqueue, work queued later on the same stream may overwrite
    the engine's output buffers (next class's decoder) without changing this batch's results."""
    case = make_case(num_frames=4, frame_sizes=[(720, 1280)], seed=44)
    ref = segpost.Postprocessor(device="cuda", **options(case)).run(*device_arrays(cp, case), case.frame_sizes).copy()
    pp = segpost.Postprocessor(device="cuda", **options(case))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        logits, presence, boxes, masks = device_arrays(cp, case)
        stream.synchronize()
        pp.enqueue(logits, presence, boxes, masks, case.frame_sizes, stream=stream)
        for a in (logits, presence, boxes, masks):
            a.fill(float("nan"))  # queued on `stream` after stage 1
        result = pp.result()
    assert_same_results(result, ref)


def test_host_and_freed_pointers_are_rejected(cp):
    case = make_case(num_frames=1, seed=3)
    pp = segpost.Postprocessor(device="cuda", **options(case))
    arrays = device_arrays(cp, case)
    host_ptr = segpost.DeviceBuffer(case.masks.ctypes.data, case.masks.shape, case.masks.dtype)
    with pytest.raises(ValueError, match="pred_masks"):
        pp.run(arrays[0], arrays[1], arrays[2], host_ptr, case.frame_sizes)
    freed = cp.cuda.runtime.malloc(case.masks.nbytes)
    cp.cuda.runtime.free(freed)
    with pytest.raises(ValueError, match="pred_masks"):
        pp.run(arrays[0], arrays[1], arrays[2], segpost.DeviceBuffer(freed, case.masks.shape, case.masks.dtype),
               case.frame_sizes)
    assert pp.run(*arrays, case.frame_sizes).num_detections > 0  # still usable


def test_vram_is_constant_over_many_runs(cp):
    case = make_case(num_frames=8, frame_sizes=[(1080, 1920)], seed=55, dtype=np.float16)
    arrays = device_arrays(cp, case)
    pp = segpost.Postprocessor(device="cuda", **options(case))
    pp.run(*arrays, case.frame_sizes)
    cp.cuda.Device().synchronize()
    free_before = segpost._ext.cuda_free_memory()
    report = pp.memory_report()
    for _ in range(300):
        pp.run(*arrays, case.frame_sizes)
    assert segpost._ext.cuda_free_memory() == free_before
    assert pp.memory_report() == report and report["device"] > 0 and report["pinned_host"] > 0


def test_a_smaller_postprocessor_built_later_does_not_break_a_larger_one(cp):
    """Kernel shared-memory limits are per kernel, not per Postprocessor."""
    big = make_case(num_frames=8, frame_sizes=[(1080, 1920)], seed=61)
    small = make_case(num_frames=1, frame_sizes=[(8, 8)], seed=62, num_queries=3, kept_per_frame=1)
    for kind in (segpost.OutputKind.FULL, segpost.OutputKind.RLE):
        big_pp = segpost.Postprocessor(device="cuda", output=kind, **options(big))
        small_pp = segpost.Postprocessor(device="cuda", output=kind, **options(small))
        assert small_pp.run(*device_arrays(cp, small), small.frame_sizes).num_detections == 1
        assert big_pp.run(*device_arrays(cp, big), big.frame_sizes).num_detections == 8 * 5
