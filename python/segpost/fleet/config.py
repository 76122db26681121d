"""The fleet's config file (JSON):

    {
      "pipeline": "segpost.json",            # a `segpost run` config file, or the same object inline
      "cameras": [{"name": "dock-1", "source": "rtsp://user:${DOCK_PASSWORD}@10.0.0.7/stream"}, ...],
      "cameras_per_worker": 8,                # at most the engines' max batch (max_cameras); with the
                                              # pipeline's "schedule": "on_change", up to 4x that
      "gpus_per_worker": 1,                   # a fraction shares a GPU between workers; 0: CPU workers
      "cpus_per_worker": 1,
      "decode": "auto",                       # auto | gpu | cpu, as `segpost run --decode`
      "masks": "rle",                         # rle | none
      "sink": {"per_camera": true,            # one JSON Lines file per camera in --out, or one merged file
               "mqtt": "mqtt://broker/segpost/{camera}",    # optional, in addition
               "shards": 1,                   # sink actors, cameras spread by name (needs per_camera)
               "fsync_seconds": 1},           # what a machine crash may lose (a process death loses nothing)
      "standby_workers": 0,                   # workers built ahead that take a dead worker's cameras at once
      "standby_gpus": 1,                      # a standby's GPU share (default: gpus_per_worker)
      "heartbeat_seconds": 5, "stall_seconds": 10, "watchdog_seconds": 300,
      "restart_backoff": [1, 30]              # seconds: first delay, longest delay
    }

Engine and prompt paths are relative to the pipeline config's folder and must exist at the same
path on every node. ``${NAME}`` values come from the environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..config import read_app_config

_KNOWN = {"pipeline", "cameras", "cameras_per_worker", "gpus_per_worker", "cpus_per_worker", "decode", "masks",
          "sink", "heartbeat_seconds", "stall_seconds", "watchdog_seconds", "restart_backoff", "standby_workers",
          "standby_gpus"}
_SINK_KEYS = {"per_camera", "mqtt", "shards", "fsync_seconds"}


@dataclass(frozen=True)
class CameraSpec:
    name: str
    source: str


@dataclass(frozen=True)
class FleetConfig:
    pipeline: Dict[str, Any]          # the `segpost run` config object
    pipeline_dir: str                 # what its relative paths are relative to
    cameras: Tuple[CameraSpec, ...]
    cameras_per_worker: int = 8
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    decode: str = "auto"
    masks: str = "rle"
    per_camera_files: bool = True
    mqtt: Optional[str] = None
    heartbeat_seconds: float = 5.0
    stall_seconds: float = 10.0
    watchdog_seconds: float = 300.0
    restart_backoff: Tuple[float, float] = (1.0, 30.0)
    standby_workers: int = 0
    standby_gpus: float = 1.0
    sink_shards: int = 1
    fsync_seconds: float = 1.0

    def camera_groups(self) -> List[List[CameraSpec]]:
        """Cameras in groups of cameras_per_worker, in config order: one worker each."""
        n = self.cameras_per_worker
        return [list(self.cameras[i:i + n]) for i in range(0, len(self.cameras), n)]




def load_fleet_config(path: str) -> FleetConfig:
    raw, pipeline, pipeline_dir = read_app_config(path, _KNOWN, "fleet config file")
    where = path
    cameras = raw.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        raise ValueError(f"{where}: 'cameras' must be a list of {{\"name\", \"source\"}} objects")
    specs = []
    for i, camera in enumerate(cameras):
        if not isinstance(camera, dict) or not isinstance(camera.get("name"), str) or \
                not isinstance(camera.get("source"), str) or not camera["name"]:
            raise ValueError(f"{where}: cameras[{i}] needs a non-empty \"name\" and a \"source\"")
        specs.append(CameraSpec(camera["name"], camera["source"]))
    names = [c.name for c in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: camera names must be unique; repeated: {duplicates}")
    per_worker = raw.get("cameras_per_worker", 8)
    max_cameras = pipeline.get("max_cameras", 8)
    most = _most_cameras(where, pipeline, max_cameras)
    if isinstance(per_worker, bool) or not isinstance(per_worker, int) or not 1 <= per_worker <= most:
        why = (f"{most // max_cameras} x the pipeline's max_cameras {max_cameras} under its schedule on_change"
               if most > max_cameras else "the pipeline's max_cameras, the engines' max batch; a pipeline "
               "\"schedule\": \"on_change\" serves more")
        raise ValueError(f"{where}: cameras_per_worker must be an int in [1, {most}] ({why}), got {per_worker!r}")
    numbers = {}
    for key, default, low in (("gpus_per_worker", 1.0, 0.0), ("cpus_per_worker", 1.0, 0.0),
                              ("heartbeat_seconds", 5.0, 0.5), ("stall_seconds", 10.0, 0.5),
                              ("watchdog_seconds", 300.0, 1.0), ("standby_gpus", None, 0.0)):
        value = raw.get(key, default if default is not None else numbers.get("gpus_per_worker"))
        numbers[key] = _number(where, key, value, low)
    for key in ("gpus_per_worker", "standby_gpus"):
        if numbers[key] > 1 and numbers[key] != int(numbers[key]):
            raise ValueError(f"{where}: {key} above 1 must be a whole number")
    standby = raw.get("standby_workers", 0)
    if isinstance(standby, bool) or not isinstance(standby, int) or standby < 0:
        raise ValueError(f"{where}: standby_workers must be an int >= 0, got {standby!r}")
    backoff = raw.get("restart_backoff", [1, 30])
    if not (isinstance(backoff, list) and len(backoff) == 2 and all(isinstance(v, (int, float)) for v in backoff)
            and 0 < backoff[0] <= backoff[1]):
        raise ValueError(f"{where}: restart_backoff must be [first, longest] seconds, got {backoff!r}")
    decode, masks = raw.get("decode", "auto"), raw.get("masks", "rle")
    if decode not in ("auto", "gpu", "cpu"):
        raise ValueError(f"{where}: decode must be auto, gpu or cpu, got {decode!r}")
    if masks not in ("rle", "none"):
        raise ValueError(f"{where}: masks must be rle or none, got {masks!r}")
    sink = raw.get("sink", {})
    if not isinstance(sink, dict) or set(sink) - _SINK_KEYS:
        raise ValueError(f"{where}: sink takes \"per_camera\" (bool), \"mqtt\" (a URL), \"shards\" (int) and "
                         f"\"fsync_seconds\", got {sink!r}")
    per_camera, shards = bool(sink.get("per_camera", True)), sink.get("shards", 1)
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1 or (shards > 1 and not per_camera):
        raise ValueError(f"{where}: sink.shards must be an int >= 1, and 1 with one merged file (per_camera false), "
                         f"got {shards!r}")
    if per_camera:
        _check_file_names(where, names)
    return FleetConfig(pipeline, pipeline_dir, tuple(specs), per_worker, decode=decode, masks=masks,
                       per_camera_files=per_camera, mqtt=sink.get("mqtt"), standby_workers=standby, sink_shards=shards,
                       fsync_seconds=_number(where, "sink.fsync_seconds", sink.get("fsync_seconds", 1.0), 0.01),
                       restart_backoff=(float(backoff[0]), float(backoff[1])), **numbers)


def _most_cameras(where: str, pipeline: Dict[str, Any], max_cameras: Any) -> int:
    """Cameras a worker may serve: max_cameras, or more under the pipeline's on_change schedule."""
    from ..schedule import ScheduleConfig, most_cameras

    if isinstance(max_cameras, bool) or not isinstance(max_cameras, int) or max_cameras < 1:
        raise ValueError(f"{where}: the pipeline's max_cameras must be an int >= 1, got {max_cameras!r}")
    return most_cameras(max_cameras, ScheduleConfig.from_value(pipeline.get("schedule"), f"{where}: pipeline.schedule"))


def _number(where: str, key: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ValueError(f"{where}: {key} must be a number >= {low}, got {value!r}")
    return float(value)


def _check_file_names(where: str, names: List[str]) -> None:
    """Each camera's file is named after it (characters outside [A-Za-z0-9-_.] become _): two
    names must not meet in one file, nor in the fleet's own file."""
    from .sink import FLEET_FILE, file_stem

    owners: Dict[str, str] = {file_stem(FLEET_FILE): "(records of no camera)"}
    for name in names:
        other = owners.setdefault(file_stem(name), name)
        if other != name:
            raise ValueError(f"{where}: cameras {other!r} and {name!r} would share the file {file_stem(name)}.jsonl; "
                             "rename one")
