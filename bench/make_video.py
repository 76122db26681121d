"""The benchmark video: 10 s of 1080p25 H.264 at 6 Mbit/s (yuv420p, GOP 50, B-frames), the
synthetic scene with per-frame sensor noise, through the ffmpeg program (libx264).

    python bench/make_video.py OUT.mp4
"""
import subprocess
import sys

import numpy as np

from segpost.synthetic.scene import Scene


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "camera1080p25.mp4"
    scene = Scene([(1080, 1920)], num_classes=4, seed=12, noise=4)
    rng = np.random.default_rng(0)
    encoder = subprocess.Popen(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s",
                                "1920x1080", "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M",
                                "-maxrate", "6M", "-bufsize", "12M", "-pix_fmt", "yuv420p", "-g", "50", "-bf", "2", out],
                               stdin=subprocess.PIPE)
    for r in range(250):
        frame = scene.render(r)[0][0].astype(np.int16)
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)   # sensor noise: every frame differs
        encoder.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    encoder.stdin.close()
    return encoder.wait()


if __name__ == "__main__":
    sys.exit(main())
