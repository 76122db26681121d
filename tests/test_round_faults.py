"""A round that fails part-way (an engine's transient error) is abandoned, and the next works.

Before: with classes_per_call=1, an exception from the decoder on the second class left the
first class's Postprocessor holding its batch, and every later round raised "enqueue() called
twice" (with tracking, the tracker's round stayed open too): a camera site dark for good."""
import numpy as np
import pytest

from pipeline_cases import make_pipeline
from segpost.engines.base import EngineError
from segpost.service.runner import CameraRunner, RoundsFailing
from segpost.synthetic.engines import SyntheticDecoder, SyntheticVisionEncoder
from segpost.track import TrackerConfig
from pipeline_cases import geometry_for


class FlakyDecoder(SyntheticDecoder):
    """Raises on the decoder calls numbered in `fail_calls` (0-based, over the whole run)."""

    def __init__(self, *args, fail_calls=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_calls, self.enqueued = set(fail_calls), 0

    def enqueue(self, stream):
        call, self.enqueued = self.enqueued, self.enqueued + 1
        if call in self.fail_calls:
            raise EngineError(f"injected decoder failure on call {call}")
        return super().enqueue(stream)


def pipelines(track, fail_calls, classes=4, device="cpu"):
    geometry = geometry_for(device)
    engines = (SyntheticVisionEncoder(geometry, device=device), FlakyDecoder(geometry, device=device, fail_calls=fail_calls))
    config = dict(classes_per_call=1, track=TrackerConfig(min_hits=1) if track else None)
    flaky, scene = make_pipeline(device, cameras=3, classes=classes, engines=engines, **config)
    clean, _ = make_pipeline(device, cameras=3, classes=classes, **config)
    return flaky, clean, scene


def detections(result):
    return {camera: {name: (r.boxes.copy(), r.scores.copy(), None if r.track_ids is None else r.track_ids.copy())
                     for name, r in cr.by_class.items()} for camera, cr in result.cameras.items()}


def same(a, b):
    assert a.keys() == b.keys()
    for camera in a:
        for name in a[camera]:
            for x, y in zip(a[camera][name], b[camera][name]):
                if x is None or y is None:
                    assert x is None and y is None
                else:
                    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("track", [False, True], ids=["untracked", "tracked"])
def test_a_failed_round_is_abandoned_and_the_next_works(track, device):
    # 4 classes, one decoder call each: round 1's second call (call 5 overall) raises.
    flaky, clean, scene = pipelines(track, fail_calls={5}, device=device)
    frames_by_round = [scene.render(r)[0] for r in range(4)]
    for r, frames in enumerate(frames_by_round):
        expected = clean.process(frames) if r != 1 else None
        if r == 1:
            with pytest.raises(EngineError, match="injected"):
                flaky.process(frames)
            clean_skip = clean.process(frames)   # keeps the tracks' ages alike: the clean one saw the frame
            del clean_skip
            continue
        got = flaky.process(frames)
        if not track or r == 0:
            same(detections(got), detections(expected))
        else:   # the flaky tracker missed a frame: the same objects, still tracked, ids of round 0
            for camera, by_class in detections(got).items():
                for name, (boxes, scores, ids) in by_class.items():
                    assert len(ids) == len(expected.cameras[camera].by_class[name])
                    assert (ids >= 1).all(), f"round {r}: camera {camera} {name}: untracked detections {ids}"
    assert flaky._rounds == 4   # the failed round kept its index


def test_a_failure_in_collect_is_abandoned_too(monkeypatch):
    flaky, _, scene = pipelines(True, fail_calls=())
    frames = scene.render(0)[0]
    flaky.process(frames)

    def broken(*args, **kwargs):
        raise RuntimeError("injected update failure")

    monkeypatch.setattr(flaky.tracker, "track_round", broken)
    with pytest.raises(RuntimeError, match="injected"):
        flaky.process(frames)
    monkeypatch.undo()
    result = flaky.process(frames)
    assert all((r.track_ids >= 1).all() for cr in result.cameras.values() for r in cr.by_class.values())


class ListSink:
    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)

    def flush(self):
        pass

    def close(self):
        pass

    def stats(self):
        return {}


class Frames:
    """A file-like CameraSource stand-in: `count` frames of one camera of the scene, then finished."""

    def __init__(self, scene, camera, count):
        self.scene, self.camera, self.count, self.index = scene, camera, count, 0
        self.shown_url, self.decoder_description, self.error, self.stats = f"cam{camera}", "", None, {}

    @property
    def finished(self):
        return self.index >= self.count

    def read(self):
        if self.finished:
            return None
        from types import SimpleNamespace

        frame = SimpleNamespace(image=self.scene.render(self.index)[0][self.camera], index=self.index, pts=None)
        self.index += 1
        return frame

    def drain_events(self):
        return []

    def close(self):
        pass


def run_with(fail_calls, frames=6, max_failed_rounds=10):
    flaky, _, scene = pipelines(True, fail_calls=fail_calls)
    sink = ListSink()
    runner = CameraRunner(flaky, [(c, Frames(scene, c, frames)) for c in range(3)], [sink], masks="none",
                          log=lambda m: None, max_failed_rounds=max_failed_rounds)
    return runner, sink


def test_the_runner_writes_a_failed_rounds_frames_off_and_goes_on():
    runner, sink = run_with(fail_calls={4 * 2 + 1})   # round 2's second class
    runner.run()
    per_camera = {c: [r["frame_index"] for r in sink.records if r.get("camera") == c and
                      ("detections" in r or r.get("event") == "skipped")] for c in range(3)}
    assert per_camera == {c: list(range(6)) for c in range(3)}, per_camera   # every frame once, in order
    skipped = [r for r in sink.records if r.get("event") == "skipped"]
    assert [r["frame_index"] for r in skipped] == [2, 2, 2]
    assert all("injected decoder failure" in r["message"] for r in skipped)
    assert runner.failed_rounds == 1 and runner.rounds == 6


def test_the_runner_gives_up_after_failures_in_a_row():
    runner, sink = run_with(fail_calls=set(range(4, 400)), max_failed_rounds=3)
    with pytest.raises(RoundsFailing, match="3 rounds failed in a row"):
        runner.run()
    assert runner.failed_rounds == 3
