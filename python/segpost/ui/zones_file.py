"""The zone editor's side of the server: the zones file of `segpost run --zones FILE`, changed one
camera at a time from the page, validated as the run validated it at its start (the same
function), written atomically (a temporary file in the same folder, fsync, rename) and handed to
the running pipeline, which swaps it in between two rounds (PipelineZones.request)."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import Any, Callable, Dict, List, Optional

MAX_ENTRIES = 64          # zones and lines of one camera saved at once
MAX_CAMERA_ID = 64        # characters


class ZonesFile:
    """`path`: the zones file (JSON {camera: [zones]}); `validate(value)`: its ZoneSet or a one-line
    ValueError (cli/run.py's own check); `apply(zoneset)`: hand the new zones to the rounds."""

    def __init__(self, path: str, validate: Callable[[Any], Any], apply: Callable[[Any], None]):
        self.path, self._validate, self._apply = path, validate, apply
        with open(path) as f:
            value = json.load(f)
        validate(value)   # the run checked it already; a file changed since is refused the same way
        self._value: Dict[str, List[Any]] = {str(k): list(v) for k, v in value.items()}
        self._lock = threading.Lock()

    @property
    def value(self) -> Dict[str, List[Any]]:
        with self._lock:
            return json.loads(json.dumps(self._value))   # a copy the caller may keep

    def save_camera(self, camera: Any, entries: Any) -> Dict[str, List[Any]]:
        """Replace `camera`'s zones and lines with `entries`; ValueError (one line, for the page)
        when the request or the zones are not valid. Returns the whole new value."""
        if not isinstance(camera, str) or not 0 < len(camera) <= MAX_CAMERA_ID:
            raise ValueError(f"\"camera\" must be a camera id (a string of at most {MAX_CAMERA_ID} characters)")
        if not isinstance(entries, list):
            raise ValueError("\"zones\" must be a list of zones and lines")
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} zones and lines a camera, got {len(entries)}")
        with self._lock:
            value = dict(self._value)
            if entries:
                value[camera] = entries
            else:
                value.pop(camera, None)
            zones = self._validate(value)    # ValueError: nothing is written, nothing applied
            self._write(value)
            self._value = value
            self._apply(zones)
        return self.value

    def _write(self, value: Dict[str, Any]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            mode: Optional[int] = os.stat(self.path).st_mode & 0o777
        except OSError:
            mode = None
        fd, temporary = tempfile.mkstemp(prefix=".zones-", suffix=".json.tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            if mode is not None:
                os.chmod(temporary, mode)
            os.replace(temporary, self.path)   # readers see the old file or the new one, never half
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        try:   # the rename itself survives a power cut
            dirfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError:
            pass
