"""The live page's frames: a camera's image, downscaled to a small BGR uint8 host array.

Frames in GPU memory (NVDEC's NV12 YuvFrames, uploaded BGR CuPy arrays) are shrunk on the GPU and
only the small image crosses PCIe: copying a whole 1080p NV12 frame to the host and converting it
there cost a D2H copy of 3 MB and ~2 ms of the runner thread's CPU per frame shown. The kernel
averages taps x taps samples per output pixel (taps = ceil(scale): the area filter for integer
factors, as cv2.INTER_AREA) and converts BT.601 limited range as cv2.COLOR_YUV2BGR_NV12 does, so
the host path (OpenCV) and the GPU path show the same picture (tests/test_ui_thumbnail_gpu.py).
The work runs on the thumbnail's own stream and is waited for before the call returns: the
decoder may reuse the frame's buffer as soon as the runner moves on.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

_SOURCE = r"""
__device__ __forceinline__ unsigned char clamp_u8(float v) {
  return (unsigned char)fminf(fmaxf(v + 0.5f, 0.f), 255.f);
}

// Output pixel (ox, oy): the mean of taps x taps samples at the centres of its cell's sub-cells.
__device__ __forceinline__ int sample(int o, int i, int taps, float scale, int limit) {
  return min((int)(((float)o + ((float)i + 0.5f) / (float)taps) * scale), limit - 1);
}

extern "C" __global__ void yuv420_thumbnail(const unsigned char* y, long long y_pitch, const unsigned char* u,
                                            const unsigned char* v, long long uv_pitch, int uv_step, int src_h,
                                            int src_w, unsigned char* out, int out_h, int out_w, int taps) {
  const int ox = blockIdx.x * blockDim.x + threadIdx.x, oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= out_w || oy >= out_h) return;
  const float sx = (float)src_w / out_w, sy = (float)src_h / out_h;
  float ys = 0.f, us = 0.f, vs = 0.f;
  for (int j = 0; j < taps; ++j) {
    const int py = sample(oy, j, taps, sy, src_h);
    for (int i = 0; i < taps; ++i) {
      const int px = sample(ox, i, taps, sx, src_w);
      ys += y[py * y_pitch + px];
      const long long c = (py / 2) * uv_pitch + (long long)(px / 2) * uv_step;
      us += u[c];
      vs += v[c];
    }
  }
  const float n = (float)(taps * taps);
  const float c = 1.164f * (ys / n - 16.f), d = us / n - 128.f, e = vs / n - 128.f;
  unsigned char* p = out + ((long long)oy * out_w + ox) * 3;
  p[0] = clamp_u8(c + 2.018f * d);
  p[1] = clamp_u8(c - 0.391f * d - 0.813f * e);
  p[2] = clamp_u8(c + 1.596f * e);
}

