"""Encoded images (JPEG, PNG) -> BGR frames the pipeline reads, a batch at a time.

- ``gpu``: nvImageCodec (``pip install segpost[serve-gpu]``) decodes the batch's JPEGs in one call
  on the GPU, straight into device memory as interleaved BGR, which the preprocessing reads in
  place (no pixel crosses PCIe). Its output images are reused from batch to batch
  (``recycle``), so decoding stops allocating once the pool holds a round's worth.
  PNGs, and JPEGs it cannot decode (CMYK, say), go to OpenCV on a CPU thread pool.
- ``cpu``: OpenCV on the thread pool.
- ``auto``: gpu where the pipeline runs on CUDA and nvImageCodec loads, else cpu;
  ``choice`` and ``why`` say which and why.

Images arrive already inspected (io.image_header): their size is known to fit before a pixel is
decoded. EXIF orientation is ignored on both paths: frames are processed as stored.
"""
from __future__ import annotations

import concurrent.futures
import threading
import weakref
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .image_header import ImageError, ImageHeader

MODES = ("auto", "gpu", "cpu")
_EXTRA = "pip install 'segpost[serve-gpu]' (nvidia-nvimgcodec-cu13, or -cu12)"


def load_nvimgcodec():
    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise ValueError(f"GPU image decoding needs nvImageCodec: {_EXTRA} ({exc})") from None
    return nvimgcodec


