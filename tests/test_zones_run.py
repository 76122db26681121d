"""``segpost run --zones`` / the config's "zones" key on video files: zone_entered / zone_left /
zone_count lines beside the track events, the zones of a finished file left before its
"finished" line, and one-line errors naming the zone for bad zone files."""
import json
import shutil
import subprocess

import pytest

from segpost.cli import main
from segpost.synthetic.scene import Scene

pytest.importorskip("cv2", reason="segpost run decodes with OpenCV: pip install 'segpost[test]' (.ci/run does)")

# Camera 0: the frame's left half, every class; camera 1: the top half, red only.
ZONES = {"0": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
         "1": [{"name": "top", "polygon": [[0, 0], [1, 0], [1, 0.5], [0, 0.5]], "classes": ["red"]}]}
SIZE = (240, 320)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg program makes the test videos (apt-get install ffmpeg; .ci/run does)")
    scene = Scene([SIZE], num_classes=2, seed=5)
    frames = [scene.render(r)[0][0] for r in range(12)]
    # Lossless (FFV1): H.264's chroma blur would make the small synthetic decoder see extra shades.
    path = str(tmp_path_factory.mktemp("zones") / "scene.mkv")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-r",
                    "10", "-i", "-", "-c:v", "ffv1", path], input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def run(tmp_path, video, *extra, config_extra=None, code=0):
    config = {"backend": "synthetic", "classes": ["red", "green"], "max_frame_size": [480, 640], **(config_extra or {})}
    path, out = tmp_path / "segpost.json", tmp_path / f"out{len(list(tmp_path.glob('out*')))}.jsonl"
    path.write_text(json.dumps(config))
    assert main(["run", "--device", "cpu", "--decode", "cpu", "--config", str(path), "--source", video, "--source",
                 video, "--out", str(out), "--masks", "none", *extra]) == code
    if code:
        return None
    with open(out) as f:
        return [json.loads(line) for line in f]


def box_share(box, zone):
    """The share of a box inside an axis-aligned zone polygon (fractions of the frame)."""
    h, w = SIZE
    (x0, y0), (x1, y1) = zone[0], zone[2]
    bx0, by0, bx1, by1 = box
    ix = max(0.0, min(bx1, x1 * w) - max(bx0, x0 * w))
    iy = max(0.0, min(by1, y1 * h) - max(by0, y0 * h))
    return ix * iy / max(1e-9, (bx1 - bx0) * (by1 - by0))


def check_zone_lines(lines):
    frames = [r for r in lines if "detections" in r]
    zone = [r for r in lines if r.get("event", "").startswith("zone_")]
    assert {r["event"] for r in zone} >= {"zone_entered", "zone_left", "zone_count"}
    for camera, (key, zones) in enumerate(sorted(ZONES.items())):
        spec = zones[0]
        mine = [r for r in zone if r["camera"] == camera]
        assert mine and all(r["zone"] == spec["name"] and r["source"].endswith("scene.mkv") for r in mine)
        entered = [r for r in mine if r["event"] == "zone_entered"]
        left = [r for r in mine if r["event"] == "zone_left"]
        for r in entered + left:
            assert {"camera", "zone", "class", "track_id", "frame", "frame_time", "time"} <= set(r)
            assert r["track_id"] >= 1 and 0 <= r["frame"] <= 11
        # Each entry has its exit by the end (the file's tracks end, so they leave their zones).
        assert sorted((r["track_id"], r["class"]) for r in entered) == sorted((r["track_id"], r["class"]) for r in left)
        # Which tracks entered follows the detections: boxes well inside in every frame entered,
        # boxes outside (or of a class the zone does not watch) never did.
        shares = {}
        for r in frames:
            if r["camera"] == camera:
                for d in r["detections"]:
                    watched = not spec.get("classes") or d["class"] in spec["classes"]
                    shares.setdefault(d["track_id"], []).append(box_share(d["box"], spec["polygon"]) if watched else 0.0)
        inside = {t for t, s in shares.items() if min(s) >= 0.6}
        outside = {t for t, s in shares.items() if max(s) <= 0.1}
        ids = {r["track_id"] for r in entered}
        assert inside and outside, shares   # the scene puts tracks on both sides of each zone
        assert inside <= ids and not outside & ids, (inside, outside, ids)
        # The zone exits of a finished file come after its track_ended lines, before "finished",
        # which stays the camera's last line.
        finished = next(i for i, r in enumerate(lines) if r.get("event") == "finished" and r["camera"] == camera)
        assert all(lines.index(r) < finished for r in mine)
        last_end = max(i for i, r in enumerate(lines) if r.get("event") == "track_ended" and r["camera"] == camera)
        assert all(lines.index(r) > last_end for r in left)
        assert not [r for r in lines[finished + 1:] if r.get("camera") == camera]


