"""The path transformers documents for SAM3, per frame and class: Sam3ImageProcessor on the RGB
frame, Sam3Model on (pixel values, the class's token ids), post_process_instance_segmentation
back to the frame's size. The parity test (tests/test_parity_gpu.py) and the speed comparison
(bench/transformers_path.py) run it beside segpost's pipeline on the same model and frames.

With random weights there is no tokenizer: class names get the fixed token ids Sam3Torch gives
them (Sam3Torch.token_ids), on both sides.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np


def reference_detections(sam3: Any, processor: Any, frames_bgr: Sequence[np.ndarray], names: Sequence[str],
                         threshold: float, mask_threshold: float = 0.5) -> List[Dict[str, Dict[str, Any]]]:
    """Per frame, per class: {"queries", "scores", "boxes", "masks", "pixel_values"} as transformers gives them."""
    import torch

    model, device = sam3.model, sam3.device
    dtype = next(model.parameters()).dtype
    tokens = {name: tuple(t.to(device) for t in sam3.token_ids(name)) for name in names}
    out = []
    with torch.inference_mode():
        for frame in frames_bgr:
            rgb = np.ascontiguousarray(frame[..., ::-1])
            pixel_values = processor(images=rgb, return_tensors="pt")["pixel_values"]
            per_class = {}
            for name in names:
                ids, mask = tokens[name]
                outputs = model(pixel_values=pixel_values.to(device, dtype), input_ids=ids, attention_mask=mask)
                result = processor.post_process_instance_segmentation(
                    outputs, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[frame.shape[:2]])[0]
                scores = outputs.pred_logits.sigmoid() * outputs.presence_logits.sigmoid()
                per_class[name] = {"queries": torch.nonzero(scores[0] > threshold)[:, 0].cpu().numpy(),
                                   "scores": result["scores"].float().cpu().numpy(),
                                   "boxes": result["boxes"].float().cpu().numpy(),
                                   "masks": result["masks"].bool().cpu().numpy(),
                                   "all_scores": scores[0].float().cpu().numpy(), "pixel_values": pixel_values}
            out.append(per_class)
    return out
