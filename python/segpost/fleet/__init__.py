"""Many cameras on many GPUs and machines, on Ray (``pip install segpost[fleet]``).

- config: the fleet's JSON config (pipeline, cameras, workers, sink).
- worker: a Ray actor per camera group: opens its own sources (frames are decoded where they
  are processed), runs a MultiCameraPipeline, sends its records to the sink after every round.
- sink: Ray actors (one per shard of the cameras) that write the records exactly once per
  (camera, frame index), in frame order per camera; their files are their state (recovery.py:
  where each camera's output ends), so a sink, a worker or the whole fleet may die and resume.
- coordinator: the driver side: places workers (spread over GPUs and nodes), watches them
  (actor death, node loss, missed heartbeats), hands a dead worker's cameras to a warm standby
  (standby) or restarts it with backoff where its cameras left off, publishes status, shuts down
  cleanly.
- standby: warm standby workers (built, waiting) that take a dead worker's cameras at once.
- heartbeat: a worker's stats() answers as both watch them, and the restart backoff.
- status: the named actor `segpost fleet status` reads.
This package imports the library; the library never imports it.
"""
from ..service.ray_runtime import import_ray




def short_error(exc: BaseException) -> str:
    """An exception as one short line for logs and status (Ray's errors run to pages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def kill_actor(actor) -> None:
    """Ends a Ray actor for good (no restart); one already gone is fine."""
    try:
        import_ray().kill(actor, no_restart=True)
    except Exception:  # already gone, or its node with it
        pass
