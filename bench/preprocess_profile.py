"""Where GPU preprocessing time goes: 8 NV12 1080p frames in device memory -> [8, 3, 1008, 1008] fp16.

    python bench/preprocess_profile.py            # medians of 50 back-to-back runs, ms (JSON)
    ncu --metrics gpu__time_duration.sum -k regex:"aa_|bilinear" python bench/preprocess_profile.py --for-ncu

Rows: a whole run with its stream synchronize (what bench/test_bench_preprocess.py times), the
frames' validation on the host, the extension call alone, and the kernels between two CUDA events.
--for-ncu runs each filter twice on NV12 and on BGR device frames, for Nsight Compute to time each kernel.
"""
import argparse
import json
import time

import cupy as cp
import numpy as np

import segpost
from segpost import _ext
from segpost._arrays import DTYPE_CODES
from segpost.preprocess import RESIZE_FILTERS, checked_frame

FRAMES, SIZE, OUT = 8, (1080, 1920), (1008, 1008)


def median_ms(run, repeats=50):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def profile(frames):
    stream = cp.cuda.Stream(non_blocking=True)
    rows = {}
    for resize in RESIZE_FILTERS:
        pre = segpost.Preprocessor(max_frames=FRAMES, max_frame_size=SIZE, out_size=OUT, dtype=np.float16,
                                   device="cuda", resize=resize)
        for _ in range(5):
            pre.run(frames, stream=stream)
            stream.synchronize()
        specs = [checked_frame(f, SIZE).spec() for f in frames]
        out = pre.output[:FRAMES]
        args = (*OUT, DTYPE_CODES[np.dtype(np.float16)], RESIZE_FILTERS[resize],
                *pre._scratch(pre._taps.data.ptr, pre._horizontal.data.ptr), stream.ptr)

        def extension_call():
            _ext.preprocess_cuda(specs, out.data.ptr, *args)

        start, end, kernels = cp.cuda.Event(), cp.cuda.Event(), []
        for _ in range(50):
            start.record(stream)
            extension_call()
            end.record(stream)
            end.synchronize()
            kernels.append(cp.cuda.get_elapsed_time(start, end))
        rows[resize] = {
            "run + synchronize": median_ms(lambda: (pre.run(frames, stream=stream), stream.synchronize())),
            "validating the 8 frames (host)": median_ms(lambda: [checked_frame(f, SIZE) for f in frames]),
            "extension call + synchronize": median_ms(lambda: (extension_call(), stream.synchronize())),
            "kernels (CUDA events)": float(np.median(kernels)),
        }
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--for-ncu", action="store_true", help="run each filter twice on NV12 and BGR device frames")
    options = parser.parse_args()
    rng = np.random.default_rng(1)
    nv12 = [segpost.YuvFrame(cp.asarray(rng.integers(0, 256, (SIZE[0] * 3 // 2, SIZE[1]), dtype=np.uint8)))
            for _ in range(FRAMES)]
    if not options.for_ncu:
        print(json.dumps(profile(nv12), indent=1))
        return
    bgr = [cp.asarray(rng.integers(0, 256, SIZE + (3,), dtype=np.uint8)) for _ in range(FRAMES)]
    for resize in RESIZE_FILTERS:
        pre = segpost.Preprocessor(max_frames=FRAMES, max_frame_size=SIZE, out_size=OUT, dtype=np.float16,
                                   device="cuda", resize=resize)
        for frames in (nv12, bgr):
            for _ in range(2):
                pre.run(frames)
                cp.cuda.runtime.deviceSynchronize()


if __name__ == "__main__":
    main()
