"""Real servers on loopback for the tests: a mosquitto MQTT broker and a GStreamer RTSP server.
CI installs both (Debian packages); without them the tests that need them skip and say why."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or (os.path.exists("/usr/sbin/mosquitto") and "/usr/sbin/mosquitto") or None


class Mosquitto:
    """A mosquitto broker on a free loopback port, with persistence so that QoS 1 sessions and
    their queued messages survive a restart (as a production broker is configured)."""

    def __init__(self, folder: str):
        self.binary = mosquitto_path()
        self.port = free_port()
        self.folder = folder
        self.config = os.path.join(folder, "mosquitto.conf")
        with open(self.config, "w") as f:
            # As root, mosquitto would switch to its own user, which cannot write the test's folder.
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {folder}/\nautosave_interval 1\nuser {getpass.getuser()}\n")
        self.process = None

    def start(self) -> "Mosquitto":
        self.process = subprocess.Popen([self.binary, "-c", self.config], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError("mosquitto did not start")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def rtsp_server_python() -> str | None:
    """A Python with GStreamer's RTSP server bindings (python3-gi + gir1.2-gst-rtsp-server-1.0):
    the system one, since the test venv does not see Debian's gi module."""
    for python in ("/usr/bin/python3", sys.executable):
        if os.path.exists(python) and subprocess.run(
                [python, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                               "from gi.repository import GstRtspServer"],
                capture_output=True).returncode == 0:
            return python
    return None


class RtspServer:
    """tests/rtsp_server.py in its own process: serves H.264 files at rtsp://127.0.0.1:PORT/NAME."""

    def __init__(self, files: dict, port: int | None = None):
        self.python = rtsp_server_python()
        self.files, self.port = files, port or free_port()
        self.process = None

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> "RtspServer":
        args = [self.python, os.path.join(HERE, "rtsp_server.py"), "--port", str(self.port)]
        for name, path in self.files.items():
            args += ["--stream", f"{name}={path}"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_for_port(self.port):
            err = self.process.stderr.read().decode() if self.process.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {err[-500:]}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def http_get(url: str):
    """(status, body) of a GET, also for error statuses."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def make_h264(path: str, frames, fps: int = 10) -> str:
    """An H.264 (baseline, yuv420p) MP4 of BGR frames, through the ffmpeg program."""
    h, w = frames[0].shape[:2]
    command = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
               "-r", str(fps), "-i", "-", "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
               "-g", str(fps), "-bf", "0", "-tune", "zerolatency", "-qp", "10", path]
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True)
    return path
