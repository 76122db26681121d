"""The synthetic scene as a video (or one frame as an image) to feed the example configs:

    python examples/make_video.py scene.avi          # 50 frames, 320x240, 2 colour classes x 2 objects
    python examples/make_video.py frame.png          # its first frame, for segpost serve's client

The video is lossless (FFV1 in AVI, written by OpenCV): the synthetic engines tell instances
apart by their exact shades, which a lossy codec blurs into extra detections.
"""
from __future__ import annotations

import argparse
import sys

from segpost.synthetic.scene import Scene


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", help="a .avi video, or a .png/.jpg image (the first frame)")
    parser.add_argument("--frames", type=int, default=50, help="frames in the video")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=5, help="the scene's random seed")
    args = parser.parse_args(argv)
    try:
        import cv2
    except ImportError:
        print("make_video.py: needs OpenCV: pip install \"segpost[video]\"", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))
    scene = Scene([(height, width)], num_classes=2, seed=args.seed)
    if not args.out.endswith(".avi"):
        if not cv2.imwrite(args.out, scene.render(0)[0][0]):
            print(f"make_video.py: OpenCV cannot write {args.out}: use .avi, .png or .jpg", file=sys.stderr)
            return 2
        return 0
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"FFV1"), 10, (width, height))
    if not writer.isOpened():
        print(f"make_video.py: OpenCV cannot write {args.out}", file=sys.stderr)
        return 2
    for index in range(args.frames):
        writer.write(scene.render(index)[0][0])
    writer.release()
    print(f"{args.out}: {args.frames} frames, {width}x{height}, 2 classes (red, green) x 2 objects", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
