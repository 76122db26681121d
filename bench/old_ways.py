"""The users' earlier post-processing paths, rewritten from ../shared/docs/background.md, and
PyTorch on the GPU the way transformers' Sam3 post-processing does it. Each returns, per frame,
(boxes [N,4] float32 pixels, scores [N], masks [N,H,W] bool) on the host."""
from __future__ import annotations

import cv2
import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cpu_keep(logits_h, presence_h, threshold):
    scores = _sigmoid(logits_h) * _sigmoid(presence_h.reshape(-1, 1))
    return scores, [np.nonzero(s > threshold)[0] for s in scores]


def _scale_boxes(boxes, h, w):
    scale = np.array([w, h, w, h], np.float32)
    return np.clip(boxes * scale, 0, scale)


class V2:
    """Bulk copy of all masks of every frame with detections, numpy scoring, cv2.resize per mask."""

    def __init__(self, cp, out):
        self.cp = cp
        f, q, mh, mw = out.masks.shape
        self.frame_masks = cp.cuda.alloc_pinned_memory(q * mh * mw * out.masks.dtype.itemsize)

    def __call__(self, out):
        logits, presence, boxes = out.logits.get(), out.presence.get(), out.boxes.get()
        scores, keeps = _cpu_keep(logits, presence, out.threshold)
        results = []
        for f, keep in enumerate(keeps):
            h, w = out.frame_sizes[f]
            masks = []
            if len(keep):
                host = np.frombuffer(self.frame_masks, out.masks.dtype, out.masks[f].size).reshape(out.masks.shape[1:])
                out.masks[f].get(out=host)
                masks = [cv2.resize(host[q].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0 for q in keep]
            results.append((_scale_boxes(boxes[f, keep], h, w), scores[f, keep], masks))
        return results


class V3:
    """Copy logits/boxes/presence, keep on the CPU, async copy of kept masks only, one sync,
    cv2.resize per mask."""

    def __init__(self, cp, out, capacity):
        self.cp = cp
        f, q, mh, mw = out.masks.shape
        self.mask_bytes = mh * mw * out.masks.dtype.itemsize
        self.kept_masks = cp.cuda.alloc_pinned_memory(max(capacity, 1) * self.mask_bytes)
        self.stream = cp.cuda.Stream(non_blocking=True)

    def __call__(self, out):
        cp = self.cp
        logits, presence, boxes = out.logits.get(), out.presence.get(), out.boxes.get()
        scores, keeps = _cpu_keep(logits, presence, out.threshold)
        f, q, mh, mw = out.masks.shape
        slot = 0
        for frame, keep in enumerate(keeps):
            for query in keep:
                src = out.masks[frame, query]
                cp.cuda.runtime.memcpyAsync(self.kept_masks.ptr + slot * self.mask_bytes, src.data.ptr,
                                            self.mask_bytes, cp.cuda.runtime.memcpyDeviceToHost, self.stream.ptr)
                slot += 1
        self.stream.synchronize()
        host = np.frombuffer(self.kept_masks, out.masks.dtype, slot * mh * mw).reshape(slot, mh, mw)
        results, slot = [], 0
        for frame, keep in enumerate(keeps):
            h, w = out.frame_sizes[frame]
            masks = [cv2.resize(host[slot + i].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0
                     for i in range(len(keep))]
            slot += len(keep)
            results.append((_scale_boxes(boxes[frame, keep], h, w), scores[frame, keep], masks))
        return results


def _resize(F, masks, h, w):
    """F.interpolate refuses empty batches: a frame without detections gets an empty mask stack."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, h, w), dtype=bool)
    return F.interpolate(masks[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0] > 0


class TorchPerFrame:
    """transformers-style: per frame sigmoid, keep, F.interpolate, threshold, .cpu()."""

    def __init__(self, torch, out, to_host=True):
        self.torch = torch
        self.to_host = to_host
        self.t = {k: torch.from_dlpack(getattr(out, k)) for k in ("logits", "presence", "boxes", "masks")}

    def __call__(self, out):
        torch, t = self.torch, self.t
        F = torch.nn.functional
        scores = torch.sigmoid(t["logits"]) * torch.sigmoid(t["presence"])
        results = []
        for f, (h, w) in enumerate(out.frame_sizes):
            keep = scores[f] > out.threshold
            masks = _resize(F, t["masks"][f][keep], h, w)
            scale = torch.tensor([w, h, w, h], device=masks.device, dtype=torch.float32)
            boxes = torch.minimum((t["boxes"][f][keep] * scale).clamp(min=0), scale)
            if self.to_host:
                results.append((boxes.cpu().numpy(), scores[f][keep].cpu().numpy(), masks.cpu().numpy()))
            else:
                results.append((boxes, scores[f][keep], masks))
        if not self.to_host:
            torch.cuda.synchronize()
        return results


class TorchBatched(TorchPerFrame):
    """All frames' kept masks gathered and resized in one call (frames of one size)."""

    def __call__(self, out):
        torch, t = self.torch, self.t
        F = torch.nn.functional
        h, w = out.frame_sizes[0]
        scores = torch.sigmoid(t["logits"]) * torch.sigmoid(t["presence"])
        keep = scores > out.threshold
        masks = _resize(F, t["masks"][keep], h, w)
        scale = torch.tensor([w, h, w, h], device=masks.device, dtype=torch.float32)
        boxes = torch.minimum((t["boxes"][keep] * scale).clamp(min=0), scale)
        if not self.to_host:
            torch.cuda.synchronize()
            return boxes, scores[keep], masks
        masks_h, boxes_h, scores_h = masks.cpu().numpy(), boxes.cpu().numpy(), scores[keep].cpu().numpy()
        counts = keep.sum(dim=1).cpu().numpy()
        splits = np.cumsum(counts)[:-1]
        return list(zip(np.split(boxes_h, splits), np.split(scores_h, splits), np.split(masks_h, splits)))
