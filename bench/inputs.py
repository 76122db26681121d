"""SAM3-decoder-shaped outputs on the GPU with an exact number of kept detections."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EngineOutputs:
    logits: object      # cupy [F, Q]
    presence: object    # cupy [F, 1]
    boxes: object       # cupy [F, Q, 4]
    masks: object       # cupy [F, Q, 288, 288]
    frame_sizes: list
    kept: int
    threshold: float = 0.5


def make_outputs(cp, num_frames: int, kept: int, frame_size: tuple, mask_dtype=np.float32,
                 num_queries: int = 200, mask_size=(288, 288), seed: int = 0) -> EngineOutputs:
    if kept > num_frames * num_queries:
        raise ValueError(f"cannot keep {kept} of {num_frames} x {num_queries} queries")
    rng = np.random.default_rng(seed)
    logits = np.full((num_frames, num_queries), -8.0, np.float32)
    winners = rng.choice(num_frames * num_queries, size=kept, replace=False)
    logits.reshape(-1)[winners] = rng.uniform(2.0, 8.0, kept)
    presence = np.full((num_frames, 1), 6.0, np.float32)
    xy = rng.uniform(0.0, 0.7, (num_frames, num_queries, 2))
    boxes = np.concatenate([xy, xy + 0.25], axis=-1).astype(np.float32)
    masks = _blob_logits(cp, num_frames, num_queries, mask_size, seed).astype(mask_dtype)
    return EngineOutputs(cp.asarray(logits), cp.asarray(presence), cp.asarray(boxes), masks,
                         [tuple(frame_size)] * num_frames, kept)


def _blob_logits(cp, num_frames, num_queries, mask_size, seed):
    """SAM-like mask logits: one soft disc per query plus slight noise (SAM's logits are smooth;
    strong white noise would make every boundary flicker, an adversarial case for RLE)."""
    rng = cp.random.default_rng(seed)
    h, w = mask_size
    yy = cp.linspace(-1, 1, h, dtype=cp.float32)[:, None]
    xx = cp.linspace(-1, 1, w, dtype=cp.float32)[None, :]
    shape = (num_frames, num_queries, 1, 1)
    cy = rng.uniform(-0.6, 0.6, shape, dtype=cp.float32)
    cx = rng.uniform(-0.6, 0.6, shape, dtype=cp.float32)
    r = rng.uniform(0.1, 0.5, shape, dtype=cp.float32)
    logits = 8.0 * (r - cp.sqrt((yy - cy) ** 2 + (xx - cx) ** 2))
    logits += 0.05 * rng.standard_normal(logits.shape, dtype=cp.float32)
    return logits
