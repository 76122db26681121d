"""A real RTSP server on loopback for the tests (GStreamer's gst-rtsp-server, run with the
system Python, which has python3-gi). Each --stream NAME=FILE.mp4 (H.264) is served at
rtsp://127.0.0.1:PORT/NAME in real time; each client gets the file from its start, and the
stream ends with the file.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --stream cam0=a.mp4 --stream cam1=b.mp4
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream", action="append", required=True, metavar="NAME=FILE")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for stream in args.stream:
        name, path = stream.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse config-interval=-1 ! "
                           "rtph264pay name=pay0 pt=96 )")
        factory.set_shared(False)
        mounts.add_factory(f"/{name}", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
