"""``segpost demo --zones``: the saved mosaic draws each camera's zones and lights up the ones a
track is inside (checked on the image's pixels against the same run without zones)."""
import json

import numpy as np
import pytest

from segpost.cli import main

cv2 = pytest.importorskip("cv2", reason="the demo draws with OpenCV: pip install 'segpost[test]' (.ci/run does)")

# Fractions of the frame; the demo's 320x240 camera fills a 480x270 tile of the mosaic.
ZONES = {"0": [{"name": "left", "polygon": [[0.02, 0.02], [0.48, 0.02], [0.48, 0.98], [0.02, 0.98]]},
               {"name": "right", "polygon": [[0.52, 0.02], [0.98, 0.02], [0.98, 0.98], [0.52, 0.98]]}]}
TILE = (270, 480)


def demo(tmp_path, name, *extra):
    image, summary = tmp_path / f"{name}.png", tmp_path / f"{name}.json"
    assert main(["demo", "--device", "cpu", "--cameras", "1", "--classes", "1", "--objects-per-class", "1",
                 "--size", "320x240", "--frames", "30", "--seed", "3", "--track", "--save", str(image),
                 "--json", str(summary), *extra]) == 0
    return cv2.imread(str(image)), json.loads(summary.read_text())


def interior(polygon, margin=12):
    """Rows and columns of the tile well inside a rectangle zone (off its outline and label)."""
    (x0, y0), (x1, y1) = polygon[0], polygon[2]
    h, w = TILE
    return slice(int(y0 * h) + margin + 10, int(y1 * h) - margin), slice(int(x0 * w) + margin, int(x1 * w) - margin)


def test_demo_draws_zones_and_lights_the_occupied_one(tmp_path):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(ZONES))
    plain, _ = demo(tmp_path, "plain")
    drawn, summary = demo(tmp_path, "zones", "--zones", str(path))
    occupied = summary["zones"]["occupied_last_round"]["0"]
    assert summary["zones"]["events"].get("zone_entered", 0) >= 1
    # The scene's one object is in exactly one of the two halves at the end (seed 3, 30 frames).
    assert len(occupied) == 1, occupied
    h, w = TILE
    for zone in ZONES["0"]:
        rows, cols = interior(zone["polygon"])
        # Same scene, same tracks: inside a zone the two images differ only where it is lit.
        diff = np.abs(drawn[rows, cols].astype(int) - plain[rows, cols].astype(int)).sum(axis=2)
        changed = float(np.mean(diff > 30))
        if zone["name"] in occupied:
            assert changed > 0.9, (zone["name"], changed)     # filled: lit
        else:
            assert changed < 0.01, (zone["name"], changed)    # untouched inside
        # The outline: the zone's left edge column differs from the plain image along most of its height.
        x = int(round(zone["polygon"][0][0] * w))
        edge = np.abs(drawn[int(0.2 * h):int(0.8 * h), x].astype(int) - plain[int(0.2 * h):int(0.8 * h), x].astype(int))
        assert np.mean(edge.sum(axis=1) > 30) > 0.8, zone["name"]


def test_demo_bad_zones_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps({"0": [{"name": "thin", "polygon": [[0, 0], [1, 1]]}]}))
    assert main(["demo", "--device", "cpu", "--cameras", "1", "--frames", "2", "--zones", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'thin'" in err and "Traceback" not in err
