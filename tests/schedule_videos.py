"""The on_change tests' clips: FFV1 files (lossless, so the change gate sees exactly the scene) of a
still camera and a moving one, from the synthetic scene."""
import shutil
import subprocess

import pytest

from segpost.synthetic.scene import Scene


def ffv1(path, frames):
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-r",
                    "10", "-i", "-", "-c:v", "ffv1", str(path)], input=b"".join(f.tobytes() for f in frames), check=True)
    return str(path)


def still_and_moving(folder, frames: int, period: int = 0):
    """(still.mkv, moving.mkv) of `frames` frames in `folder`; the moving scene steps 8 units a frame
    (repeating every `period` frames when given)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    scene = Scene([(240, 320)], num_classes=2, seed=5)
    still = ffv1(folder / "still.mkv", [scene.render(0)[0][0]] * frames)
    moving = ffv1(folder / "moving.mkv", [scene.render(8 * (r % period if period else r))[0][0] for r in range(frames)])
    return still, moving
