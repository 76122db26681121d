"""Faults injected at random, invariants checked (tests/faults/): seeded histories of `segpost run`
and `segpost fleet` (real processes, real local Ray, real signals, a real file-size limit) with
engine exceptions and hangs, worker, sink and driver kills, a full disk, a video that vanishes
for a while and SIGTERM to every process, each checked for: every (camera, frame) of a file
camera written once and in order, track ids never reused, every track_started ended exactly once,
a finished camera not reopened, no stuck run, a clean exit within the drain time after SIGTERM.

A failing history prints its seed, its faults and when they struck. Replay it (or any seeds):
    SEGPOST_FAULT_SEED=N python -m pytest tests/test_faults.py -k "fleet_histories" -s
bench/fault_histories.py runs hundreds. The checker's own tests feed it hand-made bad histories.
"""
import json
import os
import time

import numpy as np
import pytest

from faults.check import Expect, check_camera, read_records
from faults.history import ALL_KINDS, FLEET_KINDS, RUN_KINDS, generate
from segpost.config import build_from_config
from segpost.engines.base import EngineError

cv2 = pytest.importorskip("cv2", reason="the fault histories' videos are written by OpenCV (pip install "
                                        "segpost[test]; .ci/run does)")

# Fixed seeds, chosen so that together they strike with every fault kind (checked below).
RUN_SEEDS = [6, 8, 39]
FLEET_SEEDS = [23, 76]


def _seeds(fixed):
    chosen = os.environ.get("SEGPOST_FAULT_SEED")
    return [int(s) for s in chosen.split(",")] if chosen else fixed


# -- the checker, fed hand-made histories ----------------------------------------------------

def frame(i, ids=(), round_=None, cls="red"):
    return {"round": i if round_ is None else round_, "camera": 0, "frame_index": i,
            "detections": [{"class": cls, "track_id": t} for t in ids]}


def event(kind, **details):
    return {"event": kind, "camera": 0, **details}


def good_history():
    records = [frame(0, [1]), frame(1, [1, 2]), frame(2, [1, 2]), event("track_started", track_id=1),
               event("track_started", track_id=2), frame(3, [2]), event("track_ended", track_id=1),
               frame(4, [2]), event("track_ended", track_id=2), event("finished", frames=5)]
    return records


def kinds(records, **expect):
    return sorted({v.kind for v in check_camera(0, records, Expect(**expect))})


def test_the_checker_passes_a_good_history():
    assert kinds(good_history()) == []


@pytest.mark.parametrize("mutate, kind", [
    (lambda r: r.insert(3, frame(2, [1, 2])), "frame_repeated"),
    (lambda r: r.__setitem__(1, frame(1, [1, 2], round_=0)) or r.insert(2, frame(0, [1])), "frame_repeated"),
    (lambda r: (r.__setitem__(1, r[2]), r.__setitem__(2, frame(1, [1, 2]))), "frame_out_of_order"),
    (lambda r: r.pop(1), "frame_missing"),                                          # a gap
    (lambda r: r.pop(), "frame_missing"),                                           # never finished
    (lambda r: r.__setitem__(-1, event("finished", frames=9)), "frame_missing"),    # finished early
    (lambda r: r.insert(5, event("track_started", track_id=1)), "track_restarted"),
    (lambda r: r.insert(8, frame(5, [1])) or r.__setitem__(-1, event("finished", frames=6)), "track_id_reused"),
    (lambda r: r.__setitem__(5, frame(3, [2, 1], round_=0)), "track_id_reused"),   # a new worker hands out 1 again
    (lambda r: r.__setitem__(2, frame(2, [1, 2], cls="green")), "track_id_reused"),   # one id, two classes
    (lambda r: r.pop(6), "track_not_ended"),
    (lambda r: r.insert(7, event("track_ended", track_id=1)), "track_ended_twice"),
    (lambda r: r.insert(7, event("track_ended", track_id=9)), "track_end_without_start"),
    (lambda r: r.append(event("track_ended", track_id=2)), "reopened_after_finished"),
    (lambda r: r.append(frame(5)), "reopened_after_finished"),
    (lambda r: r.append(event("finished", frames=5)), "reopened_after_finished"),
])
def test_the_checker_finds_each_planted_violation(mutate, kind):
    records = good_history()
    mutate(records)
    assert kind in kinds(records), records


def test_the_checker_excuses_only_what_history_allows():
    records = good_history()
    records.insert(1, event("error", frame_index=1))
    records.pop(2)                                          # frame 1 lost, and an error event says so
    assert "frame_missing" not in kinds(records)
    unfinished = good_history()[:-1]
    assert kinds(unfinished, complete=False) == []           # a run stopped early need not be complete
    assert kinds(good_history()[:3], complete=False, tracks_ended=False) == []
    assert kinds(good_history()[:3], complete=False) == []   # no track had started yet
    assert kinds(good_history()[:5], complete=False) == ["track_not_ended"]


