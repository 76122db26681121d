"""segpost against the path transformers documents for SAM3, end to end, in one run: the same
random-weight fp16 Sam3Model, the same video frames, 8 cameras x 4 classes.

    python bench/transformers_path.py --video 1080p25.mp4 --rounds 5

- transformers: OpenCV decodes each camera's next frame; per frame and class, Sam3ImageProcessor,
  Sam3Model (pixel values + the class's tokens), post_process_instance_segmentation to the frame.
- segpost: the cameras' sources (NVDEC when it decodes the file, else OpenCV), then one
  MultiCameraPipeline round (GPU preprocessing, the encoder once at batch 8, every class in one
  decoder call, GPU postprocessing to COCO RLE).
Both keep the detections above the same score threshold (chosen so random weights keep about
ten per frame and class). Prints frames/s and round p50 side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from transformers_path import reference_detections  # noqa: E402

NAMES = ["person", "hand", "counter", "blow gun"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", required=True)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    import cv2
    import torch
    from transformers import Sam3ImageProcessor

    import segpost
    from segpost.engines.torch_sam3 import Sam3Torch
    from segpost.io.sources import CameraSource, decoder_factory
    from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig

    sam3 = Sam3Torch(None, dtype=np.float16, device="cuda", seed=0)
    processor = Sam3ImageProcessor()
    first = cv2.VideoCapture(args.video).read()[1]
    probe = reference_detections(sam3, processor, [first], NAMES, threshold=0.999)
    threshold = float(np.median([np.sort(c["all_scores"])[-10] for c in probe[0].values()]))

    # transformers: OpenCV decode + the documented calls, per frame and class.
    captures = [cv2.VideoCapture(args.video) for _ in range(args.cameras)]
    reference_ms, kept = [], 0
    for r in range(args.rounds + 1):
        started = time.perf_counter()
        frames = [c.read()[1] for c in captures]
        out = reference_detections(sam3, processor, frames, NAMES, threshold=threshold)
        torch.cuda.synchronize()
        if r:   # the first round warms up
            reference_ms.append((time.perf_counter() - started) * 1e3)
            kept += sum(len(c["queries"]) for f in out for c in f.values())

    # segpost: its sources and one pipeline round per set of frames.
    open_decoder, why = decoder_factory("auto")
    sources = [CameraSource(args.video, open_decoder, live=False) for _ in range(args.cameras)]
    prompts = [ClassPrompt(*p) for p in sam3.text_prompts(NAMES)]
    pipeline = MultiCameraPipeline(sam3.vision_encoder, sam3.decoder, PipelineConfig(
        prompts, max_cameras=args.cameras, max_frame_size=(1080, 1920), score_threshold=threshold,
        mask_mode=segpost.MaskMode.PROBABILITY, output=segpost.OutputKind.RLE, capacity=800))
    segpost_ms, segpost_kept = [], 0
    for r in range(args.rounds + 3):
        started = time.perf_counter()
        result = pipeline.process([s.read().image for s in sources])
        if r >= 3:
            segpost_ms.append((time.perf_counter() - started) * 1e3)
            segpost_kept += result.num_detections
    row = {"cameras": args.cameras, "classes": len(NAMES), "threshold": threshold,
           "transformers_round_ms_p50": float(np.median(reference_ms)),
           "transformers_fps": args.cameras * 1e3 / float(np.mean(reference_ms)),
           "transformers_kept_per_round": kept / args.rounds,
           "segpost_round_ms_p50": float(np.median(segpost_ms)), "segpost_fps": args.cameras * 1e3 / float(np.mean(segpost_ms)),
           "segpost_kept_per_round": segpost_kept / args.rounds, "segpost_decoding": sources[0].decoder_description,
           "classes_per_call": pipeline.classes_per_call}
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)
    print("\n| path | round p50 (ms) | frames/s | detections kept a round |\n|---|---|---|---|")
    print(f"| transformers (OpenCV, Sam3ImageProcessor, Sam3Model per frame and class, post_process) | "
          f"{row['transformers_round_ms_p50']:.0f} | {row['transformers_fps']:.1f} | {row['transformers_kept_per_round']:.0f} |")
    print(f"| segpost ({row['segpost_decoding']}, one round, {pipeline.classes_per_call} classes per decoder call) | "
          f"{row['segpost_round_ms_p50']:.0f} | {row['segpost_fps']:.1f} | {row['segpost_kept_per_round']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
