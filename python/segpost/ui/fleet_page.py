"""`segpost fleet --ui HOST:PORT`: the fleet's page. Its workers, their state and cameras, from the
status the coordinator publishes (the same dict `segpost fleet status` shows), and each camera's
latest frame record from the fleet's output files: its frame index and detections per class.

No frames: a worker's frames stay in its process, on its GPU; showing them here would cost every
worker a copy, a downscale and a JPEG each time a frame is sent, and a stream across Ray for each.
What the page shows costs the fleet nothing while nobody watches and, while someone does, one
read of each output file's tail a second (bounded: at most TAIL_MAX bytes a file) in the page's
own thread. Same guard as `segpost run`'s page: loopback unless keys, the login, TLS.

    GET /             the page (the login form while a key is needed)
    GET /api/fleet    {"status": the fleet status or null, "cameras": {name: latest}, "frames": why none}
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .server import STATIC, PageServer, _with_headers, api_refused, page_routes

TAIL_START = 64 * 1024
TAIL_MAX = 1024 * 1024
NO_FRAMES = ("no frames: they stay in each worker's process; sending them here would cost every worker a "
             "copy and a JPEG a frame. Each camera's latest record is shown: its frame and detections.")


def latest_records(path: str, cameras: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    """The newest frame record of each camera in a JSON Lines file, read from its end (at most
    TAIL_MAX bytes): {camera: {"frame_index", "detections", "classes", "file_age_s"}}. `cameras`:
    the ones wanted (stop reading once each is found; None: whatever the tail holds)."""
    try:
        size, mtime = os.path.getsize(path), os.path.getmtime(path)
    except OSError:
        return {}
    found: Dict[str, Dict[str, Any]] = {}
    want = None if cameras is None else set(cameras)
    span = TAIL_START
    with open(path, "rb") as f:
        while True:
            start = max(0, size - span)
            f.seek(start)
            lines = f.read(size - start).split(b"\n")
            if start > 0:
                lines = lines[1:]            # the first may be cut
            for line in reversed(lines):
                if not line.strip() or b'"detections"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:           # a line being written
                    continue
                camera = str(record.get("camera"))
                if camera in found or (want is not None and camera not in want):
                    continue
                classes: Dict[str, int] = {}
                for d in record.get("detections") or ():
                    classes[str(d.get("class"))] = classes.get(str(d.get("class")), 0) + 1
                found[camera] = {"frame_index": record.get("frame_index"), "detections": sum(classes.values()),
                                 "classes": classes, "file_age_s": round(max(0.0, time.time() - mtime), 1)}
            if start == 0 or span >= TAIL_MAX or (want is not None and want <= set(found)):
                return found
            span *= 4


def build_fleet_app(guard, scheme: str, status: Callable[[], Optional[Dict[str, Any]]],
                    files: Callable[[], Dict[str, List[str]]]):
    """`status()`: the coordinator's latest status (None before its first); `files()`: output
    file -> the cameras whose records it holds."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def fleet(request):
        bad = api_refused(guard, request)
        if bad:
            return bad
        cameras: Dict[str, Any] = {}
        for path, names in files().items():
            cameras.update(latest_records(path, names))
        return JSONResponse({"status": status(), "cameras": cameras, "frames": NO_FRAMES})

    app = Starlette(routes=page_routes(guard, scheme, "fleet.html") + [
        Route("/api/fleet", fleet), Mount("/static", StaticFiles(directory=STATIC), name="static")])
    return _with_headers(app)


class FleetPage(PageServer):
    """The fleet's page on `host:port`; `status` and `files` as build_fleet_app takes them."""

    def __init__(self, host: str, port: int, status: Callable[[], Optional[Dict[str, Any]]],
                 files: Callable[[], Dict[str, List[str]]], *, keys: Sequence[str] = (),
                 allow_unauthenticated: bool = False, certfile: Optional[str] = None, keyfile: Optional[str] = None):
        super().__init__(host, port, keys=keys, allow_unauthenticated=allow_unauthenticated, certfile=certfile,
                         keyfile=keyfile)
        self._serve(build_fleet_app(self.guard, self.scheme, status, files), host, port)