def test_run_zones_file_writes_zone_events(tmp_path, video):
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(ZONES))
    lines = run(tmp_path, video, "--zones", str(zones), "--track")
    check_zone_lines(lines)


def test_config_zones_key_turns_tracking_on(tmp_path, video):
    lines = run(tmp_path, video, config_extra={"zones": ZONES})
    check_zone_lines(lines)
    assert all(isinstance(d["track_id"], int) for r in lines if "detections" in r for d in r["detections"])


def test_zones_file_overrides_config(tmp_path, video):
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"0": [{"name": "everything", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}))
    lines = run(tmp_path, video, "--zones", str(zones), config_extra={"zones": ZONES})
    names = {r["zone"] for r in lines if r.get("event", "").startswith("zone_")}
    assert names == {"everything"}
    assert len([r for r in lines if r.get("event") == "zone_entered"]) == 4   # the scene's 4 objects


def test_no_zones_no_zone_lines(tmp_path, video):
    lines = run(tmp_path, video, "--track")
    assert not [r for r in lines if r.get("event", "").startswith("zone_")]


@pytest.mark.parametrize("zones, words", [
    ({"0": [{"name": "thin", "polygon": [[0, 0], [1, 1]]}]}, ["'thin'", "at least 3"]),
    ({"0": [{"name": "wide", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]}, ["'wide'", "outside [0, 1]"]),
    ({"0": [{"name": "bow", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}, ["'bow'", "self-intersecting"]),
    ({"0": [{"name": "dogs", "polygon": [[0, 0], [1, 0], [1, 1]], "classes": ["dog"]}]}, ["'dogs'", "'dog'"]),
    ({"2": [{"name": "far", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, ["'2'", "no camera"]),
])
def test_bad_zone_files_are_one_line_errors(tmp_path, video, capsys, zones, words):
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(zones))
    run(tmp_path, video, "--zones", str(path), code=2)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Traceback" not in err and all(w in err for w in words), err
    capsys.readouterr()
    run(tmp_path, video, config_extra={"zones": zones}, code=2)   # the config's key: the same checks
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert all(w in err for w in words), err


def test_bad_zone_rule(tmp_path, video, capsys):
    run(tmp_path, video, config_extra={"zones": ZONES, "zone_rule": "centre"}, code=2)
    assert "zone_rule" in capsys.readouterr().err


def test_zones_file_alone_turns_tracking_on(tmp_path, video):
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(ZONES))
    check_zone_lines(run(tmp_path, video, "--zones", str(zones)))   # no --track, no "track" in the config


def test_config_zones_key_loads_as_zone_set_with_tracking():
    from segpost.config import build_from_config
    from segpost.zones import ZoneSet

    _, _, config = build_from_config({"backend": "synthetic", "classes": ["red", "green"], "zones": ZONES,
                                      "zone_rule": "bottom_centre"}, ".", device="cpu")
    assert isinstance(config.zones, ZoneSet) and config.zones.cameras["1"][0].classes == ("red",)
    assert config.track is not None and config.zone_rule == "bottom_centre"
