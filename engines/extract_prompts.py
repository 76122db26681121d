#!/usr/bin/env python3
"""Class names (text prompts) -> one prompt file per class: features [32, D] float32 and mask
[32] bool from SAM3's text encoder, padded to the decoder's prompt length. Once per class set.

    python engines/extract_prompts.py --weights facebook/sam3 --out prompts/ person hand counter blow_gun
"""
import argparse
import sys

from segpost.engines.sam3_onnx import add_model_arguments, load_model, write_prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("classes", nargs="+", help="class names, as text prompts")
    args = parser.parse_args()
    for name, path in write_prompts(load_model(args), args.classes, args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
