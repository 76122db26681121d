"""Who may see the live page, as `segpost serve` decides who may use the GPU.

- Keys: the same kind as serve's api_keys (at least 16 characters; held as SHA-256 digests and
  compared in constant time with every digest). A client sends "Authorization: Bearer KEY"; a
  browser logs in once with the key and gets a session cookie (random, HttpOnly, SameSite=Strict,
  Secure under TLS); the key itself never reaches the page.
- Listening beyond loopback without keys is refused unless allow_unauthenticated is set.
- State-changing requests (login, logout) and WebSocket handshakes need an Origin equal to the
  page's own; on a loopback listener the Host must be a loopback name too, so a site that
  rebinds its DNS name to 127.0.0.1 cannot read the page.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from typing import Dict, Optional, Sequence, Tuple

MIN_KEY_LENGTH = 16
SESSION_COOKIE = "segpost_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> Tuple[str, int]:
    """HOST:PORT (IPv6 in brackets: [::1]:8080), port 0 = any free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or len(value) > 300:
        raise ValueError(f"--ui {value[:80]!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--ui {value}: the port must be in [0, 65535]")
    return host.strip("[]"), int(port)


def read_keys(path: Optional[str]) -> Tuple[str, ...]:
    """The keys of a key file: one a line, blank lines and # comments ignored."""
    if path is None:
        return ()
    with open(path) as f:
        keys = tuple(line.strip() for line in f if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise ValueError(f"{path}: no key in the key file")
    for i, key in enumerate(keys):
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"{path}: key {i + 1} is shorter than {MIN_KEY_LENGTH} characters")
    return keys


class Guard:
    def __init__(self, host: str, keys: Sequence[str] = (), allow_unauthenticated: bool = False,
                 clock=time.monotonic):
        self.loopback = is_loopback(host)
        if not self.loopback and not keys and not allow_unauthenticated:
            raise ValueError(
                f"refusing to start the live page on {host}: beyond loopback without keys anyone who reaches the port "
                "would see every camera. Give --ui-key-file (browsers log in with a key, clients send "
                "\"Authorization: Bearer KEY\"), or listen on 127.0.0.1, or pass --ui-allow-unauthenticated on a "
                "network you trust")
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in keys)
        self._sessions: Dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    @property
    def needs_key(self) -> bool:
        return bool(self._digests)

    def key_ok(self, key: str) -> bool:
        presented = hashlib.sha256(key.encode(errors="replace")).digest()
        matched = 0
        for digest in self._digests:     # every key, whatever matched before
            matched |= hmac.compare_digest(presented, digest)
        return bool(matched)

    def bearer_ok(self, authorization: Optional[str]) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.key_ok(token.strip()[:1024])

    def new_session(self) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            for old in [t for t, expiry in self._sessions.items() if expiry < now]:
                del self._sessions[old]
            if len(self._sessions) >= MAX_SESSIONS:   # the oldest goes
                del self._sessions[min(self._sessions, key=self._sessions.get)]
            self._sessions[token] = now + SESSION_SECONDS
        return token

    def session_ok(self, token: Optional[str]) -> bool:
        if not token or len(token) > 100:
            return False
        with self._lock:
            expiry = self._sessions.get(token)
        return expiry is not None and expiry >= self._clock()

    def end_session(self, token: Optional[str]) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def allowed(self, headers, cookies) -> bool:
        """The request carries a valid key or session (always, when no keys are set)."""
        if not self._digests:
            return True
        return self.bearer_ok(headers.get("authorization")) or self.session_ok(cookies.get(SESSION_COOKIE))

    def host_ok(self, headers) -> bool:
        """On a loopback listener, the Host header names loopback (DNS rebinding)."""
        if not self.loopback:
            return True
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES

    def same_origin(self, headers, scheme: str) -> bool:
        """Origin present and equal to this page's scheme://host."""
        origin, host = headers.get("origin"), headers.get("host")
        return bool(origin and host) and origin == f"{scheme}://{host}"
