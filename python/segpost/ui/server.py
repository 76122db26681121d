"""The live page's HTTP and WebSocket server: Starlette under uvicorn, in a thread of its own.

    GET  /             the page (the login form, status 401, while a key is needed)
    POST /login        key=...: a session cookie, then back to /
    POST /logout       ends the session
    GET  /api/state    cameras, health, encoder counters (JSON; the Bearer header works too)
    GET  /api/zones    each camera's zones and lines, whether they may be edited, their occupancy
    POST /api/zones    {"camera": id, "zones": [...]}: the editor's save (same origin, JSON, 64 KiB)
    WS   /ws           the page's feed: hello, frames (JPEG + record), events, health each second
    GET  /static/...   the page's modules (no secret in them)

The client of /ws sends {"watch": [camera ids]} to choose what it is sent (the grid: every
camera; the large view: one). Messages from the page are at most 4 KiB, the login body 1 KiB.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Dict, Optional, Sequence, Tuple
from urllib.parse import parse_qs

from .guard import SESSION_COOKIE, SESSION_SECONDS, Guard
from .hub import LiveHub

STATIC = os.path.join(os.path.dirname(__file__), "static")
MAX_VIEWERS = 16
MAX_WS_MESSAGE = 4096
MAX_LOGIN_BODY = 1024
MAX_ZONES_BODY = 64 * 1024
HEALTH_SECONDS = 1.0
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",   # no-referrer would make form POSTs send "Origin: null"
    "cache-control": "no-store",
}


def import_server() -> Tuple[Any, Any]:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ValueError("the live page needs Starlette and uvicorn (pip install segpost[ui])") from exc
    try:
        import cv2  # noqa: F401   (the frames' JPEGs)
    except ImportError as exc:
        raise ValueError("the live page encodes its frames with OpenCV (pip install segpost[video])") from exc
    return starlette, uvicorn


class WsViewer:
    """One WebSocket's queue: the latest frame per camera (older ones are dropped), the events in
    order (bounded), woken from the hub's threads through the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.watching = loop, set()
        self.frames: Dict[Any, str] = {}
        self.events: deque = deque(maxlen=1000)
        self.wake = asyncio.Event()

    def deliver(self, kind: str, text: str, camera: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self._put, kind, text, camera)
        except RuntimeError:   # the loop closed: the server is stopping
            pass

    def _put(self, kind: str, text: str, camera: Any) -> None:
        if kind == "frame":
            self.frames[camera] = text
        else:
            self.events.append(text)
        self.wake.set()


def _page(name: str, message: str = "") -> str:
    with open(os.path.join(STATIC, name)) as f:
        return f.read().replace("<!--message-->", message)


def page_routes(guard: Guard, scheme: str, page: str) -> list:
    """/ (the page `page` of static/, or the login form while a key is needed), /login, /logout:
    the same for `segpost run`'s page and `segpost fleet`'s."""
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    def refused(request) -> Optional[Any]:
        return host_refused(guard, request)

    async def index(request):
        bad = refused(request)
        if bad:
            return bad
        if not guard.allowed(request.headers, request.cookies):
            return HTMLResponse(_page("login.html"), 401)
        return HTMLResponse(_page(page))

    async def login_form(request):
        return refused(request) or HTMLResponse(_page("login.html"))

    async def login(request):
        bad = refused(request)
        if bad:
            return bad
        if not guard.same_origin(request.headers, scheme):
            return PlainTextResponse("segpost: cross-origin request refused\n", 403)
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_LOGIN_BODY:
            return PlainTextResponse(f"segpost: the login body must declare at most {MAX_LOGIN_BODY} bytes\n", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                return PlainTextResponse("segpost: the login body is too long\n", 413)
        key = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4).get("key", [""])[0]
        if not guard.needs_key:
            return RedirectResponse("/", 303)
        if not guard.key_ok(key):
            return HTMLResponse(_page("login.html", "<p class=error>That key is not valid.</p>"), 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(SESSION_COOKIE, guard.new_session(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=scheme == "https", path="/")
        return response

    async def logout(request):
        bad = refused(request)
        if bad:
            return bad
        if not guard.same_origin(request.headers, scheme):
            return PlainTextResponse("segpost: cross-origin request refused\n", 403)
        guard.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [Route("/", index), Route("/login", login_form, methods=["GET"]), Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])]


