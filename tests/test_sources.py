"""Camera sources: files in order, live RTSP streams from a real server (GStreamer) stopped and
restarted, stalls, backoff, credentials kept out of every message."""
import os
import shutil
import threading
import time

import numpy as np
import pytest

from brokers import RtspServer, make_h264, rtsp_server_python
from segpost.io.secrets import Redactor, expand_env, redact
from segpost.io.sources import CameraSource, Decoder, OpenCVDecoder, decoder_factory

cv2 = pytest.importorskip("cv2")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg program makes the test videos "
                                  "(apt-get install ffmpeg; .ci/run does)")
needs_rtsp = pytest.mark.skipif(rtsp_server_python() is None, reason="no GStreamer RTSP server (apt-get install "
                                "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good/bad; .ci/run does)")


def numbered_frames(count, h=96, w=128, seed=0):
    """Frames whose frame number can be read back after lossy coding: a grey level per number."""
    frames = []
    for i in range(count):
        frame = np.full((h, w, 3), 40 + (i * 7) % 180, np.uint8)
        cv2.putText(frame, str(i), (4, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    folder = tmp_path_factory.mktemp("videos")
    return {"short": make_h264(str(folder / "short.mp4"), numbered_frames(12)),
            "long": make_h264(str(folder / "long.mp4"), numbered_frames(600), fps=25)}


def drain(source, seconds, until=None):
    """Reads for up to `seconds` (or until until(frames, events)), returns (frames, events)."""
    frames, events = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = source.read()
        events.extend(source.drain_events())
        if frame is not None:
            frames.append(frame)
        elif source.finished:
            break
        else:
            time.sleep(0.005)
        if until is not None and until(frames, events):
            break
    return frames, events


@needs_ffmpeg
def test_file_source_reads_every_frame_in_order(videos):
    source = CameraSource(videos["short"], OpenCVDecoder)
    frames, events = drain(source, 10)
    assert [f.index for f in frames] == list(range(12))
    assert [round(f.pts, 3) for f in frames] == [round(i / 10, 3) for i in range(12)]   # 10 frames/s
    assert all(f.image.shape == (96, 128, 3) for f in frames)
    assert source.finished and [e.kind for e in events] == ["finished"]
    assert source.stats["decoded"] == source.stats["delivered"] == 12 and source.stats["dropped"] == 0


@needs_ffmpeg
def test_a_files_end_is_reported_after_its_last_frame_was_read(videos):
    """The decoding thread reaches the end of a file ahead of the reader; the "finished" event
    waits until the reader has had every frame, so it follows the last frame's record."""
    source = CameraSource(videos["short"], OpenCVDecoder, prefetch=20)
    deadline = time.monotonic() + 10
    while source.stats["decoded"] < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)   # the thread has met the end of the file
    for index in range(12):
        assert source.read().index == index
        assert source.drain_events() == []
    assert source.read() is None and source.finished
    assert [(e.kind, e.details) for e in source.drain_events()] == [("finished", {"frames": 12})]
    source.close()


def test_missing_file_is_an_error_event(tmp_path):
    source = CameraSource(str(tmp_path / "missing.mp4"), OpenCVDecoder)
    assert source.finished and source.read() is None
    events = source.drain_events()
    assert [e.kind for e in events] == ["error"] and "cannot open" in events[0].message
    assert source.stats["errors"] == 1


@needs_ffmpeg
@needs_rtsp
def test_live_stream_reconnects_after_the_server_restarts_and_the_other_camera_keeps_going(videos):
    """Two RTSP servers (two cameras); one is stopped mid-run and started again."""
    first, second = RtspServer({"cam": videos["long"]}).start(), RtspServer({"cam": videos["long"]}).start()
    password_url = first.url("cam").replace("rtsp://", "rtsp://admin:s3cret@")
    redactor = Redactor()
    cam0 = CameraSource(password_url, OpenCVDecoder, redactor=redactor, stall_seconds=4.0, backoff=(0.2, 1.0))
    cam1 = CameraSource(second.url("cam"), OpenCVDecoder, redactor=redactor, stall_seconds=4.0, backoff=(0.2, 1.0))
    try:
        frames0, _ = drain(cam0, 20, until=lambda f, e: len(f) >= 10)
        assert len(frames0) >= 10, "no frames from the RTSP stream"
        first.stop()
        lost0, events0 = drain(cam0, 15, until=lambda f, e: any(x.kind == "disconnected" for x in e))
        frames1, _ = drain(cam1, 3)
        assert any(e.kind == "disconnected" for e in events0), [e.message for e in events0]
        assert len(frames1) >= 20, "the second camera stopped while the first was away"
        first.start()
        back0, events0b = drain(cam0, 30, until=lambda f, e: any(x.kind == "reconnected" for x in e) and len(f) >= 5)
        reconnected = [e for e in events0b if e.kind == "reconnected"]
        assert reconnected and reconnected[0].details["gap_seconds"] > 0
        assert len(back0) >= 5, "no frames after the reconnection"
        indices = [f.index for f in frames0 + lost0 + back0]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)   # frame indices go on
        assert cam0.stats["reconnects"] >= 1
        everything = " ".join(e.message for e in events0 + events0b) + cam0.shown_url + str(cam0.stats)
        assert "s3cret" not in everything and "admin:***@" in cam0.shown_url
    finally:
        cam0.close()
        cam1.close()
        first.stop()
        second.stop()


