"""Many cameras on many GPUs and machines, on Ray (``pip install segpost[fleet]``).

- config: the fleet's JSON config (pipeline, cameras, workers, sink).
- worker: a Ray actor per camera group: opens its own sources (frames are decoded where they
  are processed), runs a MultiCameraPipeline, sends its records to the sink after every round.
- sink: a Ray actor that writes the records exactly once per (camera, frame index), in frame
  order per camera, and knows where each camera resumes after a worker dies.
- coordinator: the driver side: places workers (spread over GPUs and nodes), watches them
  (actor death, node loss, missed heartbeats), restarts them with backoff where their cameras
  left off, publishes status, shuts down cleanly.
- serve: a Ray Serve application for clients that send frames (HTTP and gRPC); client: their side.
This package imports the library; the library never imports it.
"""


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ValueError("the fleet and serve commands run on Ray: pip install 'segpost[fleet]'") from exc
    return ray
