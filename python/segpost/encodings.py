"""Compact mask encodings as they arrive on the host, decoded only when asked."""
from __future__ import annotations

from typing import Iterator

import numpy as np


class PackedMasks:
    """N masks of one frame, 1 bit per pixel: row k of ``data`` is numpy.packbits(mask_k,
    bitorder="big") of the row-major (H, W) mask, padded. Indexing or np.asarray() unpacks."""

    def __init__(self, data: np.ndarray, height: int, width: int):
        self.data = data  # (N, stride) uint8; the first ceil(H*W/8) bytes of each row are the payload
        self.height, self.width = height, width

    @property
    def shape(self) -> tuple:
        return (len(self.data), self.height, self.width)

    @property
    def payload_bytes(self) -> int:
        return (self.height * self.width + 7) // 8

    def __len__(self) -> int:
        return len(self.data)

    def packed(self, k: int) -> np.ndarray:
        """Mask k's payload bytes (a view), as numpy.packbits would give them."""
        return self.data[k, : self.payload_bytes]

    def __getitem__(self, k: int) -> np.ndarray:
        bits = np.unpackbits(self.packed(k), count=self.height * self.width, bitorder="big")
        return bits.view(np.bool_).reshape(self.height, self.width)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[k] for k in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        n, h, w = self.shape
        if n == 0:
            full = np.zeros((0, h, w), np.bool_)
        else:
            bits = np.unpackbits(self.data[:, : self.payload_bytes], axis=1, count=h * w, bitorder="big")
            full = bits.view(np.bool_).reshape(n, h, w)
        return full if dtype is None else full.astype(dtype)

    def copy(self) -> "PackedMasks":
        return PackedMasks(self.data.copy(), self.height, self.width)


class RleMasks:
    """N masks of one frame as COCO run lengths (column-major, starting with a run of zeros).

    ``[k]`` gives mask k as a pycocotools-compatible dict {"size": [H, W], "counts": bytes}
    (pycocotools.mask.decode accepts it); ``counts(k)`` the uncompressed run lengths;
    np.asarray() decodes all masks to (N, H, W) bool. A mask that did not fit the counts buffer
    (BatchResult.mask_overflow) is None in ``[k]`` and raises when decoded.
    """

    def __init__(self, counts: list, height: int, width: int):
        self._counts = counts  # per mask: int32 run lengths, or None
        self.height, self.width = height, width

    @property
    def shape(self) -> tuple:
        return (len(self._counts), self.height, self.width)

    def __len__(self) -> int:
        return len(self._counts)

    def counts(self, k: int):
        return self._counts[k]

    def __getitem__(self, k: int):
        counts = self._counts[k]
        if counts is None:
            return None
        from . import _ext

        return {"size": [self.height, self.width], "counts": _ext.coco_rle_string(np.ascontiguousarray(counts))}

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def decode(self, k: int) -> np.ndarray:
        counts = self._counts[k]
        if counts is None:
            raise ValueError(f"RLE mask {k} did not fit the counts buffer (raise rle_capacity)")
        values = np.zeros(len(counts), np.bool_)
        values[1::2] = True
        flat = np.repeat(values, counts)
        return flat.reshape(self.width, self.height).T

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = np.zeros((len(self), self.height, self.width), np.bool_)
        for k in range(len(self)):
            full[k] = self.decode(k)
        return full if dtype is None else full.astype(dtype)

    def copy(self) -> "RleMasks":
        return RleMasks([None if c is None else c.copy() for c in self._counts], self.height, self.width)


class _PerMaskList:
    """N masks of one frame kept as one array each; np.asarray() decodes them all to (N, H, W)."""

    def __init__(self, items: list, height: int, width: int):
        self._items, self.height, self.width = items, height, width

    @property
    def shape(self) -> tuple:
        return (len(self._items), self.height, self.width)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, k: int) -> np.ndarray:
        return self._items[k]

    def __iter__(self):
        return iter(self._items)

    def decode(self, k: int) -> np.ndarray:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = np.zeros(self.shape, np.bool_)
        for k in range(len(self)):
            full[k] = self.decode(k)
        return full if dtype is None else full.astype(dtype)


class CroppedMasks(_PerMaskList):
    """N masks of one frame, each only inside its box (rounded outwards to whole pixels), at full
    resolution: ``[k]`` is the (h, w) bool crop, ``windows[k]`` its (x0, y0, w, h) in the frame,
    ``decode(k)`` the full-frame mask (zeros outside the box). Pixels of the full mask outside the
    detection's box are not kept."""

    def __init__(self, crops: list, windows: np.ndarray, height: int, width: int):
        super().__init__(crops, height, width)
        self.windows = windows

    def decode(self, k: int) -> np.ndarray:
        x0, y0, w, h = (int(v) for v in self.windows[k])
        full = np.zeros((self.height, self.width), np.bool_)
        full[y0: y0 + h, x0: x0 + w] = self._items[k]
        return full

    def copy(self) -> "CroppedMasks":
        return CroppedMasks([c.copy() for c in self._items], self.windows.copy(), self.height, self.width)


