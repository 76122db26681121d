"""The benchmark videos.

Default: 10 s of 1080p25 H.264 at 6 Mbit/s (yuv420p, GOP 50, B-frames), the synthetic scene with
per-frame sensor noise, through the ffmpeg program (libx264).

    python bench/make_video.py OUT.mp4

``--site``: a site-like clip for the capacity benchmark (issue 32) through OpenCV's VideoWriter
(MPEG-4 part 2, "mp4v": no ffmpeg program needed, OpenCV decodes it): two parked objects, others
that arrive, stand still and leave; nothing moves about 70% of the time; slow light drift and
sensor noise that the change gate must not count. The clip loops seamlessly (the light drift's
period is the clip, nobody is moving at its ends).

    python bench/make_video.py --site OUT.mp4 [--size 1080x1920] [--seconds 20] [--seed 0]
"""
import argparse
import subprocess
import sys
from typing import List, Tuple

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default="camera1080p25.mp4")
    parser.add_argument("--site", action="store_true", help="a site-like clip with static periods (OpenCV mp4v)")
    parser.add_argument("--size", default="1080x1920", help="--site: HxW")
    parser.add_argument("--seconds", type=float, default=20.0, help="--site: clip length")
    parser.add_argument("--seed", type=int, default=0, help="--site: which arrivals, where")
    args = parser.parse_args()
    if args.site:
        h, w = (int(v) for v in args.size.split("x"))
        moving = write_site_clip(args.out, (h, w), seconds=args.seconds, seed=args.seed)
        print(f"{args.out}: {moving:.0%} of the frames have motion")
        return 0
    from segpost.synthetic.scene import Scene

    scene = Scene([(1080, 1920)], num_classes=4, seed=12, noise=4)
    rng = np.random.default_rng(0)
    encoder = subprocess.Popen(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s",
                                "1920x1080", "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M",
                                "-maxrate", "6M", "-bufsize", "12M", "-pix_fmt", "yuv420p", "-g", "50", "-bf", "2", args.out],
                               stdin=subprocess.PIPE)
    for r in range(250):
        frame = scene.render(r)[0][0].astype(np.int16)
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)   # sensor noise: every frame differs
        encoder.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    encoder.stdin.close()
    return encoder.wait()


# Moves of the site clip: (start s, duration s, from (x, y), to (x, y)) in fractions of the frame.
Move = Tuple[float, float, Tuple[float, float], Tuple[float, float]]


def site_script(seconds: float, seed: int, moving_share: float = 0.3, move_s: float = 1.5) -> List[dict]:
    """The clip's actors: {"cls", "shade", "moves": [Move, ...]}; two parked all along, then pairs
    of arrive (move_s) and leave (move_s) moves, as many as make ``moving_share`` of the clip, at
    random non-overlapping times, each visitor standing still between its two moves."""
    rng = np.random.default_rng(seed)
    actors = [{"cls": 0, "shade": 0, "at": (0.2, 0.3), "moves": []},
              {"cls": 1, "shade": 0, "at": (0.75, 0.7), "moves": []}]
    visitors = max(1, int(round(moving_share * seconds / (2 * move_s))))
    # 2 * visitors moves in the clip's [0.5 s, seconds - 0.5 s], in random order without overlap.
    slack = seconds - 1.0 - 2 * visitors * move_s
    if slack < 0:
        raise ValueError(f"a {seconds} s clip cannot hold {visitors} visitors")
    gaps = np.sort(rng.uniform(0, slack, 2 * visitors))
    starts = [0.5 + gaps[i] + i * move_s for i in range(2 * visitors)]
    # Visitor j arrives in slot 2j and leaves in slot 2j + 1: one visitor at a time.
    for j in range(visitors):
        arrive, leave = starts[2 * j], starts[2 * j + 1]
        y = 0.25 + 0.5 * rng.uniform()
        stop = (0.3 + 0.4 * rng.uniform(), y)
        entry, exit_ = (-0.1, y), (1.1, y + 0.1 * rng.uniform(-1, 1))
        actors.append({"cls": 2 + j % 2, "shade": j % 8, "at": None,
                       "moves": [(arrive, move_s, entry, stop), (leave, move_s, stop, exit_)]})
    return actors


def _position(actor: dict, t: float):
    """Where the actor is at t seconds (fractions of the frame), or None when outside the frame."""
    if not actor["moves"]:
        return actor["at"]
    (a0, d0, p0, p1), (l0, d1, q0, q1) = actor["moves"]
    if t < a0 or t >= l0 + d1:
        return None
    if t < a0 + d0:
        f = (t - a0) / d0
        return p0[0] + f * (p1[0] - p0[0]), p0[1] + f * (p1[1] - p0[1])
    if t < l0:
        return p1
    f = (t - l0) / d1
    return q0[0] + f * (q1[0] - q0[0]), q0[1] + f * (q1[1] - q0[1])


def write_site_clip(path: str, size=(1080, 1920), fps: int = 25, seconds: float = 20.0, seed: int = 0,
                    noise: int = 2, drift: float = 3.0, fourcc: str = "mp4v") -> float:
    """Writes the site clip (see the module docstring) with cv2.VideoWriter (mp4v); returns the
    share of frames in which something moves."""
    import cv2

    from segpost.synthetic.scene import BACKGROUND, instance_rgb

    h, w = size
    rng = np.random.default_rng(seed)
    # A textured background (smooth blobs), so that the encoder and the gate see a real scene.
    small = rng.integers(-25, 26, (max(h // 40, 2), max(w // 40, 2), 3)).astype(np.float32)
    background = np.clip(BACKGROUND + cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.int16)
    # Sensor noise: 8 noisy backgrounds, cycled (cheap); the objects are drawn flat on top.
    noisy = [np.clip(background + rng.integers(-noise, noise + 1, (h, w, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    actors = site_script(seconds, seed)
    radius = (max(h // 12, 4), max(h // 8, 6))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cv2.VideoWriter cannot write {path} ({fourcc})")
    frames, moving = int(round(seconds * fps)), 0
    previous = None
    try:
        for k in range(frames):
            t = k / fps
            image = noisy[k % len(noisy)].copy()
            places = []
            for i, actor in enumerate(actors):
                p = _position(actor, t)
                places.append(p)
                if p is None:
                    continue
                centre = (int(p[0] * w), int(p[1] * h))
                colour = tuple(int(v) for v in instance_rgb(actor["cls"], actor["shade"])[::-1])   # BGR
                if actor["cls"] % 2:
                    cv2.rectangle(image, (centre[0] - radius[0], centre[1] - radius[1]),
                                  (centre[0] + radius[0], centre[1] + radius[1]), colour, -1)
                else:
                    cv2.ellipse(image, centre, radius, 0, 0, 360, colour, -1)
            moving += previous is not None and places != previous
            previous = places
            light = int(round(drift * np.sin(2 * np.pi * k / frames)))
            writer.write(cv2.add(image, (light,) * 3) if light >= 0 else cv2.subtract(image, (-light,) * 3))
    finally:
        writer.release()
    return moving / max(frames - 1, 1)


if __name__ == "__main__":
    sys.exit(main())
