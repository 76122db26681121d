"""GPU decoding with NVDEC through PyNvVideoCodec (``pip install segpost[nvdec]``).

PyNvVideoCodec brings its own FFmpeg demuxer (files, RTSP/HTTP) and drives the GPU's hardware
decoder; decoded frames are NV12 surfaces in device memory. They go to the pipeline as
``segpost.YuvFrame`` views (with the stream's colour matrix and range), are read in place by the
preprocessing kernel and never cross PCIe.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from ..preprocess import YuvFrame
from .decoders import Decoder


class NvdecUnavailable(RuntimeError):
    """NVDEC cannot decode this source (PyNvVideoCodec missing, codec or size unsupported)."""


def import_nvdec() -> Any:
    try:
        import PyNvVideoCodec
    except ImportError as exc:
        raise NvdecUnavailable("PyNvVideoCodec is not installed (pip install segpost[nvdec])") from exc
    except Exception as exc:  # it loads the driver's libnvcuvid at import; no driver, no NVDEC
        raise NvdecUnavailable(f"PyNvVideoCodec cannot load the NVIDIA video driver: {exc}") from exc
    return PyNvVideoCodec


def _call(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` that `obj` has, called (PyNvVideoCodec releases differ in spelling)."""
    for name in names:
        method = getattr(obj, name, None)
        if method is not None:
            return method()
    return default


def stream_colour(demuxer: Any) -> Tuple[str, bool]:
    """(matrix, full_range) the stream signals; BT.601 limited range when it signals nothing."""
    space = str(_call(demuxer, "ColorSpace", default="")).upper()
    colour_range = str(_call(demuxer, "ColorRange", default="")).upper()
    return ("bt709" if "709" in space else "bt601"), ("JPEG" in colour_range or "FULL" in colour_range)


class NvdecDecoder(Decoder):
    """One camera through NVDEC. Frames are YuvFrame(NV12) views of the decoder's surfaces, valid
    until the next read(); keep() copies one into this decoder's own device slots."""

    def __init__(self, url: str, gpu: int = 0):
        import cupy

        nvc = import_nvdec()
        self._cp = cupy
        self.url = url
        self._demuxer = nvc.CreateDemuxer(filename=url)
        self.width = int(_call(self._demuxer, "Width", default=0))
        self.height = int(_call(self._demuxer, "Height", default=0))
        codec = self._demuxer.GetNvCodecId()
        self.codec = str(codec).split(".")[-1]
        bit_depth = int(_call(self._demuxer, "BitDepth", default=8))
        chroma = str(_call(self._demuxer, "ChromaFormat", default="420"))
        if bit_depth != 8 or ("420" not in chroma and chroma != ""):
            raise NvdecUnavailable(f"{self.codec} {chroma} {bit_depth}-bit: segpost reads 8-bit 4:2:0 (NV12) surfaces")
        try:
            caps = nvc.GetDecoderCaps(gpuid=gpu, codec=codec, chromaformat=self._demuxer.ChromaFormat(),
                                      bitdepth=bit_depth)
        except Exception as exc:  # raised by the driver for codecs it does not know
            raise NvdecUnavailable(f"this GPU's NVDEC cannot decode {self.codec}: {exc}") from exc
        if not caps or "num_decoder_engines" not in caps or caps.get("supported", 1) in (0, False):
            raise NvdecUnavailable(f"this GPU's NVDEC cannot decode {self.codec}")
        if self.width > int(caps.get("width_max", self.width)) or self.height > int(caps.get("height_max", self.height)):
            raise NvdecUnavailable(f"{self.width}x{self.height} exceeds this GPU's NVDEC limit for {self.codec}")
        self.matrix, self.full_range = stream_colour(self._demuxer)
        self._decoder = nvc.CreateDecoder(gpuid=gpu, codec=codec, cudacontext=0, cudastream=0, usedevicememory=True)
        self._timebase = self._timebase_seconds()
        self._packets = iter(self._demuxer)
        self._pending: Deque[Any] = deque()
        self._slots: Dict[int, Any] = {}
        self._copy_stream = cupy.cuda.Stream(non_blocking=True)

    def _timebase_seconds(self) -> Optional[float]:
        num = _call(self._demuxer, "GetTimebaseNum", "TimebaseNum")
        den = _call(self._demuxer, "GetTimebaseDen", "TimebaseDen")
        return float(num) / float(den) if num and den else None

    def read(self) -> Optional[Tuple[Optional[float], YuvFrame]]:
        while not self._pending:
            packet = next(self._packets, None)
            if packet is None:
                return None
            self._pending.extend(self._decoder.Decode(packet))
        frame = self._pending.popleft()
        pts = _call(frame, "getPTS")
        data = self._cp.from_dlpack(frame)
        seconds = float(pts) * self._timebase if pts is not None and self._timebase else None
        return seconds, YuvFrame(data, "nv12", self.matrix, self.full_range)

    def keep(self, image: YuvFrame, slot: int) -> YuvFrame:
        cp = self._cp
        target = self._slots.get(slot)
        if target is None or target.shape != image.data.shape:
            target = self._slots[slot] = cp.empty(image.data.shape, cp.uint8)
        with self._copy_stream:
            target[...] = image.data
        self._copy_stream.synchronize()
        return YuvFrame(target, image.layout, image.matrix, image.full_range)

    def describe(self) -> str:
        return (f"NVDEC (GPU) {self.codec} {self.width}x{self.height} {self.matrix} "
                f"{'full' if self.full_range else 'limited'} range")

    def close(self) -> None:
        self._pending.clear()
        self._decoder = self._demuxer = None
