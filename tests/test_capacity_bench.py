"""bench/capacity.py (issue 32's capacity benchmark) on the CPU with the synthetic engines: both
schedules run, and the counts it reports hold together (every frame a model round took is one
model record; on_change's other records are predicted). The capacities themselves are the GPU's
to measure: on a loaded CI box the rounds' times say little."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_capacity_synthetic_both_schedules_counts_agree(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "capacity.py"), "--backend", "synthetic",
                           "--out", str(out), "--seconds", "2", "--warmup", "1", "--batch", "2",
                           "--every-frame-cameras", "2", "--on-change-cameras", "4", "--output-fps", "2",
                           "--max-seconds", "50"],
                          capture_output=True, text=True, timeout=110, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((out / "capacity.json").read_text())
    assert (out / "capacity.md").read_text().count("| every_frame |") == 1
    rows = {r["schedule"]: r for r in result["rows"]}
    assert set(rows) == {"every_frame", "on_change"} and len(result["rows"]) == 2
    for schedule, row in rows.items():
        assert "error" not in row, row
        # Every frame a model round took is one model record, nothing else is.
        assert row["model_records_all"] == row["model_round_frames_all"] > 0, row
        assert row["model_records"] <= row["model_records_all"] and row["model_rounds"] >= 1
        assert len(row["records_per_s"]) == row["cameras"]
        # A record past a window's edge (a round that caught up on a paced camera) is the only slack.
        assert 0 <= row["records_per_s_min"] <= row["records_per_s_mean"] <= result["fps"] + 1 / row["seconds"]
        assert abs(row["model_frames_per_s"] * row["seconds"] - row["model_records"]) < 1e-6
        total = row["model_records"] + row["predicted_records"]
        assert abs(row["records_per_s_mean"] * row["cameras"] * row["seconds"] - total) < 1e-6
        assert abs(row["predicted_share"] - row["predicted_records"] / total) < 1e-9
        assert row["staleness_p50_s"] > 0 and row["staleness_p95_s"] >= row["staleness_p50_s"]
        assert row["served"] == (row["records_per_s_min"] >= 0.95 * 2 and
                                 (row["staleness_p95_worst_camera_s"] or float("inf")) <= 1.0)
        assert row["output_fps_met"] == 0 or abs(row["output_fps_met"] * 0.95 - row["records_per_s_min"]) < 1e-9
        assert not row["served"] or row["output_fps_met"] >= 2
    every, change = rows["every_frame"], rows["on_change"]
    assert every["predicted_records_all"] == 0 and every["predicted_share"] == 0 and not every["tiers"]
    # on_change: 4 cameras on a batch of 2 over a mostly static scene: the model's records are its
    # own counter's, the rest predicted.
    assert change["batch"] == 2 and change["scheduler"]["model_frames"] == change["model_records_all"]
    assert change["scheduler"]["predicted_frames"] == change["predicted_records_all"] > 0
    assert change["predicted_share"] > 0 and sum(change["tiers"].values()) == change["model_round_frames"]
    served = {s: r["cameras"] for s, r in rows.items() if r["served"]}
    assert result["largest_served"] == served
