"""segpost's live page (``segpost run --ui HOST:PORT``; ``pip install segpost[ui]``): every camera's
frames with their masks, boxes, classes, scores and track ids drawn by the browser, the events as
they are written, each camera's health. An application like service/: it reads the runner's
records and frames through ``LiveHub`` (the runner's observer) and is never imported by the core.

- hub.py: the runner's observer, the viewers, the encoder thread (nothing encoded unwatched)
- guard.py: keys, sessions, loopback and same-origin checks (as segpost serve)
- server.py: Starlette + uvicorn in a thread; static/: the page, plain ES modules, no build step
"""
from .hub import LiveHub
from .server import LivePage

__all__ = ["LiveHub", "LivePage"]