class LowResMasks(_PerMaskList):
    """N kept masks of one frame as the engine's low-res maps (fp16; logits, or probabilities in
    MaskMode.PROBABILITY): ``[k]`` is map k; ``decode(k)`` resizes and thresholds it to the frame
    with the Postprocessor's own math, equal to OutputKind.FULL's mask whenever the engine's maps
    were fp16 (fp32 maps are rounded to fp16 on the way)."""

    def __init__(self, maps: list, height: int, width: int, threshold: float):
        super().__init__(maps, height, width)
        self.threshold = threshold

    def decode(self, k: int) -> np.ndarray:
        return resize_lowres(self._items[k], (self.height, self.width), self.threshold)

    def copy(self) -> "LowResMasks":
        return LowResMasks([m.copy() for m in self._items], self.height, self.width, self.threshold)


def coco_rle_counts(text) -> np.ndarray:
    """pycocotools' compressed RLE string (str or bytes) -> its run lengths (rleFrString in
    pycocotools' maskApi.c; the inverse of what RleMasks[k]["counts"] holds)."""
    text = text.decode("ascii") if isinstance(text, bytes) else text
    counts, position = [], 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[position]) - 48
            value |= (c & 0x1f) << (5 * shift)
            more = bool(c & 0x20)
            position += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return np.asarray(counts, np.int32)


def decode_coco_rle(rle) -> np.ndarray:
    """A COCO RLE dict {"size": [H, W], "counts": str} -> the (H, W) bool mask (no pycocotools needed)."""
    height, width = rle["size"]
    return RleMasks([coco_rle_counts(rle["counts"])], height, width).decode(0)


def dense_mask(masks, k: int) -> np.ndarray:
    """Mask k of a FrameResult's masks as an (H, W) bool numpy array, whatever the output kind."""
    if hasattr(masks, "decode"):
        return masks.decode(k)
    mask = masks[k]
    return mask.get() if hasattr(mask, "get") else np.asarray(mask)


