"""What decodes one camera: the ``Decoder`` interface that CameraSource drives (sources.py), and
OpenCV's implementation on the CPU; NVDEC's is in nvdec.py."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np


class Decoder:
    """One open connection to a camera. ``read()`` gives the next decoded frame as (pts, image),
    valid until the next read(), or None when the stream ended or failed; ``keep(image, slot)``
    gives a copy that stays valid (slot 0..2 of the decoder's own storage); ``describe()`` says
    what decodes (shown once)."""

    def read(self) -> Optional[Tuple[Optional[float], Any]]:
        raise NotImplementedError

    def keep(self, image: Any, slot: int) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:
        pass


class OpenCVDecoder(Decoder):
    """CPU decoding through OpenCV (FFmpeg backend); frames are BGR uint8 arrays."""

    def __init__(self, url: str, timeout_seconds: float = 5.0):
        import cv2

        self._cv2 = cv2
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_seconds * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_seconds * 1000)]
        if url.isdigit():
            self._capture = cv2.VideoCapture(int(url))
        else:
            self._capture = cv2.VideoCapture(url, cv2.CAP_ANY, timeouts)
        if not self._capture.isOpened():
            raise OSError("cannot open it (missing file, unreachable stream or unsupported codec)")

    def read(self) -> Optional[Tuple[Optional[float], np.ndarray]]:
        ok, frame = self._capture.read()
        if not ok:
            return None
        pts = self._capture.get(self._cv2.CAP_PROP_POS_MSEC)
        return (pts / 1000.0 if pts >= 0 else None), frame

    def keep(self, image: np.ndarray, slot: int) -> np.ndarray:
        # OpenCV hands out a new array per read: nothing to copy.
        return image

    def describe(self) -> str:
        return "OpenCV (CPU)"

    def close(self) -> None:
        self._capture.release()
