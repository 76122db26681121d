"""The real things a history runs on: lossless test videos, and the processes of a run."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

FRAME_SIZE = (48, 64)


def make_video(path: Path, frames: int, seed: int) -> str:
    """A lossless (FFV1) video of the synthetic scene: every frame decodes exactly, so the
    synthetic decoder sees the scene's shades only. Each object hides for 10 frames of every 30
    (at its own phase): with the tracker's max_age of 4 (driver.TRACK), tracks end and new ids start all
    through the file, and a new id goes unconfirmed for its first frames."""
    import cv2

    from segpost.synthetic.scene import Scene

    if not path.exists():
        scene = Scene([FRAME_SIZE], num_classes=2, seed=seed)
        background = scene._backgrounds[0]   # what a hidden object's pixels show instead
        tmp = path.with_suffix(".tmp.avi")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"FFV1"), 10, FRAME_SIZE[::-1])
        for r in range(frames):
            images, truths = scene.render(r)
            image, labels = images[0], truths[0].labels
            for k in range(len(truths[0].objects)):
                if ((r + 7 * k) // 10) % 3 == 2:
                    image[labels == k + 1] = background[labels == k + 1]
            writer.write(image)
        writer.release()
        os.replace(tmp, path)
    return str(path)


def session(sid: int) -> List[int]:
    """The live processes of a run: those of its session (Ray gives each actor its own process
    group, but they stay in the driver's session, as in a unit's control group) and of the
    sessions its processes started (segpost fleet and serve run in a session of their own behind
    the forwarding process that was launched)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    table[int(name)] = (int(fields[1]), int(fields[3]))   # ppid, session
            except (OSError, IndexError, ValueError):
                pass
    sessions, grew = {sid}, True
    while grew:
        members = {pid for pid, (_, s) in table.items() if s in sessions}
        led = {pid for pid, (ppid, s) in table.items() if ppid in members and s == pid} - sessions
        sessions |= led
        grew = bool(led)
    return sorted(pid for pid, (_, s) in table.items() if s in sessions)


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def actors(sid: int, cls: str) -> List[int]:
    return [pid for pid in session(sid) if title(pid).startswith(f"ray::{cls}")]
