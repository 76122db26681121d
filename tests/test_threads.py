"""Thread safety as documented: one Postprocessor per thread (and per stream on the GPU); two of
them running at once in two threads give the same results as one at a time."""
import threading

import numpy as np
import pytest

import segpost
from cases import assert_same_results, make_case

ROUNDS = 10


def options(case):
    return dict(max_frames=case.num_frames, capacity=64, score_threshold=case.score_threshold,
                max_frame_size=(max(h for h, _ in case.frame_sizes), max(w for _, w in case.frame_sizes)))


def run_in_threads(jobs):
    """jobs: callables run ROUNDS times each, concurrently; re-raises the first failure."""
    errors = []
    start = threading.Barrier(len(jobs))

    def worker(job):
        try:
            start.wait()
            for _ in range(ROUNDS):
                job()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


CASES = [dict(num_frames=4, frame_sizes=[(480, 640), (7, 5)], seed=1),
         dict(num_frames=3, frame_sizes=[(720, 1280)], seed=2, dtype=np.float16)]


def test_two_cpu_postprocessors_in_two_threads():
    cases = [make_case(**c) for c in CASES]
    expected = [segpost.Postprocessor(device="cpu", **options(c)).run(c.logits, c.presence, c.boxes, c.masks,
                                                                     c.frame_sizes).copy() for c in cases]

    def job(case, want):
        pp = segpost.Postprocessor(device="cpu", **options(case))
        return lambda: assert_same_results(pp.run(case.logits, case.presence, case.boxes, case.masks,
                                                  case.frame_sizes), want)

    run_in_threads([job(c, e) for c, e in zip(cases, expected)])


@pytest.mark.gpu
def test_two_gpu_postprocessors_on_two_streams_in_two_threads(cp):
    cases = [make_case(**c) for c in CASES]
    device_inputs = [[None if a is None else cp.asarray(a) for a in (c.logits, c.presence, c.boxes, c.masks)]
                     for c in cases]
    expected = [segpost.Postprocessor(device="cuda", **options(c)).run(*d, c.frame_sizes).copy()
                for c, d in zip(cases, device_inputs)]
    cp.cuda.Device().synchronize()

    def job(case, inputs, want):
        pp = segpost.Postprocessor(device="cuda", **options(case))
        stream = cp.cuda.Stream(non_blocking=True)
        return lambda: assert_same_results(pp.run(*inputs, case.frame_sizes, stream=stream), want)

    run_in_threads([job(c, d, e) for c, d, e in zip(cases, device_inputs, expected)])
