"""The fleet's status on its Ray cluster: a named actor that the coordinator publishes to and
`segpost fleet status` reads (or the status file the coordinator writes beside the output)."""
from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, Optional

from . import import_ray

STATUS_ACTOR = "segpost-fleet-status"
NAMESPACE = "segpost"


class StatusBoard:
    """A named actor holding the fleet's latest status, for `segpost fleet status`."""

    def __init__(self):
        self._status: Dict[str, Any] = {}

    def publish(self, status: Dict[str, Any]) -> None:
        self._status = status

    def get(self) -> Dict[str, Any]:
        return self._status


def read_status(address: Optional[str] = None, status_file: Optional[str] = None) -> Dict[str, Any]:
    """A running fleet's status: from its status file, or from its Ray cluster. ValueError, with
    one line saying what to do, when there is neither."""
    if status_file:
        try:
            with open(status_file) as f:
                return json.load(f)
        except OSError as exc:
            raise ValueError(f"--status-file {status_file}: {exc.strerror} (a fleet writes fleet-status.json in "
                             "its --out folder)") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"--status-file {status_file}: not a fleet status file ({exc})") from None
    ray = import_ray()
    _check_reachable(address or os.environ.get("RAY_ADDRESS") or "auto")
    try:
        ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)
    except ConnectionError:   # Ray's answer when "auto" finds no instance on this machine
        raise ValueError("no Ray instance runs on this machine, so no fleet does: a fleet elsewhere is asked with "
                         "--address HOST:PORT, or read from its status file with --status-file OUT/fleet-status.json"
                         ) from None
    try:
        board = ray.get_actor(STATUS_ACTOR, namespace=NAMESPACE)
    except ValueError:
        raise ValueError("no segpost fleet runs on this Ray cluster") from None
    return ray.get(board.get.remote())


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A HOST:PORT nobody listens on: said at once (Ray would retry its connection for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return   # auto, local, ray://: Ray's own lookup
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); is the address right, "
                         "and does the fleet run?") from None


def write_status_file(path: str, status: Dict[str, Any]) -> None:
    """The status as JSON, replaced whole (a reader never sees half of it)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, path)
