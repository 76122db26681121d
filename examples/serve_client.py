"""Send images to a running `segpost serve` and print what it found.

    python examples/serve_client.py --http http://gpu-box:8000/segment shot1.jpg shot2.png
    python examples/serve_client.py --grpc gpu-box:9000 --class person --class hand --save-masks masks/ shot1.jpg
    SEGPOST_API_KEY=... python examples/serve_client.py --http https://gpu-box:8000/segment --ca-file ca.pem shot1.jpg

Each image goes as its encoded bytes (the server decodes it); all images of one call share the
server's rounds with other clients' frames.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from segpost import decode_coco_rle
from segpost.serve.client import SegpostClient, SegpostError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="JPEG or PNG files")
    parser.add_argument("--http", help="the server's HTTP endpoint, http://HOST:8000/segment")
    parser.add_argument("--grpc", help="the server's gRPC target, HOST:9000")
    parser.add_argument("--class", dest="classes", action="append", default=[],
                        help="only this class (repeat; default: every class the server has)")
    parser.add_argument("--save-masks", metavar="DIR", help="write each mask as a .npy of bools")
    parser.add_argument("--ca-file", help="CA certificate(s) that signed the server's (HTTPS, or gRPC with --grpc-tls)")
    parser.add_argument("--grpc-tls", action="store_true", help="the gRPC target speaks TLS (a proxy in front)")
    args = parser.parse_args(argv)
    if not args.http and not args.grpc:
        parser.error("give --http or --grpc")
    frames = []
    for path in args.images:
        with open(path, "rb") as f:
            frames.append(f.read())
    # The key comes from the environment: a command line is visible to every user of the machine.
    client = SegpostClient(http=args.http, grpc=args.grpc, api_key=os.environ.get("SEGPOST_API_KEY"),
                           ca_file=args.ca_file, grpc_tls=args.grpc_tls)
    try:
        answers = client.segment(frames, classes=args.classes)
    except SegpostError as exc:
        print(f"the server refused: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for path, answer in zip(args.images, answers):
        print(f"{path}: {answer['width']}x{answer['height']}, {len(answer['detections'])} detections")
        for k, d in enumerate(answer["detections"]):
            mask = decode_coco_rle(d["mask"])
            box = ", ".join(f"{v:.1f}" for v in d["box"])
            print(f"  {d['class']:<12} score {d['score']:.3f}  box [{box}]  mask {int(mask.sum())} px")
            if args.save_masks:
                os.makedirs(args.save_masks, exist_ok=True)
                stem = os.path.splitext(os.path.basename(path))[0]
                np.save(os.path.join(args.save_masks, f"{stem}-{k}-{d['class']}.npy"), mask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