extern "C" __global__ void bgr_thumbnail(const unsigned char* src, long long pitch, int channels, int src_h,
                                         int src_w, unsigned char* out, int out_h, int out_w, int taps) {
  const int ox = blockIdx.x * blockDim.x + threadIdx.x, oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= out_w || oy >= out_h) return;
  const float sx = (float)src_w / out_w, sy = (float)src_h / out_h;
  float sum[3] = {0.f, 0.f, 0.f};
  for (int j = 0; j < taps; ++j) {
    const int py = sample(oy, j, taps, sy, src_h);
    for (int i = 0; i < taps; ++i) {
      const unsigned char* s = src + py * pitch + (long long)sample(ox, i, taps, sx, src_w) * channels;
      for (int k = 0; k < 3; ++k) sum[k] += s[channels == 1 ? 0 : k];
    }
  }
  const float n = (float)(taps * taps);
  unsigned char* p = out + ((long long)oy * out_w + ox) * 3;
  for (int k = 0; k < 3; ++k) p[k] = clamp_u8(sum[k] / n);
}
"""


def shown_size(height: int, width: int, max_width: int) -> Tuple[int, int]:
    """(height, width) of the shown frame: at most ``max_width`` wide, the aspect kept."""
    if width <= max_width:
        return height, width
    return max(1, round(height * max_width / width)), max_width


def on_device(image: Any) -> bool:
    """Whether the frame (a BGR array or a YuvFrame) lies in GPU memory."""
    data = image.data if hasattr(image, "layout") else image
    return hasattr(data, "__cuda_array_interface__")


def downscale(image: Any, max_width: int, gpu: Optional["GpuThumbnails"] = None) -> np.ndarray:
    """A BGR uint8 host image at most ``max_width`` wide (aspect kept): from a BGR array (host or
    CuPy) or a segpost.YuvFrame (host or device). Device frames go through ``gpu`` when given,
    else they are copied to the host whole and converted there."""
    if gpu is not None and gpu.takes(image):
        return gpu.downscale(image, max_width)
    return downscale_on_host(image, max_width)


def downscale_on_host(image: Any, max_width: int) -> np.ndarray:
    import cv2

    data = getattr(image, "data", None)
    if data is not None and hasattr(image, "layout"):        # a YuvFrame
        host = data.get() if hasattr(data, "get") else np.asarray(data)
        code = cv2.COLOR_YUV2BGR_NV12 if image.layout == "nv12" else cv2.COLOR_YUV2BGR_I420
        image = cv2.cvtColor(np.ascontiguousarray(host), code)
    elif hasattr(image, "get"):                              # CuPy
        image = image.get()
    image = np.asarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    if width <= max_width:
        return np.array(image, copy=True)
    h, w = shown_size(height, width, max_width)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


class GpuThumbnails:
    """Downscales device frames on the GPU (CuPy; made by the runner's thread on its first device
    frame). Its output buffers are kept per size: a frame allocates nothing after the first."""

    def __init__(self):
        import cupy

        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        module = cupy.RawModule(code=_SOURCE)
        self._yuv = module.get_function("yuv420_thumbnail")
        self._bgr = module.get_function("bgr_thumbnail")
        self._out: dict = {}    # (h, w) -> (device, pinned host view)

    def takes(self, image: Any) -> bool:
        data = getattr(image, "data", None) if hasattr(image, "layout") else image
        return isinstance(data, self.cupy.ndarray) and data.dtype == np.uint8

    def _buffers(self, h: int, w: int):
        if (h, w) not in self._out:
            device = self.cupy.empty((h, w, 3), np.uint8)
            pinned = self.cupy.cuda.alloc_pinned_memory(h * w * 3)
            self._out[(h, w)] = (device, np.frombuffer(pinned, np.uint8, h * w * 3).reshape(h, w, 3))
        return self._out[(h, w)]

    def downscale(self, image: Any, max_width: int) -> np.ndarray:
        cp = self.cupy
        layout = getattr(image, "layout", None)
        data = image.data if layout is not None else image
        if layout is not None:
            if data.ndim != 2 or data.shape[0] % 3 or data.strides[1] != 1:
                raise ValueError(f"a YuvFrame's data must be [3H/2, W] uint8 with unit column stride, got {data.shape}")
            height, width = data.shape[0] * 2 // 3, data.shape[1]
        elif data.ndim in (2, 3) and (data.ndim == 2 or data.shape[2] in (3, 4)):
            height, width = data.shape[:2]
        else:
            raise ValueError(f"a frame must be (H, W), (H, W, 3) or (H, W, 4) uint8, got {data.shape}")
        h, w = shown_size(height, width, max_width)
        taps = max(1, math.ceil(max(height / h, width / w)))
        device, host = self._buffers(h, w)
        grid, block = ((w + 31) // 32, (h + 7) // 8), (32, 8)
        with self.stream:
            # The frame was written on another stream (the decoder's, the upload's): that work is
            # done by the time its record is written (the model read it), so no wait is needed here.
            if layout is not None:
                pitch, base = data.strides[0], data.data.ptr
                if layout == "nv12":
                    u, v, uv_pitch, step = base + height * pitch, base + height * pitch + 1, pitch, 2
                else:
                    if not data.flags.c_contiguous:
                        raise ValueError("an i420 YuvFrame's data must be contiguous")
                    u = base + height * width
                    v, uv_pitch, step = u + (height // 2) * (width // 2), width // 2, 1
                self._yuv(grid, block, (np.uint64(base), np.int64(pitch), np.uint64(u), np.uint64(v),
                                        np.int64(uv_pitch), np.int32(step), np.int32(height), np.int32(width),
                                        device, np.int32(h), np.int32(w), np.int32(taps)))
            else:
                if tuple(data.strides[1:]) != ((1,) if data.ndim == 2 else (data.shape[2], 1)):
                    data = cp.ascontiguousarray(data)
                channels = 1 if data.ndim == 2 else data.shape[2]
                self._bgr(grid, block, (np.uint64(data.data.ptr), np.int64(data.strides[0]), np.int32(channels), np.int32(height),
                                        np.int32(width), device, np.int32(h), np.int32(w), np.int32(taps)))
            device.get(out=host, stream=self.stream)
            self.stream.synchronize()
        return host.copy()   # the pinned buffer is reused by the next frame of this size
