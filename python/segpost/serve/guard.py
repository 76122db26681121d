"""What a replica checks before it spends work on a request: the caller's key, the body's size,
the request's shape and every image's declared size.

Keys: the replica holds SHA-256 digests of the configured keys, never the keys; a presented key
is hashed and compared with every digest in constant time (hmac.compare_digest, no early exit).
Bodies: a declared Content-Length above the limit is refused before a byte is read; a body
without one is refused (411: Serve's HTTP server then enforces the declared length, so a body
can never outgrow it); the body is counted while it is read, within body_timeout_s.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..io.image_header import ImageError, ImageHeader, inspect


class RequestError(ValueError):
    """The client's fault: `status` is the HTTP status (400, 401, 408, 411, 413)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def key_digests(keys: Sequence[str]) -> Tuple[bytes, ...]:
    """SHA-256 of each key. A key with surrounding whitespace is refused: the presented token is
    stripped, so it could never match (ServeConfig strips the keys it loads)."""
    for i, key in enumerate(keys):
        if key != key.strip():
            raise ValueError(f"api_keys[{i}] has surrounding whitespace (a key file's newline?): it could never match")
    return tuple(hashlib.sha256(key.encode()).digest() for key in keys)


@dataclass(frozen=True)
class Limits:
    """What the replica takes (the serve config's keys)."""

    key_digests: Tuple[bytes, ...] = ()
    max_body_bytes: int = 16 << 20
    max_frames: int = 32
    body_timeout_s: float = 30.0

    def __repr__(self) -> str:   # never the digests either
        return (f"Limits(keys={len(self.key_digests)}, max_body_bytes={self.max_body_bytes}, "
                f"max_frames={self.max_frames}, body_timeout_s={self.body_timeout_s})")

    def check_key(self, authorization: Optional[str]) -> None:
        """RequestError(401) unless `authorization` is "Bearer KEY" with a configured key (or no
        keys are configured)."""
        if not self.key_digests:
            return
        scheme, _, token = (authorization or "").partition(" ")
        presented = hashlib.sha256(token.strip().encode(errors="replace")).digest()
        matched = 0
        for digest in self.key_digests:   # every key, whatever matched before
            matched |= hmac.compare_digest(presented, digest)
        if not matched or scheme.lower() != "bearer":
            raise RequestError("a valid API key is required: send \"Authorization: Bearer KEY\"", 401)

    async def read_json(self, request: Any) -> Any:
        """The body of a starlette request, read within the limits, parsed as JSON."""
        declared = request.headers.get("content-length")
        if declared is None:
            raise RequestError("the request needs a Content-Length header (chunked bodies are not taken)", 411)
        if not declared.isdigit():
            raise RequestError(f"Content-Length {declared[:20]!r} is not a number")
        if int(declared) > self.max_body_bytes:
            raise RequestError(f"the body is {declared} bytes; this server takes at most {self.max_body_bytes} "
                               "(max_body_bytes)", 413)
        from starlette.requests import ClientDisconnect

        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > int(declared):
                        raise RequestError("the body is longer than its Content-Length")
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestError(f"the body did not arrive within {self.body_timeout_s:g} s (body_timeout_s)", 408) from None
        except ClientDisconnect:
            raise RequestError("the client went away before sending its body") from None
        if size != int(declared):
            raise RequestError(f"the body ended after {size} of its {declared} bytes")
        return parse_json(b"".join(chunks), self.max_frames)


def parse_json(body: bytes, max_frames: int) -> Any:
    """JSON with a bound on its values: base64 images hold no ',', '[' or '{', so a request of
    `max_frames` frames has few; a body of a million tiny values is refused before it is built."""
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    if values > 16 * max_frames + 256:
        raise RequestError(f"the request has {values} JSON values, far more than {max_frames} frames need")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the body is not JSON ({str(exc)[:100]})") from None


def check_frame(frame: Dict[str, Any], max_size: Tuple[int, int], index: int) -> Tuple[str, Any]:
    """A request frame, checked before any decoding: ("image", (bytes, ImageHeader)) for a JPEG or
    PNG whose header fits `max_size`, ("raw", BGR array) for raw pixels; RequestError says why not."""
    limit = f"this server's max_frame_size {list(max_size)}"
    if "image" in frame:
        try:
            header: ImageHeader = inspect(frame["image"])
        except ImageError as exc:
            raise RequestError(f"frames[{index}]: {exc}") from None
        if header.height > max_size[0] or header.width > max_size[1]:
            raise RequestError(f"frames[{index}]: the {header.kind.upper()} declares {header.width}x{header.height} "
                               f"pixels (height {header.height}), larger than {limit}")
        return "image", (frame["image"], header)
    shape = frame.get("shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and
            all(isinstance(v, int) and not isinstance(v, bool) for v in shape) and shape[2] == 3 and min(shape) >= 1):
        raise RequestError(f"frames[{index}]: raw pixels need \"shape\": [H, W, 3] (positive ints), got {str(shape)[:80]}")
    if shape[0] > max_size[0] or shape[1] > max_size[1]:
        raise RequestError(f"frames[{index}]: {shape[0]}x{shape[1]} is larger than {limit}")
    if len(frame["raw"]) != shape[0] * shape[1] * 3:
        raise RequestError(f"frames[{index}]: {len(frame['raw'])} bytes of pixels do not fill the shape {list(shape)}")
    return "raw", np.frombuffer(frame["raw"], np.uint8).reshape(shape)
