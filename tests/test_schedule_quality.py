"""on_change on a small site scene (CPU, synthetic engines, 25 fps): every frame gets a record,
the model sees the camera only while something moves (and every max_interval), and the output
stream scores as running the model on every frame (mask HOTA, TrackEval)."""
import os
import sys

import pytest

pytest.importorskip("trackeval", reason="TrackEval scores the streams: pip install 'segpost[test]' (.ci/run does)")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))

from schedule_quality import evaluate  # noqa: E402
from segpost.schedule import ScheduleConfig  # noqa: E402
from segpost.synthetic.site import SITE_FPS  # noqa: E402


def test_static_scene_costs_fewer_model_frames_for_the_same_hota():
    rows = evaluate(("static",), 8, [0], 1, ScheduleConfig(mode="on_change", max_interval=2.0, output_fps=SITE_FPS))
    every, change = (next(r for r in rows if r["mode"] == m) for m in ("every_frame", "on_change"))
    assert every["model_frames_per_camera_s"] == SITE_FPS
    # 8 s: the third object moves for 4 s of them; the rest of the time nothing does.
    assert change["model_frames_per_camera_s"] <= 0.6 * SITE_FPS, change
    assert every["HOTA"] > 90 and change["HOTA"] >= every["HOTA"] - 1.0, (every, change)
    assert change["first_record_delay_p95"] <= every["first_record_delay_p95"] + 1
