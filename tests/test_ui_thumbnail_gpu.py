"""The live page's frames in GPU memory are shrunk on the GPU (segpost.ui.thumbnail) and show the
same picture as the host path (the whole frame copied, OpenCV's conversion and INTER_AREA)."""
import cv2
import numpy as np
import pytest

from segpost.preprocess import YuvFrame
from segpost.ui.hub import LiveHub
from segpost.ui.thumbnail import GpuThumbnails, downscale, downscale_on_host


def scene(h: int, w: int) -> np.ndarray:
    """Smooth gradients and a few sharp-edged blocks (BGR uint8): colours and edges both show."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    bgr = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    for _ in range(12):
        y0, x0 = rng.integers(0, h - h // 6), rng.integers(0, w - w // 6)
        bgr[y0:y0 + h // 8, x0:x0 + w // 8] = rng.integers(0, 255, 3)
    return bgr


def yuv_frames(bgr: np.ndarray, cp, pad: int = 64):
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    u, v = i420[h:h + h // 4].reshape(-1), i420[h + h // 4:].reshape(-1)
    nv12 = np.concatenate([i420[:h], np.stack([u, v], 1).reshape(h // 2, w)])
    pitched = cp.zeros((nv12.shape[0], w + pad), np.uint8)   # NVDEC's rows are padded to its pitch
    pitched[:, :w] = cp.asarray(nv12)
    return {"nv12": YuvFrame(pitched[:, :w], "nv12"), "i420": YuvFrame(cp.asarray(i420), "i420")}, nv12, i420


def close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8, (what, got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 4, (what, diff.mean(), np.percentile(diff, 99))


@pytest.mark.gpu
@pytest.mark.parametrize("size, width", [((1080, 1920), 640), ((480, 640), 320), ((720, 1280), 500),
                                         ((240, 320), 640)])
def test_gpu_thumbnail_matches_the_host_path(cp, size, width):
    bgr = scene(*size)
    gpu = GpuThumbnails()
    frames, nv12, i420 = yuv_frames(bgr, cp)
    close(gpu.downscale(frames["nv12"], width), downscale_on_host(YuvFrame(nv12, "nv12"), width), "nv12")
    close(gpu.downscale(frames["i420"], width), downscale_on_host(YuvFrame(i420, "i420"), width), "i420")
    close(gpu.downscale(cp.asarray(bgr), width), downscale_on_host(bgr, width), "bgr")
    bgra = cp.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    close(gpu.downscale(bgra, width), downscale_on_host(bgr, width), "bgra")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    close(gpu.downscale(cp.asarray(gray), width), downscale_on_host(gray, width), "gray")
    strided = cp.asarray(np.ascontiguousarray(bgr[:, ::-1]))[:, ::-1]   # a negative-stride view
    close(gpu.downscale(strided, width), downscale_on_host(bgr, width), "strided")


@pytest.mark.gpu
def test_gpu_thumbnails_reuse_their_buffers_and_the_hub_uses_them(cp):
    bgr = scene(1080, 1920)
    frames, _, _ = yuv_frames(bgr, cp)
    gpu = GpuThumbnails()
    first = gpu.downscale(frames["nv12"], 640)
    for _ in range(5):
        again = gpu.downscale(frames["nv12"], 640)
    assert np.array_equal(first, again) and first is not again   # a fresh array each time
    assert len(gpu._out) == 1                                    # one buffer pair for the size

    class Viewer:
        watching = set()

        def deliver(self, kind, text, camera=None):
            pass

    hub = LiveHub([(0, None)])
    try:
        viewer = Viewer()
        hub.add_viewer(viewer)
        hub.watch(viewer, [0])
        assert hub.wants_frame(0)
        hub.frame(0, frames["nv12"], {"camera": 0, "frame_index": 1, "detections": []})
        assert isinstance(hub._gpu, GpuThumbnails) and hub.frame_error is None
        assert downscale(frames["nv12"], 640, hub._gpu).shape == (360, 640, 3)
    finally:
        hub.close()
