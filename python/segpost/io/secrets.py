"""Credentials stay out of logs, records, metric labels and error messages.

Camera URLs carry passwords (rtsp://user:password@host/...). ``redact(url)`` gives the URL to show
(rtsp://user:***@host/...); ``Redactor`` scrubs the secrets of every URL it has seen from any text
(OpenCV, FFmpeg and decoder errors quote the URL they failed on). ``expand_env`` lets config
values name environment variables (``${CAMERA_PASSWORD}``) instead of holding secrets.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Set
from urllib.parse import unquote, urlsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<password>[^@/\s]*)@")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def redact(text: str) -> str:
    """Every user:password@ in `text` (URLs) becomes user:***@."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", str(text))


def url_secrets(url: str) -> Set[str]:
    """The password of a URL, raw and percent-decoded (either may appear in a message)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    match = _USERINFO.search(url)
    raw = match.group("password") if match else None
    return {s for s in (password, raw, unquote(raw) if raw else None) if s}


class Redactor:
    """Scrubs the secrets of every URL registered with it from any text (thread-safe)."""

    def __init__(self):
        self._secrets: Set[str] = set()
        self._lock = threading.Lock()

    def register(self, url: str) -> str:
        """Remember the URL's secrets; returns the URL to show."""
        with self._lock:
            self._secrets.update(url_secrets(url))
        return redact(url)

    def __call__(self, text: Any) -> str:
        text = redact(str(text))
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text


def expand_env(value: Any, where: str = "config") -> Any:
    """``${NAME}`` in strings (recursively in lists and dicts) -> the environment variable's value;
    a variable that is not set is an error naming it (never its would-be value)."""
    if isinstance(value, str):
        def substitute(match):
            name = match.group(1)
            if name not in os.environ:
                raise ValueError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(v, where) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}") for k, v in value.items()}
    return value
