#!/usr/bin/env python3
"""Export SAM3 (transformers' Sam3Model) to vision-encoder.onnx and decoder.onnx, the engine
contract's tensor names, dynamic batch; optionally the class prompt files and an onnx-backend config.

    python engines/export_onnx.py --weights facebook/sam3 --out onnx/ --classes person hand
    python engines/export_onnx.py --random --out onnx/        # full size, random weights
"""
import argparse
import os
import sys

from segpost.engines.pipeline_file import write_pipeline_config
from segpost.engines.sam3_onnx import add_model_arguments, export_onnx, load_model, onnx_tensor_shapes, write_prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--classes", nargs="*", default=[], help="also write these classes' prompt files")
    parser.add_argument("--batch", type=int, default=2, help="batch the graphs are traced at (the axis stays dynamic)")
    args = parser.parse_args()
    sam3 = load_model(args)
    paths = export_onnx(sam3, args.out, batch=args.batch)
    for path in paths:
        shapes = onnx_tensor_shapes(path)
        print(f"{path}: " + ", ".join(f"{n} [{','.join(map(str, s))}]" for n, s in shapes.items()))
    if args.classes:
        prompts = write_prompts(sam3, args.classes, os.path.join(args.out, "prompts"))
        config = write_pipeline_config(os.path.join(args.out, "pipeline-onnx.json"), "onnx", *paths, prompts,
                                       max_cameras=8)
        print(f"prompts: {', '.join(prompts.values())}\nonnxruntime (CPU) config: {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