class BlockingDecoder(Decoder):
    """A decoder whose stream stalls: frames for a while, then a read that never returns."""

    def __init__(self, frames_before_stall, opened):
        self.left, self.release = frames_before_stall, threading.Event()
        opened.append(self)

    def read(self):
        if self.left == 0:
            self.release.wait()   # a stalled network read
            return None
        self.left -= 1
        time.sleep(0.01)
        return None, np.zeros((4, 4, 3), np.uint8)

    def keep(self, image, slot):
        return image


def test_a_stalled_stream_is_abandoned_and_reopened():
    opened = []
    source = CameraSource("rtsp://cam/stalls", lambda url: BlockingDecoder(5, opened), stall_seconds=0.5,
                          backoff=(0.05, 0.2))
    try:
        frames, events = drain(source, 10, until=lambda f, e: len(opened) >= 2 and len(f) >= 8)
        kinds = [e.kind for e in events]
        assert "disconnected" in kinds and "reconnected" in kinds, kinds
        stall = next(e for e in events if e.kind == "disconnected")
        assert stall.details["reason"] == "stalled" and "no frame for 0.5 s" in stall.message
        assert len(opened) >= 2 and len(frames) >= 8
    finally:
        source.close()
        for decoder in opened:
            decoder.release.set()


def test_a_camera_that_keeps_failing_is_retried_with_backoff_not_in_a_hot_loop():
    attempts = []

    def refuse(url):
        attempts.append(time.monotonic())
        raise ConnectionRefusedError(f"connection refused: {url}")

    source = CameraSource("rtsp://user:pa55word@10.0.0.9/stream", refuse, backoff=(0.05, 0.4))
    deadline = time.monotonic() + 30   # generous: a loaded machine runs late, never early
    while len(attempts) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    source.close()
    gaps = np.diff(attempts)
    assert len(attempts) >= 6, len(attempts)
    # Never sooner than the backoff (0.05, 0.1, 0.2, 0.4, 0.4 s): no hot loop, delays that grow.
    assert all(gap >= 0.9 * delay for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.4, 0.4])), gaps
    events = source.drain_events()
    assert len(attempts) - 1 <= len(events) <= len(attempts) and all(e.kind == "error" for e in events)
    assert all("pa55word" not in e.message and "user:***@" in e.message for e in events)


def test_dropped_frames_are_counted_when_rounds_are_slower_than_the_stream():
    class Steady(Decoder):
        def read(self):
            time.sleep(0.005)
            return None, np.zeros((2, 2, 3), np.uint8)

        def keep(self, image, slot):
            return image

    source = CameraSource("rtsp://cam/steady", lambda url: Steady())
    try:
        time.sleep(0.5)
        first = source.read()
        time.sleep(0.3)
        second = source.read()
        assert first is not None and second is not None and second.index > first.index + 5
        assert source.stats["dropped"] >= second.index - 2
    finally:
        source.close()


def test_redaction_and_environment_variables(monkeypatch):
    assert redact("rtsp://admin:hunter2@10.1.2.3:554/live?x=1") == "rtsp://admin:***@10.1.2.3:554/live?x=1"
    assert redact("open rtsp://a:b@h/x and http://c:d@e/f failed") == "open rtsp://a:***@h/x and http://c:***@e/f failed"
    assert redact("rtsp://10.1.2.3/live") == "rtsp://10.1.2.3/live"
    redactor = Redactor()
    redactor.register("rtsp://cam:p%40ss@10.1.2.3/live")
    assert redactor("error 401 for user cam with password p@ss and p%40ss") == \
        "error 401 for user cam with password *** and ***"
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    assert expand_env({"source": "rtsp://admin:${CAM_PASSWORD}@h/x", "n": [1, "${CAM_PASSWORD}"]}) == \
        {"source": "rtsp://admin:hunter2@h/x", "n": [1, "hunter2"]}
    with pytest.raises(ValueError, match="MISSING_VAR is not set"):
        expand_env({"a": "${MISSING_VAR}"})


def test_decoder_choice():
    open_decoder, why = decoder_factory("cpu")
    assert "OpenCV" in why
    with pytest.raises(ValueError, match="decode must be"):
        decoder_factory("fpga")
    try:
        import PyNvVideoCodec  # noqa: F401
        has_nvdec = True
    except Exception:
        has_nvdec = False
    if not has_nvdec:
        _, why = decoder_factory("auto")
        assert "CPU decoding (OpenCV)" in why and "segpost[nvdec]" in why
        with pytest.raises(ValueError, match="--decode gpu"):
            decoder_factory("gpu")


@needs_ffmpeg
def test_env_free_paths_are_untouched(videos):
    assert expand_env(videos["short"]) == videos["short"] and os.path.exists(videos["short"])


@needs_ffmpeg
def test_auto_falls_back_to_opencv_for_a_camera_nvdec_cannot_decode(videos, monkeypatch):
    """--decode auto on a machine with PyNvVideoCodec, for a camera whose codec the GPU does not
    decode: that camera gets OpenCV, and its description says why. (No GPU here: NVDEC's import
    and its refusal are stood in for.)"""
    from segpost.io import nvdec

    def refuse(url, gpu=0):
        raise nvdec.NvdecUnavailable("this GPU does not decode MJPEG")

    monkeypatch.setattr(nvdec, "import_nvdec", lambda: None)
    monkeypatch.setattr(nvdec, "NvdecDecoder", refuse)
    open_decoder, why = decoder_factory("auto")
    assert "NVDEC (GPU) where the GPU decodes" in why
    decoder = open_decoder(videos["short"])
    try:
        assert isinstance(decoder, OpenCVDecoder)
        assert decoder.describe() == "OpenCV (CPU), because this GPU does not decode MJPEG"
    finally:
        decoder.close()
