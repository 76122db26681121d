"""Preprocessor (camera frames -> RGB CHW normalized at 1008x1008): both filters against their
references, YUV frames against OpenCV's conversion, CPU twin against CUDA."""
import cv2
import numpy as np
import pytest

import segpost
from segpost import YuvFrame

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


def torch_reference(frame, out_size):
    """What transformers' Sam3ImageProcessor computes: torchvision's resize of the uint8 RGB image
    (torch's interpolate, bilinear, antialias=True, on uint8), then normalize with mean 0.5 * 255
    and std 0.5 * 255 in float32."""
    torch = pytest.importorskip("torch")
    rgb = torch.from_numpy(np.ascontiguousarray(frame[..., ::-1].transpose(2, 0, 1)))[None]
    resized = torch.nn.functional.interpolate(rgb, size=out_size, mode="bilinear", align_corners=False, antialias=True)
    assert resized.dtype == torch.uint8
    return ((resized[0].float() - 127.5) / 127.5).numpy()


def textured(h, w, seed=0):
    """Fine texture: a 3-pixel checker, text and noise (what aliases)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    frame = np.where(((y // 3) + (x // 3)) % 2 == 0, 200, 40).astype(np.int16)[..., None].repeat(3, axis=2)
    frame += rng.integers(-30, 31, (h, w, 3), dtype=np.int16)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    for i in range(0, h, max(h // 6, 12)):
        cv2.putText(frame, "SEGPOST 0123", (5, i + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    return frame


def smooth(h, w):
    y, x = np.mgrid[:h, :w]
    return np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], -1).astype(np.uint8)


def frames_of(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def yuv_of(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)


def preprocessor(device, sizes, **kwargs):
    return segpost.Preprocessor(max_frames=len(sizes), max_frame_size=tuple(np.max(sizes, axis=0)),
                                device=device, **kwargs)


# -- bilinear (the users' old path) ---------------------------------------------------------------

@pytest.mark.parametrize("out_size", [(1008, 1008), (64, 96)])
def test_bilinear_twin_matches_the_formula_and_cv2(out_size):
    frames = frames_of(SIZES)
    out = preprocessor("cpu", SIZES, out_size=out_size, resize="bilinear").run(frames)
    assert out.shape == (len(SIZES), 3) + out_size and out.dtype == np.float32
    for b, frame in enumerate(frames):
        # The interpolation weights are rounded to float (shared with the mask kernels): within
        # 0.03 of a uint8 level of the exact formula and of cv2 (which agree to 1e-4 of a level).
        np.testing.assert_allclose(out[b], reference(frame, out_size), rtol=0, atol=LEVELS, err_msg=f"frame {b}")
        np.testing.assert_allclose(out[b], cv2_reference(frame, out_size), rtol=0, atol=LEVELS, err_msg=f"frame {b}")


def test_float16_output_is_the_rounded_float32_output():
    frames = frames_of(SIZES[:3], seed=1)
    for resize in ("antialias", "bilinear"):
        full = preprocessor("cpu", SIZES[:3], resize=resize).run(frames).copy()
        half = preprocessor("cpu", SIZES[:3], dtype=np.float16, resize=resize).run(frames)
        assert half.dtype == np.float16
        np.testing.assert_array_equal(half, full.astype(np.float16))


def test_padded_rows_and_staging_views():
    big = frames_of([(40, 80)], seed=2)[0]
    view = big[:, 10:60]  # rows 240 bytes apart, 50 pixels wide
    pre = preprocessor("cpu", [(40, 80)], resize="bilinear")
    np.testing.assert_allclose(pre.run([view])[0], reference(np.ascontiguousarray(view), (1008, 1008)), atol=LEVELS)
    slot = pre.staging(0, 40, 50)
    slot[:] = view
    np.testing.assert_allclose(pre.run([slot])[0], reference(np.ascontiguousarray(view), (1008, 1008)), atol=LEVELS)


# -- antialias (the model's reference processor, the default) -------------------------------------

AA_SIZES = [(1080, 1920), (720, 1280), (480, 640), (2160, 3840), (300, 200), (1008, 1008), (37, 53)]


@pytest.mark.parametrize("size", AA_SIZES)
@pytest.mark.parametrize("kind", ["textured", "smooth"])
def test_antialias_twin_equals_torch_uint8_antialias(size, kind):
    """Exact (tolerance 0): the same fixed-point weights, the same two uint8 passes. Downscaling
    (1080p, 4K), upscaling (720p, 480p, 37x53) and mixed axes (300x200) alike."""
    frame = textured(*size) if kind == "textured" else smooth(*size)
    out = segpost.Preprocessor(max_frames=1, max_frame_size=size, device="cpu").run([frame])[0]
    np.testing.assert_array_equal(out, torch_reference(frame, (1008, 1008)))


def test_antialias_other_output_sizes_and_batches():
    sizes = [(1080, 1920), (480, 640), (7, 5), (1, 1), (2000, 3)]
    frames = [textured(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    out = preprocessor("cpu", sizes, out_size=(64, 96)).run(frames)
    for b, frame in enumerate(frames):
        np.testing.assert_array_equal(out[b], torch_reference(frame, (64, 96)), err_msg=f"frame {b}")


def test_antialias_equals_sam3_image_processor():
    """transformers' own processor (needs torchvision, which has no CPU build for CI's torch; the
    H100 has it)."""
    pytest.importorskip("torch")
    try:
        from transformers import Sam3ImageProcessor

        processor = Sam3ImageProcessor()
    except (ImportError, RuntimeError) as exc:
        pytest.skip("Sam3ImageProcessor cannot be built here (torchvision missing or unusable): "
                    + " ".join(str(exc).split())[:160])
    for size in [(1080, 1920), (720, 1280), (300, 200)]:
        frame = textured(*size, seed=4)
        expected = processor(images=frame[..., ::-1].copy(), return_tensors="np")["pixel_values"][0]
        out = segpost.Preprocessor(max_frames=1, max_frame_size=size, device="cpu").run([frame])[0]
        np.testing.assert_array_equal(out, expected)


def test_antialias_is_much_closer_to_the_reference_than_bilinear_on_texture():
    """Issue 18's measurement as a test: bilinear aliases fine texture, antialias does not."""
    frame = textured(1080, 1920, seed=5)
    expected = torch_reference(frame, (1008, 1008))
    pre_aa = segpost.Preprocessor(max_frames=1, device="cpu")
    pre_bl = segpost.Preprocessor(max_frames=1, device="cpu", resize="bilinear")
    bilinear_error = np.abs(pre_bl.run([frame])[0] - expected).mean()
    assert np.abs(pre_aa.run([frame])[0] - expected).max() == 0
    assert bilinear_error > 0.05


