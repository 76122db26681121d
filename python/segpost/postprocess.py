"""segpost.Postprocessor: SAM3-style engine outputs -> per-frame boxes, scores and masks."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _ext
from ._arrays import ArrayRef, as_array_ref, stream_handle
from ._common import FrameSize, cuda_available, size_pair
from .encodings import CroppedMasks, LowResMasks, PackedMasks, RleMasks
from .postprocess_config import MaskMode, OutputKind, PostprocessConfig  # noqa: F401 (MaskMode: re-exported)
from .results import BatchResult, FrameResult


class Postprocessor:
    """Scores, compacts, gathers and resizes DETR-style outputs; allocates everything up front.

    Inputs of ``run``/``enqueue`` (F frames, Q queries):
      pred_logits [F, Q], presence_logits [F, 1] or [F] or None, pred_boxes [F, Q, 4] (xyxy in
      0..1), pred_masks [F, Q, mask_h, mask_w]; float32 or float16; C-contiguous. CUDA arrays
      run the kernels on ``stream``; numpy arrays run the C++ CPU twin.

    NaN scores are never kept; NaN mask logits count as background and infinite ones are
    clamped to +-1e30; a NaN box coordinate becomes 0.
    """

    def __init__(self, config: Optional[PostprocessConfig] = None, **settings: Any):
        """``Postprocessor(max_frames=8, score_threshold=0.3, ...)`` or ``Postprocessor(config)``: the
        settings are segpost.PostprocessConfig's fields (their defaults, bounds and descriptions)."""
        if config is None:
            config = PostprocessConfig(**settings)
        elif settings or not isinstance(config, PostprocessConfig):
            raise TypeError("Postprocessor takes a segpost.PostprocessConfig or its fields as keywords, not both")
        if config.device is None:
            config = dataclasses.replace(config, device="cuda" if cuda_available() else "cpu")
        self.config = config
        self.device = config.device
        self.output = config.output
        self.num_queries = config.num_queries
        self.mask_size = tuple(config.mask_size)
        self.max_frames = config.max_frames
        self.max_frame_size = tuple(config.max_frame_size)
        self.capacity = config.capacity
        self._core = _ext.Postprocessor(config.cpp_config(_ext.PostprocessorConfig()))
        layout = self._core.layout
        block = self._core.host_results()
        self._header = block[: layout["frame"]].view(np.int32)
        cap = self.capacity
        self._frame = block[layout["frame"]: layout["frame"] + 4 * cap].view(np.int32)
        self._query = block[layout["query"]: layout["query"] + 4 * cap].view(np.int32)
        self._score = block[layout["score"]: layout["score"] + 4 * cap].view(np.float32)
        self._box = block[layout["box"]: layout["box"] + 16 * cap].view(np.float32).reshape(cap, 4)
        self._mask_offset = block[layout["mask_offset"]: layout["mask_offset"] + 8 * cap].view(np.int64)
        self._mask_length = block[layout["mask_length"]: layout["mask_length"] + 4 * cap].view(np.int32)
        self._window = block[layout["window"]: layout["window"] + 16 * cap].view(np.int32).reshape(cap, 4)
        self._class_ids = np.zeros(cap, np.int32)  # filled per result: no allocation per call
        self.mask_threshold = config.threshold
        for array in (self._header, self._frame, self._query, self._score, self._box, self._mask_offset,
                      self._mask_length, self._window):
            array.flags.writeable = False
        self._host_masks = None if self.output is OutputKind.DEVICE_FULL else self._core.host_masks()
        if self._host_masks is not None:
            self._host_masks.flags.writeable = False
        self._device_masks = None
        if self.output is OutputKind.DEVICE_FULL:
            import cupy

            memory = cupy.cuda.UnownedMemory(self._core.device_masks_ptr, self._core.mask_buffer_bytes, self._core)
            self._device_masks = cupy.cuda.MemoryPointer(memory, 0)
        self._pending: Optional[tuple[list[FrameSize], int]] = None

    # -- running -----------------------------------------------------------------------------

    def run(self, pred_logits: Any, presence_logits: Any, pred_boxes: Any, pred_masks: Any,
            frame_sizes: Union[FrameSize, Sequence[FrameSize]], class_id: int = 0, stream: Any = None) -> BatchResult:
        """enqueue() then result(): one host synchronization."""
        self.enqueue(pred_logits, presence_logits, pred_boxes, pred_masks, frame_sizes, class_id, stream)
        return self.result()

    def enqueue(self, pred_logits: Any, presence_logits: Any, pred_boxes: Any, pred_masks: Any,
                frame_sizes: Union[FrameSize, Sequence[FrameSize]], class_id: int = 0, stream: Any = None) -> None:
        """Start a class-batch without waiting. On CUDA, once the work queued on ``stream`` so far
        has run, pred_masks may be overwritten (the kept masks were gathered); the rest runs on
        the Postprocessor's own stream. Call result() before the next enqueue."""
        if self._pending is not None:
            raise RuntimeError("enqueue() called twice: call result() for the previous batch first "
                               "(its buffers would be overwritten)")
        if not isinstance(class_id, (int, np.integer)) or isinstance(class_id, bool):
            raise TypeError(f"class_id must be an int, got {class_id!r}")
        refs = self._checked_inputs(pred_logits, presence_logits, pred_boxes, pred_masks)
        num_frames = refs[0].shape[0]
        sizes = _frame_sizes(frame_sizes, num_frames, self.max_frame_size)
        heights = [h for h, _ in sizes]
        widths = [w for _, w in sizes]
        logits, presence, boxes, masks = refs
        args = (logits.ptr, logits.dtype_code,
                presence.ptr if presence else 0, presence.dtype_code if presence else 0,
                boxes.ptr, boxes.dtype_code, masks.ptr, masks.dtype_code, heights, widths)
        if logits.on_device:
            if self.device != "cuda":
                raise TypeError("CUDA arrays given to a Postprocessor built with device='cpu'")
            self._core.enqueue(*args, stream_handle(stream))
        else:
            if self.output is OutputKind.DEVICE_FULL:
                raise TypeError("numpy inputs cannot produce OutputKind.DEVICE_FULL masks; pass CUDA arrays")
            self._core.run_cpu(*args)
        self._pending = (sizes, int(class_id))

    def result(self) -> BatchResult:
        """Wait for the last enqueue and return its detections (views, valid until the next enqueue)."""
        if self._pending is None:
            raise RuntimeError("result() without a pending enqueue()")
        sizes, class_id = self._pending
        self._pending = None
        self._core.synchronize()
        header = self._header
        # Header (csrc/layout.h), as int32: total, passed, overflow, num_frames, mask_overflow,
        # reserved, mask_bytes (int64), counts[64].
        passed, overflow, mask_overflow = int(header[1]), bool(header[2]), bool(header[4])
        counts = header[8: 8 + len(sizes)]
        self._class_ids[: int(header[0])] = class_id
        class_ids = self._class_ids.view()
        class_ids.flags.writeable = False
        frames = []
        start = 0
        for f, (h, w) in enumerate(sizes):
            n = int(counts[f])
            sl = slice(start, start + n)
            frames.append(FrameResult(
                boxes=self._box[sl], scores=self._score[sl],
                class_ids=class_ids[sl], query_ids=self._query[sl],
                masks=self._masks(start, n, h, w)))
            start += n
        return BatchResult(tuple(frames), passed, overflow, mask_overflow)

    def abandon(self) -> None:
        """Drop the pending enqueue without reading it (its round failed): waits for its queued
        work, so the next enqueue may reuse the buffers. Does nothing when nothing is pending."""
        if self._pending is None:
            return
        self._pending = None
        self._core.synchronize()

    def round_view(self, synchronize: bool = False) -> Any:
        """The last batch's results as the ops after it in a round read them (the tracker): a
        read-only ``segpost._ext.RoundView`` (csrc/postprocess/round_view.h) of addresses, shapes
        and the result block's layout, valid until the next enqueue. ``synchronize``: wait for
        the batch first, so that its host results are complete (result() waits too)."""
        return self._core.round_view(synchronize)

    def _masks(self, start: int, n: int, h: int, w: int) -> Any:
        if self.output is OutputKind.CROP:
            return CroppedMasks([self._host_masks[o: o + int(win[2]) * int(win[3])].view(np.bool_).reshape(win[3], win[2])
                                 for o, win in zip(self._mask_offset[start: start + n], self._window[start: start + n])],
                                self._window[start: start + n], h, w)
        if self.output is OutputKind.LOWRES:
            mh, mw = self.mask_size
            maps = [self._host_masks[o: o + 2 * mh * mw].view(np.float16).reshape(mh, mw)
                    for o in self._mask_offset[start: start + n]]
            return LowResMasks(maps, h, w, self.mask_threshold)
        if self.output is OutputKind.RLE:
            runs = self._host_masks.view(np.int32)
            return RleMasks([None if self._mask_length[k] < 0 else
                             runs[self._mask_offset[k] // 4: self._mask_offset[k] // 4 + self._mask_length[k]]
                             for k in range(start, start + n)], h, w)
        return self._mask_view(int(self._mask_offset[start]) if n else 0, n, h, w)

    def _mask_view(self, offset: int, n: int, h: int, w: int) -> Any:
        bits = self.output.bits_per_pixel
        stride = _ext.mask_stride_bytes(h, w, bits)
        if self._device_masks is not None:
            import cupy

            return cupy.ndarray((n, h, w), dtype=cupy.bool_, memptr=self._device_masks + offset,
                                strides=(stride, w, 1))
        if bits == 1:
            data = np.ndarray((n, stride), dtype=np.uint8, buffer=self._host_masks, offset=offset)
            return PackedMasks(data, h, w)
        return np.ndarray((n, h, w), dtype=np.bool_, buffer=self._host_masks, offset=offset,
                          strides=(stride, w, 1))

    # -- reporting ---------------------------------------------------------------------------

    @property
    def last_host_bytes(self) -> int:
        """Bytes the last result moved from the device to the host: the result block and the
        masks' encoded bytes (0 mask bytes for DEVICE_FULL)."""
        if self.output is OutputKind.DEVICE_FULL:
            mask_bytes = 0
        elif self.output is OutputKind.CROP:  # only the windows' bytes are written to the mapped buffer
            total = int(self._header[0])
            mask_bytes = int(np.sum(self._window[:total, 2].astype(np.int64) * self._window[:total, 3]))
        else:
            mask_bytes = int(self._header[6:8].view(np.int64)[0])
        return self._core.layout["bytes"] + mask_bytes

    def memory_report(self) -> dict:
        """Bytes this Postprocessor holds, all allocated at construction and constant after."""
        return {"device": self._core.device_bytes, "pinned_host": self._core.pinned_bytes,
                "host": self._core.host_bytes}

    # -- validation --------------------------------------------------------------------------

    def _checked_inputs(self, pred_logits, presence_logits, pred_boxes, pred_masks) -> list:
        logits = as_array_ref(pred_logits, "pred_logits")
        boxes = as_array_ref(pred_boxes, "pred_boxes")
        masks = as_array_ref(pred_masks, "pred_masks")
        presence = None if presence_logits is None else as_array_ref(presence_logits, "presence_logits")
        refs = [logits, presence, boxes, masks]
        sides = {r.on_device for r in refs if r is not None}
        if len(sides) > 1:
            raise TypeError("inputs mix host (numpy) and device (CUDA) arrays; pass all four on one side")
        if len(logits.shape) != 2:
            raise ValueError(f"pred_logits must be [F, Q], got shape {logits.shape}")
        f, q = logits.shape
        if q != self.num_queries:
            raise ValueError(f"pred_logits has {q} queries; this Postprocessor was built for {self.num_queries}")
        if not 1 <= f <= self.max_frames:
            raise ValueError(f"batch of {f} frames; this Postprocessor takes 1 to {self.max_frames} (max_frames)")
        _expect_shape("pred_boxes", boxes, (f, q, 4))
        _expect_shape("pred_masks", masks, (f, q) + self.mask_size)
        if presence is not None and presence.shape not in ((f,), (f, 1)):
            raise ValueError(f"presence_logits must be [F, 1] or [F] with F={f}, got shape {presence.shape}")
        return refs


def _expect_shape(name: str, ref: ArrayRef, shape: tuple) -> None:
    if ref.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(ref.shape)}")


def _frame_sizes(frame_sizes: Any, num_frames: int, max_size: FrameSize) -> list:
    """A (H, W) pair for every frame; a single pair applies to all frames."""
    if (isinstance(frame_sizes, (tuple, list)) and len(frame_sizes) == 2
            and all(isinstance(v, (int, np.integer)) for v in frame_sizes)):
        frame_sizes = [tuple(frame_sizes)] * num_frames
    try:
        sizes = [size_pair(f"frame_sizes[{i}]", s) for i, s in enumerate(frame_sizes)]
    except TypeError:
        raise ValueError(f"frame_sizes must be a (H, W) pair or one per frame, got {frame_sizes!r}") from None
    if len(sizes) != num_frames:
        raise ValueError(f"frame_sizes has {len(sizes)} entries for a batch of {num_frames} frames")
    for i, (h, w) in enumerate(sizes):
        if h > max_size[0] or w > max_size[1]:
            raise ValueError(f"frame_sizes[{i}] = ({h}, {w}) exceeds max_frame_size {max_size}")
    return sizes
