"""The fleet's status on its Ray cluster: a named actor that the coordinator publishes to and
`segpost fleet status` reads (or the status file the coordinator writes beside the output)."""
from __future__ import annotations

import json
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
    """A running fleet's status: from its status file, or from its Ray cluster."""
    if status_file:
        with open(status_file) as f:
            return json.load(f)
    ray = import_ray()
    ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False)
    try:
        board = ray.get_actor(STATUS_ACTOR, namespace=NAMESPACE)
    except ValueError:
        raise ValueError("no segpost fleet runs on this Ray cluster") from None
    return ray.get(board.get.remote())