def host_refused(guard: Guard, request) -> Optional[Any]:
    from starlette.responses import PlainTextResponse

    if not guard.host_ok(request.headers):
        return PlainTextResponse("segpost: this page answers only to a loopback host name\n", 421)
    return None


def unauthorised():
    from starlette.responses import JSONResponse

    return JSONResponse({"error": "a valid key is required (Authorization: Bearer KEY, or log in)"}, 401,
                        headers={"www-authenticate": "Bearer"})


def api_refused(guard: Guard, request) -> Optional[Any]:
    """The answer to an API request from a foreign host name or without a valid key; None: serve it."""
    bad = host_refused(guard, request)
    if bad is None and not guard.allowed(request.headers, request.cookies):
        bad = unauthorised()
    return bad


def build_app(hub: LiveHub, guard: Guard, scheme: str):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    async def state(request):
        bad = api_refused(guard, request)
        if bad:
            return bad
        # This handler runs on the server's event-loop thread: its CPU time is the server's.
        return JSONResponse({"cameras": [{"id": c, "source": s} for c, s in hub.cameras], "health": hub.health(),
                             "ui": dict(hub.stats(), server_cpu_s=round(time.thread_time(), 4))})

    async def zones(request):
        bad = api_refused(guard, request)
        if bad:
            return bad
        if request.method == "GET":
            return JSONResponse(hub.zones_message())
        # A change: from this page only (Origin, and Fetch Metadata where the browser sends it).
        site = request.headers.get("sec-fetch-site")
        if not guard.same_origin(request.headers, scheme) or site not in (None, "same-origin"):
            return JSONResponse({"error": "cross-origin request refused"}, 403)
        if hub.zones_file is None:
            return JSONResponse({"error": "this run has no zones file to save to (start it with --zones FILE)"}, 409)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return JSONResponse({"error": "the body must be application/json"}, 415)
        body = await read_body(request, MAX_ZONES_BODY)
        if body is None:
            return JSONResponse({"error": f"the body must declare and hold at most {MAX_ZONES_BODY} bytes"}, 413)
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):   # UnicodeDecodeError included; RecursionError: nested too deep
            return JSONResponse({"error": "the body is not JSON"}, 400)
        if not isinstance(message, dict) or set(message) != {"camera", "zones"}:
            return JSONResponse({"error": "the body must be {\"camera\": ID, \"zones\": [...]}"}, 400)
        try:
            value = hub.zones_file.save_camera(message["camera"], message["zones"])
        except ValueError as exc:   # the run's own validation: one line naming the camera and zone
            return JSONResponse({"error": str(exc)[:1000]}, 400)
        except OSError as exc:
            return JSONResponse({"error": f"the zones file could not be written: {exc.strerror or exc}"}, 500)
        hub.zones_changed()
        return JSONResponse({"zones": value})

    async def feed(websocket):
        # Browsers send cookies and Origin with the handshake but no Authorization header; other
        # clients may send the header. Refused before accept: uvicorn answers HTTP 403.
        if (not guard.host_ok(websocket.headers) or not guard.allowed(websocket.headers, websocket.cookies)
                or (websocket.headers.get("origin") is not None and not guard.same_origin(websocket.headers, scheme))
                or hub.viewers >= MAX_VIEWERS):
            await websocket.close(code=1008)
            return
        await websocket.accept()
        viewer = WsViewer(asyncio.get_running_loop())
        hub.add_viewer(viewer)
        try:
            await websocket.send_text(json.dumps(hub.hello(), separators=(",", ":"), default=str))
            hub.watch(viewer, [camera for camera, _ in hub.cameras])
            listener = asyncio.ensure_future(_listen(websocket, viewer))
            sender = asyncio.ensure_future(_send(websocket, viewer))
            done, pending = await asyncio.wait({listener, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.exception()   # read, so never logged: a viewer that goes away is no error of the run's
        finally:
            hub.remove_viewer(viewer)

    async def _listen(websocket, viewer: WsViewer) -> None:
        while True:
            text = await websocket.receive_text()
            try:
                message = json.loads(text)
            except ValueError:
                continue
            watch = message.get("watch") if isinstance(message, dict) else None
            if isinstance(watch, list) and len(watch) <= 256:
                hub.watch(viewer, [c for c in watch if isinstance(c, (int, str)) and not isinstance(c, bool)])

    async def _send(websocket, viewer: WsViewer) -> None:
        loop = asyncio.get_running_loop()
        next_health = loop.time() + HEALTH_SECONDS
        while True:
            try:
                await asyncio.wait_for(viewer.wake.wait(), max(0.0, next_health - loop.time()))
            except asyncio.TimeoutError:
                pass
            viewer.wake.clear()
            while viewer.events:
                await websocket.send_text(viewer.events.popleft())
            while viewer.frames:
                camera = next(iter(viewer.frames))
                await websocket.send_text(viewer.frames.pop(camera))
            if loop.time() >= next_health:
                await websocket.send_text(json.dumps({"type": "health", "health": hub.health()},
                                                     separators=(",", ":"), default=str))
                next_health = loop.time() + HEALTH_SECONDS

    app = Starlette(routes=page_routes(guard, scheme, "index.html") + [
        Route("/api/state", state),
        Route("/api/zones", zones, methods=["GET", "POST"]),
        WebSocketRoute("/ws", feed), Mount("/static", StaticFiles(directory=STATIC), name="static")])
    return _with_headers(app)


async def read_body(request, limit: int) -> Optional[bytes]:
    """The body if it declares its length and holds at most `limit` bytes, else None (read no further)."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def _with_headers(app):
    """Every HTTP response gets HEADERS (CSP, nosniff, referrer only to itself, no caching)."""
    extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)
        return await app(scope, receive, send_with_headers)
    return wrapped


class PageServer:
    """A page's guard and uvicorn serving `build(guard, scheme)`'s app on `host:port` (0: a free
    port; see ``url``) in a thread of its own."""

    def __init__(self, host: str, port: int, *, keys: Sequence[str] = (), allow_unauthenticated: bool = False,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None):
        _, self._uvicorn = import_server()
        if (certfile is None) != (keyfile is None):
            raise ValueError("the live page's TLS needs both a certificate file and a key file")
        for path in (certfile, keyfile):
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"the live page's TLS: no such file {path}")
        self.guard = Guard(host, keys, allow_unauthenticated)
        self.scheme = "https" if certfile else "http"
        self._tls = (certfile, keyfile)

    def _serve(self, app, host: str, port: int) -> None:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self._socket = socket.socket(family, socket.SOCK_STREAM)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(128)    # connections wait in the backlog until uvicorn's loop accepts them
        except OSError as exc:
            raise ValueError(f"--ui {host}:{port}: cannot listen ({exc.strerror or exc})") from None
        self.host, self.port = host, self._socket.getsockname()[1]
        config = self._uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                      ws_max_size=MAX_WS_MESSAGE, limit_concurrency=64, timeout_keep_alive=5,
                                      ssl_certfile=self._tls[0], ssl_keyfile=self._tls[1])
        self._server = self._uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="segpost ui server")
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5.0)
        self._socket.close()


class LivePage(PageServer):
    """`segpost run`'s page: the hub (the runner's observer) and the server."""

    def __init__(self, cameras: Sequence[Tuple[Any, Any]], host: str, port: int, *, keys: Sequence[str] = (),
                 allow_unauthenticated: bool = False, certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 fps: float = 4.0, max_width: int = 640, log: Callable[[str], None] = lambda message: None,
                 zones_file: Any = None, zones_shown: Optional[Dict[str, Any]] = None):
        super().__init__(host, port, keys=keys, allow_unauthenticated=allow_unauthenticated, certfile=certfile,
                         keyfile=keyfile)
        self.hub = LiveHub(cameras, fps=fps, max_width=max_width, log=log)
        self.hub.zones_file, self.hub.zones_shown = zones_file, zones_shown or {}
        try:
            self._serve(build_app(self.hub, self.guard, self.scheme), host, port)
        except BaseException:
            self.hub.close()
            raise

    def close(self) -> None:
        if self.hub.viewers:   # the run's last events (tracks ended, finished) reach the open pages first
            time.sleep(0.5)
        super().close()
        self.hub.close()
