"""Preprocessor (BGR uint8 -> RGB CHW x/127.5-1 at 1008x1008) against cv2, CPU twin and CUDA."""
import cv2
import numpy as np
import pytest

import segpost

SIZES = [(1080, 1920), (480, 640), (7, 5), (1, 1), (2000, 3)]
LEVELS = 0.03 / 127.5  # 0.03 of a uint8 level, in normalized units


def _axis(src_len, dst_len):
    pos = (np.arange(dst_len) + 0.5) * (src_len / dst_len) - 0.5
    i0 = np.floor(pos).astype(np.int64)
    w1 = pos - i0
    w1[i0 < 0] = 0.0
    i0[i0 < 0] = 0
    w1[i0 >= src_len - 1] = 0.0
    i0[i0 >= src_len - 1] = src_len - 1
    return i0, np.minimum(i0 + 1, src_len - 1), w1


def reference(frame, out_size):
    """Half-pixel bilinear with replicated borders in float64 (the formula of cv2.INTER_LINEAR
    and F.interpolate(align_corners=False)), BGR -> RGB, x / 127.5 - 1, HWC -> CHW."""
    img = frame.astype(np.float64)
    y0, y1, wy = _axis(frame.shape[0], out_size[0])
    x0, x1, wx = _axis(frame.shape[1], out_size[1])
    wy, wx = wy[:, None, None], wx[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    resized = top * (1 - wy) + bottom * wy
    return (resized[..., ::-1] / 127.5 - 1.0).transpose(2, 0, 1)


def cv2_reference(frame, out_size):
    """The users' plain path: cv2.resize on float32, BGR -> RGB, normalize, HWC -> CHW."""
    oh, ow = out_size
    resized = cv2.resize(frame.astype(np.float32), (ow, oh), interpolation=cv2.INTER_LINEAR).reshape(oh, ow, 3)
    return (resized[..., ::-1] / 127.5 - 1.0).transpose(2, 0, 1)


def frames_of(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def preprocessor(device, sizes, **kwargs):
    return segpost.Preprocessor(max_frames=len(sizes), max_frame_size=tuple(np.max(sizes, axis=0)),
                                device=device, **kwargs)


@pytest.mark.parametrize("out_size", [(1008, 1008), (64, 96)])
def test_cpu_twin_matches_bilinear_and_cv2(out_size):
    frames = frames_of(SIZES)
    out = preprocessor("cpu", SIZES, out_size=out_size).run(frames)
    assert out.shape == (len(SIZES), 3) + out_size and out.dtype == np.float32
    for b, frame in enumerate(frames):
        # The interpolation weights are rounded to float (shared with the mask kernels): within
        # 0.03 of a uint8 level of the exact formula and of cv2 (which agree to 1e-4 of a level).
        np.testing.assert_allclose(out[b], reference(frame, out_size), rtol=0, atol=LEVELS, err_msg=f"frame {b}")
        np.testing.assert_allclose(out[b], cv2_reference(frame, out_size), rtol=0, atol=LEVELS, err_msg=f"frame {b}")


def test_float16_output_is_the_rounded_float32_output():
    frames = frames_of(SIZES[:3], seed=1)
    full = preprocessor("cpu", SIZES[:3]).run(frames).copy()
    half = preprocessor("cpu", SIZES[:3], dtype=np.float16).run(frames)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, full.astype(np.float16))


def test_padded_rows_and_staging_views():
    big = frames_of([(40, 80)], seed=2)[0]
    view = big[:, 10:60]  # rows 240 bytes apart, 50 pixels wide
    pre = preprocessor("cpu", [(40, 80)])
    np.testing.assert_allclose(pre.run([view])[0], reference(np.ascontiguousarray(view), (1008, 1008)), atol=LEVELS)
    slot = pre.staging(0, 40, 50)
    slot[:] = view
    np.testing.assert_allclose(pre.run([slot])[0], reference(np.ascontiguousarray(view), (1008, 1008)), atol=LEVELS)


@pytest.mark.parametrize("bad,match", [
    (lambda f: [f.astype(np.float32)], "uint8"),
    (lambda f: [f[..., :2]], r"\(H, W, 3\)"),
    (lambda f: [f[:, ::2]], "contiguous pixels"),
    (lambda f: [np.zeros((50, 10, 3), np.uint8)], "larger than max_frame_size"),
    (lambda f: [f] * 3, "1 to 2"),
    (lambda f: [], "1 to 2"),
    (lambda f: f, "list"),
])
def test_bad_frames(bad, match):
    frame = frames_of([(40, 80)])[0]
    pre = segpost.Preprocessor(max_frames=2, max_frame_size=(40, 80), device="cpu")
    with pytest.raises(ValueError, match=match):
        pre.run(bad(frame))


def test_bad_construction():
    with pytest.raises(TypeError, match="float32 or float16"):
        segpost.Preprocessor(dtype=np.float64, device="cpu")
    with pytest.raises(ValueError, match="max_frames"):
        segpost.Preprocessor(max_frames=0, device="cpu")
    with pytest.raises(ValueError, match="staging index"):
        segpost.Preprocessor(max_frames=1, device="cpu").staging(1, 10, 10)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_cuda_matches_cpu_twin(cp, dtype):
    frames = frames_of(SIZES, seed=3)
    cpu = preprocessor("cpu", SIZES, dtype=dtype).run(frames).copy()
    pre = preprocessor("cuda", SIZES, dtype=dtype)
    stream = cp.cuda.Stream(non_blocking=True)
    for _ in range(2):  # the second round reuses the staging slots
        gpu = pre.run(frames, stream=stream)
        stream.synchronize()
        np.testing.assert_array_equal(gpu.get(), cpu)
