"""The serve replica's round batcher (segpost.serve.rounds): a round waits for frames the replica
has received and is still decoding, never for frames nobody sent, and at most about a round."""
import asyncio
import concurrent.futures
import time

import numpy as np
import pytest

from segpost.serve.rounds import RoundBatcher


@pytest.fixture
def rounds():
    """A batcher of rounds of at most 4 frames that take 50 ms; records each round's frames. Third:
    `direct(frames)`, the same work on the same executor without the batcher, a round's time on
    this machine now (the baseline that time bounds are ratios of: CI is a loaded 2-core box)."""
    ran = []

    def work(frames):
        ran.append(list(frames))
        time.sleep(0.05)
        return [f"answer {f}" for f in frames]

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def direct(frames):
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(executor, work, frames)
        return time.monotonic() - started

    yield RoundBatcher(executor, work, max_batch=4, wait_s=0.005), ran, direct
    executor.shutdown()


def test_frames_still_decoding_join_the_round_instead_of_missing_it(rounds):
    batcher, ran, _ = rounds

    async def request(frame, decode_s):
        batcher.expect(1)
        await asyncio.sleep(decode_s)   # checked and decoded: later than the first frame's wait
        batcher.arrived(1)
        return await batcher.submit(frame)

    async def main():
        await batcher.submit("warm")   # a round of 50 ms: the most a round then waits for coming frames
        return await asyncio.gather(*(request(f, 0.01 * f) for f in range(4)))

    assert asyncio.run(main()) == [f"answer {f}" for f in range(4)]
    assert ran == [["warm"], [0, 1, 2, 3]], ran   # without the wait: [0] alone, then the others


def test_a_lone_frame_does_not_wait_for_frames_nobody_sent(rounds):
    batcher, ran, direct = rounds

    async def main():
        lone, baseline = [], []
        for i in range(5):   # interleaved, so that both see the same load
            baseline.append(await direct([f"direct {i}"]))
            started = time.monotonic()
            assert await batcher.submit(f"alone {i}") == f"answer alone {i}"
            lone.append(time.monotonic() - started)
        return float(np.median(lone)), float(np.median(baseline))

    lone, baseline = asyncio.run(main())
    assert [r for r in ran if r[0].startswith("alone")] == [[f"alone {i}"] for i in range(5)]
    print(f"a lone frame answered in {lone * 1e3:.0f} ms; its round alone takes {baseline * 1e3:.0f} ms")
    # Its round and batch_wait (5 ms), not a wait for company: a 900 ms wait would be ~19x.
    assert lone < 2.0 * baseline


def test_the_wait_for_coming_frames_is_bounded_and_full_rounds_go_at_once(rounds):
    batcher, ran, direct = rounds
    batcher.expect(100)   # frames announced that never arrive (a request still decoding, say)

    async def main():
        baseline = [await direct(["direct"]) for _ in range(3)]
        del ran[:]
        started = time.monotonic()
        answers = await asyncio.gather(*(batcher.submit(f) for f in range(6)))   # 4 go at once, 2 wait
        return answers, time.monotonic() - started, float(np.median(baseline))

    answers, seconds, baseline = asyncio.run(main())
    assert answers == [f"answer {f}" for f in range(6)]
    assert ran == [[0, 1, 2, 3], [4, 5]], ran
    # Two rounds and, between them, a wait of at most about a round for the frames that never come.
    assert seconds < 5 * baseline, (seconds, baseline)


def test_a_failed_round_fails_its_frames_and_the_next_round_runs():
    calls = []

    def work(frames):
        calls.append(list(frames))
        if len(calls) == 1:
            raise RuntimeError("engine failed")
        return list(frames)

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    batcher = RoundBatcher(executor, work, max_batch=2, wait_s=0.001)

    async def main():
        with pytest.raises(RuntimeError, match="engine failed"):
            await asyncio.gather(batcher.submit("a"), batcher.submit("b"))
        return await batcher.submit("c")

    assert asyncio.run(main()) == "c"
    executor.shutdown()