def mask_crop(masks, k: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Rows y0:y1 and columns x0:x1 of mask k, (y1 - y0, x1 - x0) bool, whatever the output kind;
    an RLE mask decodes only those columns (a 1080p frame's other columns cost nothing)."""
    if isinstance(masks, RleMasks):
        counts = masks.counts(k)
        if counts is None:
            raise ValueError(f"RLE mask {k} did not fit the counts buffer (raise rle_capacity)")
        h = masks.height
        ends = np.cumsum(counts, dtype=np.int64)            # run i covers [ends[i] - counts[i], ends[i])
        first, last = x0 * h, x1 * h
        runs = slice(np.searchsorted(ends, first, side="right"), np.searchsorted(ends, last, side="left") + 1)
        lengths = np.clip(ends[runs], first, last) - np.clip(ends[runs] - counts[runs], first, last)
        values = np.arange(runs.start, runs.start + len(lengths)) % 2 == 1   # odd runs are the mask's
        return np.repeat(values, lengths).reshape(x1 - x0, h).T[y0:y1]
    return dense_mask(masks, k)[y0:y1, x0:x1]


def placed_rle_counts(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> np.ndarray:
    """The COCO run lengths (column-major, starting with zeros) of a (height, width) frame that is
    empty but for `crop` with its top-left pixel at (x0, y0), which may lie partly outside (cut off).
    Costs the crop's pixels, not the frame's: a predicted mask is encoded where it moved to."""
    crop = np.asarray(crop, bool)
    h, w = crop.shape
    r0, r1 = max(0, -y0), min(h, height - y0)
    c0, c1 = max(0, -x0), min(w, width - x0)
    if r0 >= r1 or c0 >= c1:
        return np.asarray([height * width], np.int32)
    sub = crop[r0:r1, c0:c1]
    padded = np.zeros((sub.shape[1], sub.shape[0] + 2), np.int8)   # column-major, a False above and below
    padded[:, 1:-1] = sub.T
    col, row = np.nonzero(np.diff(padded, axis=1))                 # edges, in column-major order
    edges = (x0 + c0 + col).astype(np.int64) * height + (y0 + r0 + row)
    # A run ending at a column's last row and one starting at the next column's first row are one run.
    joined = np.flatnonzero(edges[1:-1:2] == edges[2::2])
    edges = np.delete(edges, np.concatenate([2 * joined + 1, 2 * joined + 2]))
    end = [] if edges.size and edges[-1] == height * width else [height * width]
    return np.diff(np.concatenate([[0], edges, end])).astype(np.int32)


class RunLengthMask:
    """One (H, W) mask as its COCO run lengths, moved and encoded without being decoded: what the
    on_change schedule writes for a frame the model did not see (the last mask, moved by its
    track's motion). np.asarray() gives the dense (H, W) bool mask; ``rle()`` the COCO dict."""

    def __init__(self, counts: np.ndarray, height: int, width: int):
        self.counts = np.asarray(counts, np.int32)
        self.height, self.width = int(height), int(width)
        ends = np.cumsum(self.counts, dtype=np.int64)
        starts, stops = (ends - self.counts)[1::2], ends[1::2]   # the mask's runs (odd ones)
        keep = stops > starts
        starts, stops = starts[keep], stops[keep] - 1
        if starts.size:
            h = self.height
            rows_whole = bool(np.any(starts // h != stops // h)) or h == 1
            self.columns = (int(starts[0] // h), int(stops[-1] // h) + 1)
            self.rows = (0, h) if rows_whole else (int((starts % h).min()), int((stops % h).max()) + 1)
        else:
            self.columns = self.rows = None   # empty

    @classmethod
    def of(cls, masks, k: int) -> "RunLengthMask":
        """Mask k of a FrameResult's masks (RLE output is taken as it is, other kinds are encoded)."""
        if isinstance(masks, RleMasks):
            counts = masks.counts(k)
            if counts is None:
                raise ValueError(f"RLE mask {k} did not fit the counts buffer (raise rle_capacity)")
            return cls(np.array(counts, np.int32), masks.height, masks.width)
        return cls.of_dense(dense_mask(masks, k))

    @classmethod
    def of_dense(cls, mask: np.ndarray) -> "RunLengthMask":
        mask = np.asarray(mask, bool)
        return cls(placed_rle_counts(mask, 0, 0, *mask.shape), *mask.shape)

    @property
    def shape(self) -> tuple:
        return (self.height, self.width)

    def moved(self, dx: int, dy: int) -> "RunLengthMask":
        """The mask moved dx pixels right and dy down; what leaves the frame is lost."""
        if self.columns is None or (dx == 0 and dy == 0):
            return self
        (c0, c1), (r0, r1), h, w = self.columns, self.rows, self.height, self.width
        if 0 <= c0 + dx and c1 + dx <= w and 0 <= r0 + dy and r1 + dy <= h:
            # Inside the frame: every edge moves by the same offset (a run that wraps a column
            # spans rows 0..h, so it only gets here with dy == 0, which keeps it whole).
            edges = np.cumsum(self.counts, dtype=np.int64)
            edges = (edges if len(edges) % 2 == 0 else edges[:-1]) + dx * h + dy   # an odd last run: background
            end = [] if edges[-1] == h * w else [h * w]
            return RunLengthMask(np.diff(np.concatenate([[0], edges, end])), h, w)
        crop = mask_crop(RleMasks([self.counts], h, w), 0, c0, r0, c1, r1)
        return RunLengthMask(placed_rle_counts(crop, c0 + dx, r0 + dy, h, w), h, w)

    def sample(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """mask[ys][:, xs] (a grid of pixels, [len(ys), len(xs)] bool) read from the runs: no decode."""
        ends = np.cumsum(self.counts, dtype=np.int64)
        pixels = np.asarray(xs, np.int64)[None, :] * self.height + np.asarray(ys, np.int64)[:, None]
        return np.searchsorted(ends, pixels, side="right") % 2 == 1   # odd runs are the mask's

    def rle(self) -> dict:
        from . import _ext

        return {"size": [self.height, self.width], "counts": _ext.coco_rle_string(np.ascontiguousarray(self.counts))}

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = RleMasks([self.counts], self.height, self.width).decode(0)
        return dense if dtype is None else dense.astype(dtype)

def resize_lowres(lowres: np.ndarray, frame_size, threshold: float = 0.0) -> np.ndarray:
    """A low-res map (mask_h, mask_w) resized to frame_size (H, W) and thresholded, (H, W) bool,
    by the Postprocessor's CPU twin (half-pixel bilinear, then value > threshold)."""
    from . import _ext

    height, width = frame_size
    lowres = np.ascontiguousarray(lowres, dtype=np.float32)
    return _ext.resize_lowres_cpu(lowres, int(height), int(width), float(threshold)).view(np.bool_)
