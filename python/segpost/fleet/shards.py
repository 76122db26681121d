"""The fleet's sink shards as one: their actors (on this node, restarted by Ray when they die),
and the calls the coordinator makes to all of them, each bounded in time: a sink whose node or
Ray's own processes are going away must not keep the fleet waiting."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

from . import import_ray
from .config import FleetConfig
from .sink import RecordSink, shard_of
from .status import NAMESPACE

SINK_CALL_SECONDS = 20.0   # a sink call that takes longer: the sink or its node is gone


def sink_name(shard: int) -> str:
    return f"segpost-fleet-sink-{shard}"


def start_sinks(config: FleetConfig, out: str, scheduling_strategy: Any) -> List[Any]:
    """One RecordSink actor per shard, named, writing `out` (each recovers its cameras' state)."""
    ray = import_ray()
    shards = config.sink_shards
    sink = ray.remote(RecordSink)
    return [sink.options(name=sink_name(shard), namespace=NAMESPACE, num_cpus=0, max_concurrency=8,
                         max_restarts=-1, max_task_retries=-1, scheduling_strategy=scheduling_strategy).remote(
        os.path.abspath(out), config.per_camera_files, config.mqtt,
        [c.name for c in config.cameras if shard_of(c.name, shards) == shard], config.fsync_seconds)
        for shard in range(shards)]


def committed_state(sinks: Sequence[Any]) -> Dict[str, Dict[str, Any]]:
    """Per camera, where the output ends (RecordSink.committed_state), from every shard."""
    state: Dict[str, Dict[str, Any]] = {}
    for shard in import_ray().get([sink.committed_state.remote() for sink in sinks]):
        state.update(shard)
    return state


def end_open_tracks(sinks: Sequence[Any], cameras: Sequence[str], reason: str) -> int:
    """RecordSink.end_open_tracks on every shard; raises when a shard could not write them."""
    return sum(import_ray().get([sink.end_open_tracks.remote(list(cameras), reason) for sink in sinks],
                                timeout=SINK_CALL_SECONDS))


def close_sinks(sinks: Sequence[Any], committed_too: bool) -> Tuple[Dict[str, int], Dict[str, Any]]:
    """(per camera the last frame written, if asked; the shards' final stats, summed), after
    every shard fsynced and closed its files."""
    ray = import_ray()
    committed: Dict[str, int] = {}
    stats: Dict[str, Any] = {}
    if committed_too:   # the metrics' last word: every frame written, not a snapshot before
        for shard in ray.get([sink.committed.remote() for sink in sinks], timeout=SINK_CALL_SECONDS):
            committed.update(shard)
    for shard in ray.get([sink.close.remote() for sink in sinks], timeout=SINK_CALL_SECONDS) if sinks else []:
        for key, value in shard.items():
            stats[key] = stats.get(key, 0) + value if isinstance(value, (int, float)) else value
    return committed, stats
