"""``segpost serve``: clients send frames over HTTP or gRPC and get detections (``pip install segpost[fleet]``).

- app: the Ray Serve application (decode and pipeline rounds as ``@serve.batch`` stages), start/stop.
- config: the serve config, one pydantic model (``segpost serve --print-schema``).
- guard: what is checked before any work is spent on a request (API keys, sizes, image headers).
- api: the HTTP JSON and gRPC messages (the .proto built in code) and their detections.
- rounds: RoundBatcher, frames from many requests into pipeline rounds.
- client: the client side (HTTP), ``from segpost.serve.client import SegpostClient``.
This package imports the library; the library never imports it.
"""
