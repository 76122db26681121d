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

Every key is declared once, in FleetFile below (type, default, bounds, description): ``segpost
config schema fleet`` prints them. Engine and prompt paths are relative to the pipeline config's
folder and must exist at the same path on every node. ``${NAME}`` values come from the environment.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import Annotated

from .._settings import Int, Number, numbers
from ..config import read_app_config, validated


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




class CameraEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, description="the camera's name (its records' \"camera\", its file's name)")
    source: str = Field(description="video file, RTSP/HTTP URL or camera index")


class SinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_camera: bool = Field(True, description="one JSON Lines file per camera in --out, or one merged file")
    mqtt: Optional[str] = Field(None, description="also publish to mqtt://[user:password@]host[:port]/topic/{camera}")
    shards: Int = Field(1, ge=1, le=1024, description="sink actors, cameras spread by name (more than 1 needs "
                                                      "per_camera)")
    fsync_seconds: Number = Field(1.0, ge=0.01, description="what a machine crash may lose (a process death loses "
                                                            "nothing)")


def _whole_above_one(value: float) -> float:
    if value > 1 and value != int(value):
        raise ValueError(f"above 1 must be a whole number, got {value!r}")
    return value


Share = Annotated[Number, AfterValidator(_whole_above_one)]
ShareOrNull = Optional[Annotated[numbers(ge=0), AfterValidator(_whole_above_one)]]


class FleetFile(BaseModel):
    """The fleet config file: every key (`segpost config schema fleet`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pipeline: Union[str, Dict[str, Any]] = Field(description="a `segpost run` config file, or the object inline")
    cameras: List[CameraEntry] = Field(min_length=1, description="the cameras, {\"name\", \"source\"} each")
    cameras_per_worker: Int = Field(8, ge=1, description="at most the pipeline's max_cameras (the engines' batch); "
                                    "up to 4x it under \"schedule\": \"on_change\"")
    gpus_per_worker: Share = Field(1.0, ge=0, description="a fraction shares a GPU between workers; 0: CPU workers")
    cpus_per_worker: Number = Field(1.0, ge=0, description="CPUs Ray reserves per worker")
    decode: Literal["auto", "gpu", "cpu"] = Field("auto", description="as `segpost run --decode`")
    masks: Literal["rle", "none"] = Field("rle", description="each detection's mask in the records")
    sink: SinkSettings = Field(SinkSettings(), description="where the records go")
    standby_workers: Int = Field(0, ge=0, description="workers built ahead that take a dead worker's cameras at once")
    standby_gpus: ShareOrNull = Field(
        None, description="a standby's GPU share; null: gpus_per_worker")
    heartbeat_seconds: Number = Field(5.0, ge=0.5, description="how often workers report")
    stall_seconds: Number = Field(10.0, ge=0.5, description="a worker silent this long is restarted")
    watchdog_seconds: Number = Field(300.0, ge=1.0, description="a round running longer restarts its worker")
    restart_backoff: Tuple[numbers(gt=0), numbers(gt=0)] = Field(
        (1.0, 30.0), description="seconds: [first delay, longest delay] between restarts")


def load_fleet_config(path: str) -> FleetConfig:
    raw, pipeline, pipeline_dir = read_app_config(path, FleetFile, "fleet config file")
    where = path
    file = validated(FleetFile, {**raw, "pipeline": pipeline}, where)
    specs = [CameraSpec(c.name, c.source) for c in file.cameras]
    names = [c.name for c in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: camera names must be unique; repeated: {duplicates}")
    _check_zone_cameras(where, pipeline, names)
    max_cameras = pipeline.get("max_cameras", 8)
    most = _most_cameras(where, pipeline, max_cameras)
    if file.cameras_per_worker > most:
        why = (f"{most // max_cameras} x the pipeline's max_cameras {max_cameras} under its schedule on_change"
               if most > max_cameras else "the pipeline's max_cameras, the engines' max batch; a pipeline "
               "\"schedule\": \"on_change\" serves more")
        raise ValueError(f"{where}: cameras_per_worker must be an int in [1, {most}] ({why}), "
                         f"got {file.cameras_per_worker!r}")
    first, longest = file.restart_backoff
    if first > longest:
        raise ValueError(f"{where}: restart_backoff: [first, longest] seconds, first at most longest, got "
                         f"{list(file.restart_backoff)}")
    sink = file.sink
    if sink.shards > 1 and not sink.per_camera:
        raise ValueError(f"{where}: sink.shards: must be 1 with one merged file (per_camera false), got {sink.shards}")
    if sink.per_camera:
        _check_file_names(where, names)
    gpus = file.gpus_per_worker
    return FleetConfig(pipeline, pipeline_dir, tuple(specs), file.cameras_per_worker, gpus_per_worker=gpus,
                       cpus_per_worker=file.cpus_per_worker, decode=file.decode, masks=file.masks,
                       per_camera_files=sink.per_camera, mqtt=sink.mqtt, heartbeat_seconds=file.heartbeat_seconds,
                       stall_seconds=file.stall_seconds, watchdog_seconds=file.watchdog_seconds,
                       restart_backoff=(first, longest), standby_workers=file.standby_workers,
                       standby_gpus=gpus if file.standby_gpus is None else file.standby_gpus,
                       sink_shards=sink.shards, fsync_seconds=sink.fsync_seconds)


def _check_zone_cameras(where: str, pipeline: Dict[str, Any], names: List[str]) -> None:
    """The pipeline's "zones" are keyed by camera name in a fleet: a key naming no camera is a
    one-line error naming it (its zones would never be used)."""
    if isinstance(pipeline.get("zones"), dict):
        from ..zones import ZoneSet

        ZoneSet.from_value(pipeline["zones"], cameras=names, where=f"{where}: pipeline zones")


def _most_cameras(where: str, pipeline: Dict[str, Any], max_cameras: Any) -> int:
    """Cameras a worker may serve: max_cameras, or more under the pipeline's on_change schedule."""
    from ..schedule import ScheduleConfig, most_cameras

    if isinstance(max_cameras, bool) or not isinstance(max_cameras, int) or max_cameras < 1:
        raise ValueError(f"{where}: the pipeline's max_cameras must be an int >= 1, got {max_cameras!r}")
    return most_cameras(max_cameras, ScheduleConfig.from_value(pipeline.get("schedule"), f"{where}: pipeline.schedule"))


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