# -- YUV frames as decoders give them ---------------------------------------------------------------

@pytest.mark.parametrize("layout,code", [("nv12", cv2.COLOR_YUV2BGR_NV12), ("i420", cv2.COLOR_YUV2BGR_I420)])
@pytest.mark.parametrize("resize", ["antialias", "bilinear"])
def test_yuv_twin_equals_cv2_conversion_then_the_bgr_path(layout, code, resize):
    sizes = [(1080, 1920), (480, 640), (8, 6)]
    yuvs = [yuv_of(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    pre = preprocessor("cpu", sizes, resize=resize)
    out = pre.run([YuvFrame(y, layout) for y in yuvs]).copy()
    expected = pre.run([cv2.cvtColor(y, code) for y in yuvs])
    np.testing.assert_array_equal(out, expected)


def _yuv_reference(yuv, matrix, full_range):
    """Float64 YUV -> RGB from the standard's Kr, Kb (NV12, chroma shared by 2x2 blocks)."""
    kr, kb = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}[matrix]
    h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
    y = yuv[:h].astype(np.float64)
    uv = yuv[h:].reshape(h // 2, w // 2, 2).astype(np.float64).repeat(2, 0).repeat(2, 1) - 128
    u, v = uv[..., 0], uv[..., 1]
    if not full_range:
        y, u, v = np.maximum(y - 16, 0) * 255 / 219, u * 255 / 224, v * 255 / 224
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * v
    g = y - 2 * kb * (1 - kb) / kg * u - 2 * kr * (1 - kr) / kg * v
    b = y + 2 * (1 - kb) * u
    return np.clip(np.round(np.stack([r, g, b])), 0, 255)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full_range", [False, True])
def test_yuv_matrices_and_ranges(matrix, full_range):
    yuv = yuv_of(48, 64, seed=7)
    pre = segpost.Preprocessor(max_frames=1, max_frame_size=(48, 64), out_size=(48, 64), device="cpu", resize="bilinear")
    levels = pre.run([YuvFrame(yuv, "nv12", matrix, full_range)])[0] * 127.5 + 127.5  # same size: no resampling
    difference = np.abs(levels - _yuv_reference(yuv, matrix, full_range))
    assert difference.max() <= 1.0 + 1e-4, f"{matrix} full={full_range}: off by {difference.max()} levels"


def test_nv12_with_padded_pitch():
    yuv = yuv_of(40, 50, seed=8)
    padded = np.zeros((60, 64), np.uint8)[:, :50]
    padded[:] = yuv
    pre = segpost.Preprocessor(max_frames=1, max_frame_size=(40, 50), device="cpu")
    np.testing.assert_array_equal(pre.run([YuvFrame(padded)])[0].copy(), pre.run([YuvFrame(yuv)])[0])


# -- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,match", [
    (lambda f: [f.astype(np.float32)], "uint8"),
    (lambda f: [f[..., :2]], r"\(H, W, 3\)"),
    (lambda f: [f[:, ::2]], "contiguous pixels"),
    (lambda f: [np.zeros((50, 10, 3), np.uint8)], "larger than max_frame_size"),
    (lambda f: [f] * 3, "1 to 2"),
    (lambda f: [], "1 to 2"),
    (lambda f: f, "list"),
    (lambda f: ["frame.png"], "YuvFrame"),
    (lambda f: [YuvFrame(np.zeros((31, 40), np.uint8))], "H and W even"),
    (lambda f: [YuvFrame(np.zeros((30, 41), np.uint8))], "H and W even"),
    (lambda f: [YuvFrame(np.zeros((30, 40, 1), np.uint8))], r"\[3H/2, W\]"),
    (lambda f: [YuvFrame(np.zeros((90, 40), np.uint8))], "larger than max_frame_size"),
    (lambda f: [YuvFrame(np.zeros((60, 80), np.uint8)[:, ::2])], "contiguous"),
    (lambda f: [YuvFrame(np.zeros((60, 80), np.uint8)[:, :40], "i420")], "I420 YuvFrame must be contiguous"),
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
    with pytest.raises(ValueError, match="antialias"):
        segpost.Preprocessor(device="cpu", resize="area")
    with pytest.raises(ValueError, match="layout"):
        YuvFrame(np.zeros((6, 4), np.uint8), "yuyv")
    with pytest.raises(ValueError, match="matrix"):
        YuvFrame(np.zeros((6, 4), np.uint8), "nv12", "bt2020")


# -- CUDA -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("resize", ["antialias", "bilinear"])
def test_cuda_matches_cpu_twin(cp, dtype, resize):
    frames = frames_of(SIZES, seed=3)
    cpu = preprocessor("cpu", SIZES, dtype=dtype, resize=resize).run(frames).copy()
    pre = preprocessor("cuda", SIZES, dtype=dtype, resize=resize)
    stream = cp.cuda.Stream(non_blocking=True)
    for _ in range(2):  # the second round reuses the staging slots
        gpu = pre.run(frames, stream=stream)
        stream.synchronize()
        np.testing.assert_array_equal(gpu.get(), cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("resize", ["antialias", "bilinear"])
def test_cuda_device_frames_are_read_in_place(cp, resize):
    """BGR and NV12/I420 frames already on the GPU (CuPy, torch through DLPack, a padded NV12
    surface) give the twin's result; host and device frames mix in one batch."""
    sizes = [(1080, 1920), (720, 1280), (480, 640), (1080, 1920), (64, 96)]
    bgr = textured(1080, 1920, seed=9)
    nv12 = yuv_of(720, 1280, seed=10)
    i420 = yuv_of(480, 640, seed=11)
    pitched = cp.zeros((1620, 2048), cp.uint8)[:, :1920]
    pitched[:] = cp.asarray(yuv_of(1080, 1920, seed=12))
    host = frames_of([(64, 96)], seed=13)[0]
    cpu_frames = [bgr, YuvFrame(nv12), YuvFrame(i420, "i420"), YuvFrame(pitched.get(), "nv12", "bt709", True), host]
    expected = preprocessor("cpu", sizes, resize=resize).run(cpu_frames).copy()
    try:
        import torch

        device_bgr = torch.from_numpy(bgr).cuda()   # DLPack / __cuda_array_interface__
    except ImportError:
        device_bgr = cp.asarray(bgr)
    gpu_frames = [device_bgr, YuvFrame(cp.asarray(nv12)), YuvFrame(cp.asarray(i420), "i420"),
                  YuvFrame(pitched, "nv12", "bt709", True), host]
    pre = preprocessor("cuda", sizes, resize=resize)
    stream = cp.cuda.Stream(non_blocking=True)
    out = pre.run(gpu_frames, stream=stream)
    pre.wait_released()
    stream.synchronize()
    np.testing.assert_array_equal(out.get(), expected)


@pytest.mark.gpu
def test_cuda_antialias_rows_wider_than_the_default_shared_memory(cp):
    """The antialias filter holds a source row in shared memory (4 bytes a pixel): rows over 12288
    pixels take the opt-in shared memory, and still give the twin's result."""
    sizes = [(4, 14000), (6, 600)]
    frames = [YuvFrame(yuv_of(4, 14000, seed=20)), frames_of([(6, 600)], seed=21)[0]]
    expected = preprocessor("cpu", sizes, out_size=(8, 64)).run(frames).copy()
    gpu = preprocessor("cuda", sizes, out_size=(8, 64)).run([YuvFrame(cp.asarray(frames[0].data)), frames[1]])
    cp.cuda.runtime.deviceSynchronize()
    np.testing.assert_array_equal(gpu.get(), expected)
