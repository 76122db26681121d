"""The fleet's workers under the pipeline's "schedule": "on_change" (issue 32) on a real local Ray:
a worker whose engines take 2 frames a round serves 6 cameras, and the exactly-once sink still gets
a record of every frame of every camera, in order (those the model did not see flagged predicted)."""
import json

import pytest

from local_ray import start_local_ray
from fleet_cases import fleet_services, make_videos, read_out, run_fleet

ray = fleet_services()

from segpost.fleet.config import load_fleet_config  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    start_local_ray(num_cpus=4, include_dashboard=False, log_to_driver=False, namespace="segpost")
    yield
    ray.shutdown()


def write_scheduled_config(folder, cameras, per_worker, schedule, max_cameras=2):
    folder.mkdir(parents=True, exist_ok=True)
    # output_fps far above the files' read rate: a record for every frame (a live camera would be
    # held to its output rate; the test wants every frame of the files).
    pipeline = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [48, 64],
                "max_cameras": max_cameras, "schedule": schedule}
    (folder / "segpost.json").write_text(json.dumps(pipeline))
    config = {"pipeline": "segpost.json", "cameras": [{"name": n, "source": s} for n, s in cameras],
              "cameras_per_worker": per_worker, "gpus_per_worker": 0, "cpus_per_worker": 0.5,
              "heartbeat_seconds": 5, "restart_backoff": [0.5, 4]}
    path = folder / "fleet.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_a_worker_of_batch_2_serves_6_cameras_every_frame_once_in_order(ray_cluster, tmp_path_factory, tmp_path):
    _, paths, _ = make_videos(tmp_path_factory.mktemp("videos"), short=6)
    cameras = [(f"cam{i}", p) for i, p in enumerate(paths)]
    schedule = {"mode": "on_change", "output_fps": 1e6, "max_interval": 60}
    fleet, stats = run_fleet(write_scheduled_config(tmp_path, cameras, 6, schedule), tmp_path / "out")
    assert [s.state for s in fleet.slots] == ["finished"] and stats["duplicates_dropped"] == 0
    summary = fleet.slots[0].stats["schedule"]
    out = read_out(tmp_path / "out")
    predicted = observed = 0
    for i, (name, _) in enumerate(cameras):
        frames = [r for r in out[name] if "detections" in r]
        assert [r["frame_index"] for r in frames] == list(range(12 + i % 3)), name   # every frame once, in order
        for r in frames:
            if r.get("predicted"):
                predicted += 1
                assert all(d["predicted"] and d["observed_frame"] < r["frame_index"] for d in r["detections"])
            else:
                observed += 1
                assert not any(d.get("predicted") for d in r["detections"])
    # The engines took at most 2 frames a round: the others were predicted, and the counts agree.
    assert predicted > 0 and observed > 0, (predicted, observed)
    assert (summary["model_frames"], summary["predicted_frames"]) == (observed, predicted), summary
    assert summary["dropped_frames"] == 0


def test_cameras_per_worker_is_checked_against_what_the_schedule_permits(tmp_path):
    cameras = [(f"c{i}", "x.mp4") for i in range(12)]
    assert load_fleet_config(write_scheduled_config(tmp_path, cameras, 8, "on_change")).cameras_per_worker == 8
    with pytest.raises(ValueError, match=r"cameras_per_worker must be an int in \[1, 8\] \(4 x the pipeline's "
                                         r"max_cameras 2 under its schedule on_change\), got 9"):
        load_fleet_config(write_scheduled_config(tmp_path, cameras, 9, "on_change"))
    with pytest.raises(ValueError, match=r"cameras_per_worker must be an int in \[1, 2\] \(the pipeline's max_cameras, "
                                         r"the engines' max batch; a pipeline \"schedule\": \"on_change\" serves more\)"):
        load_fleet_config(write_scheduled_config(tmp_path, cameras, 3, "every_frame"))
    with pytest.raises(ValueError, match="pipeline.schedule"):
        load_fleet_config(write_scheduled_config(tmp_path, cameras, 3, {"mode": "sometimes"}))