def test_read_records_reports_a_torn_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(frame(0)) + "\n" + '{"round": 1, "cam')
    by_camera, torn = read_records([str(path)])
    assert [v.kind for v in torn] == ["torn_line"] and len(by_camera[0]) == 1


# -- the engines' fault hook -------------------------------------------------------------------

def engines(faults):
    return build_from_config({"backend": "synthetic", "classes": ["red", "green"], "faults": faults}, ".", "cpu",
                             where="c.json")


def zero_tensors(engine):
    return {name: np.zeros(spec.with_batch(1), spec.dtype) for name, spec in engine.tensors.items()}


def calls_that_raise(engine, n):
    from segpost.synthetic.engines import INJECTED

    tensors = zero_tensors(engine)
    raised = []
    for call in range(n):
        try:
            engine.execute(tensors, 0)
        except EngineError as exc:
            assert INJECTED in str(exc) and f"call {call}" in str(exc)
            raised.append(call)
    return raised


def test_faults_raise_at_their_calls_and_replay_by_seed():
    vision_encoder, decoder, _ = engines({"raise": [[2, "decoder"], [4, "decoder"], [1, "vision_encoder"]]})
    assert calls_that_raise(decoder, 6) == [2, 4] and calls_that_raise(vision_encoder, 3) == [1]
    drawn = [calls_that_raise(engines({"raise_probability": 0.3, "seed": 7})[1], 40) for _ in range(2)]
    assert drawn[0] == drawn[1] and 4 <= len(drawn[0]) <= 20
    assert calls_that_raise(engines({"raise_probability": 0.3, "seed": 8})[1], 40) != drawn[0]


def test_a_hang_holds_the_vision_encoder_call_it_names():
    vision_encoder = engines({"hang": [[1, 0.4]]})[0]
    tensors = zero_tensors(vision_encoder)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        vision_encoder.execute(tensors, 0)
        times.append(time.perf_counter() - started)
    assert times[1] >= 0.4 and times[1] > 2 * max(times[0], times[2])


@pytest.mark.parametrize("raw, words", [
    ({"backend": "onnx", "classes": {"a": "a.npz"}, "faults": {}}, "faults is for the synthetic backend only"),
    ({"backend": "synthetic", "classes": ["red"], "faults": {"raise": [[1, "encoder"]]}}, "c.json: faults must be"),
    ({"backend": "synthetic", "classes": ["red"], "faults": {"hang": [[1, -2]]}}, "c.json: faults must be"),
    ({"backend": "synthetic", "classes": ["red"], "faults": {"odds": 1}}, "c.json: faults must be"),
    ({"backend": "synthetic", "classes": ["red"], "faults": {"raise_probability": 2}}, "c.json: faults must be"),
])
def test_a_bad_faults_key_is_a_one_line_error_naming_it(raw, words):
    with pytest.raises(ValueError) as error:
        build_from_config(raw, ".", "cpu", where="c.json")
    assert words in str(error.value) and "\n" not in str(error.value)


# -- histories -------------------------------------------------------------------------------------

def test_the_fixed_seeds_strike_with_every_fault_kind():
    planned = {f.kind for s in RUN_SEEDS for f in generate(s, "run").faults}
    planned |= {f.kind for s in FLEET_SEEDS for f in generate(s, "fleet").faults}
    assert planned == set(ALL_KINDS) == set(RUN_KINDS) | set(FLEET_KINDS)
    assert generate(5, "fleet") == generate(5, "fleet") and generate(5, "fleet") != generate(6, "fleet")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return tmp_path_factory.mktemp("fault-videos")


def run_and_check(command, seed, tmp_path, videos):
    from faults.driver import run_history

    outcome = run_history(generate(seed, command), tmp_path / "history", videos)
    print(outcome.report())
    assert outcome.fired_kinds, f"no fault struck:\n{outcome.report()}"
    assert not outcome.violations, f"\n{outcome.report()}\n---- its log, last lines:\n{outcome.log_tail[-2500:]}"


@pytest.mark.parametrize("seed", _seeds(RUN_SEEDS))
def test_run_histories(seed, tmp_path, videos):
    run_and_check("run", seed, tmp_path, videos)


@pytest.mark.parametrize("seed", _seeds(FLEET_SEEDS))
def test_fleet_histories(seed, tmp_path, videos):
    pytest.importorskip("ray", reason="the fleet runs on Ray: pip install 'segpost[fleet]' (.ci/run does)")
    run_and_check("fleet", seed, tmp_path, videos)