class FrameDecoder:
    """Decodes batches of (bytes, ImageHeader); one thread calls ``decode`` at a time."""

    def __init__(self, mode: str, device: str, threads: int = 4, pool_size: int = 16, *,
                 nvimgcodec_on_cpu: bool = False):
        """`nvimgcodec_on_cpu`: run nvImageCodec's path with its CPU backends (host images), to test
        that path on a machine without a GPU."""
        if mode not in MODES:
            raise ValueError(f"decode must be one of {MODES}, got {mode!r}")
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="segpost decode")
        self._nv, self._stream, self._spare, self._lock = None, None, [], threading.Lock()
        self._decoder: list = []   # nvImageCodec's decoder, held in a list that close() and the finalizer share
        self._pool_size = pool_size
        self.choice, self.why = "cpu", "decode cpu: OpenCV on a thread pool"
        if nvimgcodec_on_cpu:
            self._open_nvimgcodec(on_gpu=False, threads=threads)
            self.choice, self.why = "gpu", "nvImageCodec with its CPU backends (test mode)"
        elif mode == "gpu" or (mode == "auto" and device == "cuda"):
            try:
                if device != "cuda":
                    raise ValueError("decode gpu needs a replica on a GPU (gpus_per_replica > 0)")
                self._open_nvimgcodec(on_gpu=True, threads=threads)
                self.choice, self.why = "gpu", "nvImageCodec decodes JPEGs on the GPU (PNG on CPU threads)"
            except (ValueError, RuntimeError) as exc:
                if mode == "gpu":
                    raise ValueError(str(exc)) from None
                self.why = f"decode auto chose cpu (OpenCV): {exc}"
        elif mode == "auto":
            self.why = "decode auto chose cpu (OpenCV): the pipeline runs on the CPU"

    def _open_nvimgcodec(self, on_gpu: bool, threads: int) -> None:
        nv = load_nvimgcodec()
        if on_gpu:
            import cupy

            backends = [nv.Backend(kind) for kind in (nv.BackendKind.HW_GPU_ONLY, nv.BackendKind.GPU_ONLY,
                                                      nv.BackendKind.HYBRID_CPU_GPU)]
            self._decoder.append(nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CURRENT, backends=backends,
                                            max_num_cpu_threads=threads))
            # Decoding is small and the next round waits for it: on a stream of the highest priority
            # its kernels are scheduled ahead of the running round's instead of queueing behind them.
            priority_range = getattr(cupy.cuda.runtime, "deviceGetStreamPriorityRange", None)
            self._stream = cupy.cuda.Stream(non_blocking=True,
                                            priority=priority_range()[1] if priority_range else None)
        else:
            self._decoder.append(nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CPU_ONLY,
                                            backends=[nv.Backend(nv.BackendKind.CPU_ONLY)], max_num_cpu_threads=threads))
        self._params = nv.DecodeParams(sample_format=nv.I_BGR, apply_exif_orientation=False)
        self._nv = nv
        # nvImageCodec's decoder and images free CUDA memory when destroyed: left to the
        # interpreter's final teardown they may outlive the CUDA context and crash the process.
        weakref.finalize(self, _release, self._spare, self._stream, self._decoder)

    def decode(self, items: Sequence[Tuple[bytes, ImageHeader]]) -> List[Union["Decoded", ImageError]]:
        """Each item decoded to a Decoded (its ``frame`` goes to the pipeline), or the ImageError
        saying why it could not be."""
        out: List[Any] = [None] * len(items)
        on_gpu = [i for i, (_, header) in enumerate(items) if self._nv is not None and header.kind == "jpeg"]
        gpu = set(on_gpu)
        cpu = {i: self._pool.submit(_opencv, *items[i]) for i in range(len(items)) if i not in gpu}
        if on_gpu:
            for i, decoded in zip(on_gpu, self._nvimgcodec([items[i] for i in on_gpu])):
                if decoded is None:   # not decodable there: OpenCV has the last word
                    cpu[i] = self._pool.submit(_opencv, *items[i])
                else:
                    out[i] = decoded
        for i, future in cpu.items():
            out[i] = future.result()
        return out

    def _nvimgcodec(self, items: Sequence[Tuple[bytes, ImageHeader]]) -> List[Optional["Decoded"]]:
        streams = [self._nv.CodeStream(data) for data, _ in items]
        with self._lock:
            reuse = [self._spare.pop() for _ in items] if len(self._spare) >= len(items) else None
        kwargs = {"images": reuse} if reuse else {}
        if self._stream is not None:
            kwargs["cuda_stream"] = self._stream.ptr
        try:
            images = self._decoder[0].decode(streams, params=self._params, **kwargs)
            if self._stream is not None:
                self._stream.synchronize()   # the frames are complete before any other stream reads them
        except RuntimeError:   # the whole batch refused (a decoder failure): OpenCV decodes or judges each image
            return [None] * len(items)
        out = []
        for image, (_, header) in zip(images, items):
            frame = None if image is None else _as_array(image)
            if frame is not None and frame.shape != (header.height, header.width, 3):
                frame = None
            out.append(None if frame is None else Decoded(frame, image))
        return out

    def recycle(self, decoded: Sequence[Any]) -> None:
        """Hand back frames the pipeline has finished reading: their device images are reused."""
        with self._lock:
            for d in decoded:
                if isinstance(d, Decoded) and d.image is not None and len(self._spare) < self._pool_size:
                    self._spare.append(d.image)

    def close(self) -> None:
        """Stops the threads and releases nvImageCodec's decoder and spare images (frames handed
        out stay valid while referenced)."""
        self._pool.shutdown(wait=False)
        with self._lock:
            self._nv = None
            _release(self._spare, self._stream, self._decoder)


def _release(spare: list, stream: Any, decoder: list) -> None:
    """Waits for decoding in flight, then drops the spare images and the decoder, while CUDA lives."""
    if stream is not None:
        stream.synchronize()
    spare.clear()
    decoder.clear()


class Decoded:
    """A decoded frame (BGR (H, W, 3) uint8, host or device) and the decoder image holding it."""

    __slots__ = ("frame", "image")

    def __init__(self, frame: Any, image: Any = None):
        self.frame, self.image = frame, image


def _as_array(image: Any) -> Any:
    if image.buffer_kind == type(image.buffer_kind).STRIDED_DEVICE:
        import cupy

        return cupy.asarray(image)   # a view: the pipeline reads the decoder's device buffer in place
    return np.asarray(image)


def _opencv(data: bytes, header: ImageHeader) -> Union[Decoded, ImageError]:
    import cv2

    try:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        frame = None
    if frame is None:
        return ImageError(f"a {header.kind.upper()} whose pixels could not be decoded (corrupt)")
    if frame.shape != (header.height, header.width, 3):
        return ImageError(f"decoded to {frame.shape[1]}x{frame.shape[0]}, not the {header.width}x{header.height} "
                          "its header declares")
    return Decoded(frame)
