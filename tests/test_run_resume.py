"""``segpost run --resume``: an earlier run of the same --out that was stopped, or SIGKILLed,
continues where its file ends: each (camera, frame) once and in order, track ids never reused,
every track_started with exactly one track_ended, a finished camera not read again."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from segpost.cli import main
from segpost.synthetic.scene import Scene

FRAMES = 40


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    folder = tmp_path_factory.mktemp("resume")
    paths = []
    for camera, count in enumerate((FRAMES, 12)):
        scene = Scene([(120, 160)], num_classes=2, seed=11 + camera)
        frames = [scene.render(r)[0][0] for r in range(count)]
        path = str(folder / f"cam{camera}.mkv")
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "160x120",
                        "-r", "10", "-i", "-", "-c:v", "ffv1", path], input=b"".join(f.tobytes() for f in frames),
                       check=True)
        paths.append(path)
    return paths


def config(tmp_path, busy_ms=0):
    path = tmp_path / "segpost.json"
    path.write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [120, 160],
                                "track": {"min_hits": 2}, "busy_ms": [busy_ms, 0]}))
    return str(path)


def args(tmp_path, videos, out, *extra, busy_ms=0):
    return ["run", "--device", "cpu", "--decode", "cpu", "--config", config(tmp_path, busy_ms), "--out", str(out),
            "--masks", "none", "--resume", *[a for v in videos for a in ("--source", v)], *extra]


def read(out):
    with open(out) as f:
        text = f.read()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def check_invariants(records, frames):
    for camera, count in enumerate(frames):
        mine = [r for r in records if r.get("camera") == camera]
        indices = [r["frame_index"] for r in mine if "detections" in r or r.get("event") == "skipped"]
        assert indices == list(range(count)), f"camera {camera}: frames {indices}"
        started = [r["track_id"] for r in mine if r.get("event") == "track_started"]
        ended = [r["track_id"] for r in mine if r.get("event") == "track_ended"]
        assert len(set(started)) == len(started), f"camera {camera}: a track id started twice: {started}"
        assert sorted(started) == sorted(ended), f"camera {camera}: started {started}, ended {ended}"
        finished = [i for i, r in enumerate(mine) if r.get("event") == "finished"]
        assert len(finished) == 1 and finished[0] == len(mine) - 1, f"camera {camera}: finished at {finished}"
        ids = [d["track_id"] for r in mine if "detections" in r for d in r["detections"] if d["track_id"] >= 0]
        assert ids and set(started) <= set(ids)


def kill_midway(tmp_path, videos, out):
    """A resumable run SIGKILLed once its file holds a few kB (some frames, some tracks open)."""
    process = subprocess.Popen([sys.executable, "-m", "segpost", *args(tmp_path, videos, out, busy_ms=60)],
                               stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 3000):
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def test_a_stopped_run_resumes_where_its_file_ends(tmp_path, videos):
    out = tmp_path / "out.jsonl"
    assert main(args(tmp_path, videos, out, "--max-rounds", "15")) == 0
    first = read(out)
    assert max(r["frame_index"] for r in first if r.get("camera") == 0 and "detections" in r) == 14
    assert main(args(tmp_path, videos, out)) == 0
    records = read(out)
    check_invariants(records, (FRAMES, 12))
    # Ids of the second run continue after the first's: none is handed out twice.
    first_ids = {d["track_id"] for r in first if r.get("camera") == 0 and "detections" in r for d in r["detections"]}
    later = [d["track_id"] for r in records[len(first):] if r.get("camera") == 0 and "detections" in r
             for d in r["detections"] if d["track_id"] >= 0]
    assert later and min(later) > max(first_ids)
    # Once more: every camera finished, nothing is read or written again.
    assert main(args(tmp_path, videos, out)) == 0
    assert read(out) == records


def test_a_killed_run_resumes_with_each_frame_once(tmp_path, videos):
    out = tmp_path / "out.jsonl"
    kill_midway(tmp_path, videos, out)
    with open(out, "ab") as f:
        f.write(b'{"round": 99, "camera": 0, "frame_ind')   # a line torn by the death
    assert main(args(tmp_path, videos, out)) == 0
    check_invariants(read(out), (FRAMES, 12))


def test_resume_needs_one_plain_out_file(tmp_path, videos, capsys):
    assert main(args(tmp_path, videos, "-")) == 2
    assert "--resume continues one --out file" in capsys.readouterr().err


def test_a_full_disk_at_the_first_write_of_a_resumed_run_is_an_error_exit_not_an_abort(tmp_path, videos):
    """The resumed run's first write (the ends of the tracks left open) fails on a full disk: the
    run exits with its error status. Before, its cameras' decoding threads were never closed on
    that path and the interpreter aborted at exit inside OpenCV (status -6)."""
    import resource

    out = tmp_path / "out.jsonl"
    kill_midway(tmp_path, videos, out)
    size = out.stat().st_size + 10      # no room for a whole line

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    codes = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-m", "segpost", *args(tmp_path, videos, out)], preexec_fn=limit,
                              capture_output=True, text=True, timeout=120)
        codes.append(done.returncode)
        assert "File too large" in done.stderr, done.stderr[-2000:]
    assert codes == [2, 2, 2], codes
    with open(out) as f:
        assert f.read().endswith("\n")
