"""`segpost fleet --ui HOST:PORT`: the fleet's page. Its workers, their state and cameras, from the
status the coordinator publishes (the same dict `segpost fleet status` shows), each camera's
latest frame record from the fleet's output files (its frame index and detections per class), and
each camera's latest frame with that frame's masks, boxes and ids drawn in the browser.

Frames: the page asks once a second, while it is open and shown, and each worker answers for its
cameras (segpost.ui.frame_poll: 1 frame a second per camera, 480 wide, downscaled on the GPU
where the frames are); a worker encodes nothing while nobody asks (a lease of 5 s). The records
cost one read of each output file's tail a second (bounded: at most TAIL_MAX bytes a file) in the
page's own thread. Same guard as `segpost run`'s page: loopback unless keys, the login, TLS.

    GET /             the page (the login form while a key is needed)
    GET /api/fleet    {"status": the fleet status or null, "cameras": {name: latest}, "frames": a note}
    GET /api/frames   {name: {"type": "frame", "camera", "frame_index", "width", "height", "jpeg", "record"}}
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .server import STATIC, PageServer, _with_headers, api_refused, page_routes

TAIL_START = 64 * 1024
FRAMES_EVERY_S = 0.5     # the workers are asked at most this often, however many viewers ask
TAIL_MAX = 1024 * 1024
FRAMES_NOTE = ("Frames: each camera's latest, once a second while this page is shown (its workers encode "
               "nothing while nobody watches); the table: each camera's latest record in the output files.")


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
                    files: Callable[[], Dict[str, List[str]]], frames: Callable[[], Dict[str, str]] = dict):
    """`status()`: the coordinator's latest status (None before its first); `files()`: output
    file -> the cameras whose records it holds; `frames()`: camera -> its latest frame message
    (JSON text) from the workers (Fleet.frames)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def fleet(request):
        bad = api_refused(guard, request)
        if bad:
            return bad
        cameras: Dict[str, Any] = {}
        for path, names in files().items():
            cameras.update(latest_records(path, names))
        return JSONResponse({"status": status(), "cameras": cameras, "frames": FRAMES_NOTE})

    answered = {"at": -float("inf"), "body": "{}"}
    asking = threading.Lock()

    def latest_frames(request):   # a plain function: Starlette runs it in a thread (it waits on Ray)
        bad = api_refused(guard, request)
        if bad:
            return bad
        # One question to the workers per FRAMES_EVERY_S, whatever the viewers and their requests:
        # the others get the same answer.
        with asking:
            if time.monotonic() - answered["at"] >= FRAMES_EVERY_S:
                # The workers' texts are JSON already (frame_message): joined, not parsed and dumped again.
                body = ",".join(f"{json.dumps(str(name))}:{text}" for name, text in sorted(frames().items()))
                answered.update(at=time.monotonic(), body="{" + body + "}")
            body = answered["body"]
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    app = Starlette(routes=page_routes(guard, scheme, "fleet.html") + [
        Route("/api/fleet", fleet), Route("/api/frames", latest_frames),
        Mount("/static", StaticFiles(directory=STATIC), name="static")])
    return _with_headers(app)


class FleetPage(PageServer):
    """The fleet's page on `host:port`; `status` and `files` as build_fleet_app takes them."""

    def __init__(self, host: str, port: int, status: Callable[[], Optional[Dict[str, Any]]],
                 files: Callable[[], Dict[str, List[str]]], frames: Callable[[], Dict[str, str]] = dict, *, keys: Sequence[str] = (),
                 allow_unauthenticated: bool = False, certfile: Optional[str] = None, keyfile: Optional[str] = None):
        super().__init__(host, port, keys=keys, allow_unauthenticated=allow_unauthenticated, certfile=certfile,
                         keyfile=keyfile)
        self._serve(build_fleet_app(self.guard, self.scheme, status, files, frames), host, port)
