"""Bad input gives a clear ValueError/TypeError/RuntimeError before any pointer reaches a kernel."""
import os

import numpy as np
import pytest

import segpost
from segpost import _ext
from cases import make_case
from cuda_env import CUDA_SKIP_REASON


@pytest.fixture(scope="module")
def case():
    return make_case(num_frames=2, frame_sizes=[(40, 60)], seed=1)


@pytest.fixture
def pp():
    return segpost.Postprocessor(max_frames=2, capacity=16, max_frame_size=(100, 100), device="cpu")


def call(pp, case, **override):
    args = dict(pred_logits=case.logits, presence_logits=case.presence, pred_boxes=case.boxes,
                pred_masks=case.masks, frame_sizes=case.frame_sizes)
    args.update(override)
    return pp.run(**args)


@pytest.mark.parametrize("name,bad,match", [
    ("pred_logits", lambda c: c.logits[:, :100].copy(), "queries"),
    ("pred_logits", lambda c: c.logits[..., None], r"\[F, Q\]"),
    ("pred_boxes", lambda c: c.boxes[:, :, :3].copy(), "pred_boxes must have shape"),
    ("pred_masks", lambda c: c.masks[:, :, :144, :144].copy(), "pred_masks must have shape"),
    ("pred_masks", lambda c: c.masks[:1], "pred_masks must have shape"),
    ("presence_logits", lambda c: np.zeros((2, 2), np.float32), "presence_logits"),
    ("pred_masks", lambda c: np.ascontiguousarray(c.masks.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2), "C-contiguous"),
    ("pred_boxes", lambda c: np.asfortranarray(c.boxes), "C-contiguous"),
])
def test_bad_shapes_and_layouts_raise_value_error(pp, case, name, bad, match):
    with pytest.raises(ValueError, match=match):
        call(pp, case, **{name: bad(case)})


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.bool_])
def test_unsupported_dtypes_raise_type_error(pp, case, dtype):
    with pytest.raises(TypeError, match="float32 or float16"):
        call(pp, case, pred_masks=case.masks.astype(dtype))


def test_not_an_array(pp, case):
    with pytest.raises(TypeError, match="expected a numpy array"):
        call(pp, case, pred_logits=[[0.0] * 200] * 2)


def test_too_many_frames(case):
    pp = segpost.Postprocessor(max_frames=1, capacity=16, max_frame_size=(100, 100), device="cpu")
    with pytest.raises(ValueError, match="max_frames"):
        call(pp, case)


@pytest.mark.parametrize("sizes,match", [
    ([(40, 60)], "1 entries for a batch of 2"),
    ([(40, 60)] * 3, "3 entries"),
    ([(0, 60), (40, 60)], "positive"),
    ([(-4, 60), (40, 60)], "positive"),
    ([(40, 60), (101, 60)], "exceeds max_frame_size"),
    ([(40, 60), (40.0, 60)], "positive ints"),
    ([(40, 60), "40x60"], "pair"),
    (None, "frame_sizes"),
])
def test_bad_frame_sizes(pp, case, sizes, match):
    with pytest.raises(ValueError, match=match):
        call(pp, case, frame_sizes=sizes)


@pytest.mark.parametrize("kwargs,match", [
    # The messages name the declaration (PostprocessConfig.field), its bound and the value given.
    (dict(score_threshold=1.5), r"PostprocessConfig.score_threshold: Input should be less than or equal to 1 \(got 1.5\)"),
    (dict(score_threshold=-0.1), r"PostprocessConfig.score_threshold: Input should be greater than or equal to 0"),
    (dict(score_threshold=float("nan")), "score_threshold: must be a finite number, got nan"),
    (dict(mask_threshold=float("nan")), "mask_threshold: must be a finite number, got nan"),
    (dict(mask_mode=segpost.MaskMode.PROBABILITY, mask_threshold=2.0), "probability"),
    (dict(top_k=0), "top_k"),
    (dict(capacity=0), "capacity"),
    (dict(max_frames=65), "max_frames"),
    (dict(max_frames=0), "max_frames"),
    (dict(mask_size=(288,)), "mask_size"),
    (dict(max_frame_size=(0, 10)), "max_frame_size"),
    (dict(device="tpu"), "device"),
])
def test_bad_construction_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segpost.Postprocessor(**{"device": "cpu", **kwargs})


def test_bad_enums_raise_type_error():
    with pytest.raises(TypeError, match="OutputKind"):
        segpost.Postprocessor(device="cpu", output="full")
    with pytest.raises(TypeError, match="MaskMode"):
        segpost.Postprocessor(device="cpu", mask_mode=0)


def test_device_output_needs_cuda_device():
    with pytest.raises(ValueError, match="DEVICE_FULL needs device='cuda'"):
        segpost.Postprocessor(device="cpu", output=segpost.OutputKind.DEVICE_FULL)


def test_enqueue_result_must_alternate(pp, case):
    with pytest.raises(RuntimeError, match="without a pending"):
        pp.result()
    pp.enqueue(case.logits, case.presence, case.boxes, case.masks, case.frame_sizes)
    with pytest.raises(RuntimeError, match="call result"):
        pp.enqueue(case.logits, case.presence, case.boxes, case.masks, case.frame_sizes)
    assert pp.result().num_detections > 0


def test_bad_class_id(pp, case):
    with pytest.raises(TypeError, match="class_id"):
        call(pp, case, class_id="person")


def test_device_buffer_rejects_null_and_junk():
    with pytest.raises(ValueError, match="null"):
        segpost.DeviceBuffer(0, (2, 200), "float32")
    with pytest.raises(TypeError, match="int device address"):
        segpost.DeviceBuffer("0x1234", (2, 200), "float32")
    with pytest.raises(ValueError, match="negative"):
        segpost.DeviceBuffer(0x1000, (2, -1), "float32")


def test_mixing_host_and_device_inputs(pp, case):
    fake_device = segpost.DeviceBuffer(0x7F0000000000, case.logits.shape, case.logits.dtype)
    with pytest.raises(TypeError, match="mix host"):
        call(pp, case, pred_logits=fake_device)


def test_device_inputs_to_a_cpu_postprocessor(pp, case):
    dev = [segpost.DeviceBuffer(0x7F0000000000 + i * 2**30, a.shape, a.dtype)
           for i, a in enumerate((case.logits, case.presence, case.boxes, case.masks))]
    with pytest.raises(TypeError, match="device='cpu'"):
        pp.run(*dev, case.frame_sizes)


def test_bad_stream_object():
    from segpost._arrays import stream_handle
    with pytest.raises(TypeError, match="stream"):
        stream_handle("default")
    assert stream_handle(None) == 0 and stream_handle(1234) == 1234


@pytest.mark.skipif(CUDA_SKIP_REASON is None, reason="a CUDA device is present: this checks the no-GPU message")
def test_cuda_postprocessor_without_a_gpu_says_why():
    why = "no CUDA device is available" if _ext.built_with_cuda() else "segpost was built without CUDA"
    with pytest.raises(RuntimeError, match=why):
        segpost.Postprocessor(device="cuda")


def test_extension_was_built_with_cuda_when_ci_requires_it():
    if os.environ.get("SEGPOST_EXPECT_CUDA_BUILD") != "1":
        pytest.skip("set SEGPOST_EXPECT_CUDA_BUILD=1 to require a CUDA build (CI does)")
    assert _ext.built_with_cuda()
