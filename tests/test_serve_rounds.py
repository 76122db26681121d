"""The serve replica's round batcher (segpost.fleet.rounds): a round waits for frames the replica
has received and is still decoding, never for frames nobody sent, and at most about a round."""
import asyncio
import concurrent.futures
import time

import pytest

from segpost.fleet.rounds import RoundBatcher


@pytest.fixture
def rounds():
    """A batcher of rounds of at most 4 frames that take 50 ms; records each round's frames."""
    ran = []

    def work(frames):
        ran.append(list(frames))
        time.sleep(0.05)
        return [f"answer {f}" for f in frames]

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    yield RoundBatcher(executor, work, max_batch=4, wait_s=0.005), ran
    executor.shutdown()


def test_frames_still_decoding_join_the_round_instead_of_missing_it(rounds):
    batcher, ran = rounds

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
    batcher, ran = rounds

    async def main():
        started = time.monotonic()
        answer = await batcher.submit("alone")
        return answer, time.monotonic() - started

    answer, seconds = asyncio.run(main())
    assert answer == "answer alone" and ran == [["alone"]]
    assert seconds < 0.05 + 1.0   # its round (50 ms) plus scheduling slack on a loaded machine, not a wait


def test_the_wait_for_coming_frames_is_bounded_and_full_rounds_go_at_once(rounds):
    batcher, ran = rounds
    batcher.expect(100)   # frames announced that never arrive (a request still decoding, say)

    async def main():
        first = await asyncio.gather(*(batcher.submit(f) for f in range(6)))   # 4 go at once, 2 wait
        return first

    started = time.monotonic()
    assert asyncio.run(main()) == [f"answer {f}" for f in range(6)]
    assert ran == [[0, 1, 2, 3], [4, 5]], ran
    assert time.monotonic() - started < 5.0   # bounded by about a round's time, not by the missing frames


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
