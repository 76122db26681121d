"""segpost vs the users' old paths (v2, v3) vs PyTorch, on the same inputs in the same run.

Run: python -m pytest bench --benchmark-json=bench.json   (then bench/report.py bench.json)
"""
from __future__ import annotations

import numpy as np
import pytest

import segpost
from inputs import make_outputs
from old_ways import V2, V3, TorchBatched, TorchPerFrame

# (frames, kept masks per class-batch, (H, W)): a kept sweep at 1080p, a size sweep, a frames sweep.
CONFIGS = [
    (8, 0, (1080, 1920)), (8, 8, (1080, 1920)), (8, 40, (1080, 1920)), (8, 200, (1080, 1920)),
    (8, 1600, (480, 640)),
    (8, 40, (480, 640)), (8, 40, (2160, 3840)),
    (1, 5, (1080, 1920)), (16, 80, (1080, 1920)),
]
APPROACHES = ["segpost_fp32", "segpost_fp16", "segpost_packed_fp16", "segpost_rle_fp16", "segpost_rle_dicts_fp16",
              "segpost_crop_fp16", "segpost_lowres_fp16",
              "segpost_device_fp16", "v2", "v3", "torch_per_frame",
              "torch_batched", "torch_per_frame_device"]
SLOW = {"v2", "v3", "torch_per_frame", "torch_batched"}

_cache: dict = {}


def outputs_for(cp, frames, kept, size, dtype):
    key = (frames, kept, size, np.dtype(dtype).str)
    if key not in _cache:
        _cache.clear()
        cp.get_default_memory_pool().free_all_blocks()
        _cache[key] = make_outputs(cp, frames, kept, size, mask_dtype=dtype)
    return _cache[key]


def build(approach, cp, out):
    frames, kept = len(out.frame_sizes), out.kept
    if approach.startswith("segpost"):
        kind = (segpost.OutputKind.DEVICE_FULL if "device" in approach else
                segpost.OutputKind.PACKED if "packed" in approach else
                segpost.OutputKind.RLE if "rle" in approach else
                segpost.OutputKind.CROP if "crop" in approach else
                segpost.OutputKind.LOWRES if "lowres" in approach else segpost.OutputKind.FULL)
        pp = segpost.Postprocessor(max_frames=frames, capacity=max(kept, 1), max_frame_size=out.frame_sizes[0],
                                   score_threshold=out.threshold, output=kind, device="cuda")
        stream = cp.cuda.get_current_stream()

        def run(o):
            result = pp.run(o.logits, o.presence, o.boxes, o.masks, o.frame_sizes, stream=stream)
            if "dicts" in approach:  # the pycocotools dicts too, not only the run lengths
                [m for frame in result for m in frame.masks]
            return result

        run.postprocessor = pp
        return run
    if approach == "v2":
        return V2(cp, out)
    if approach == "v3":
        return V3(cp, out, capacity=kept)
    torch = pytest.importorskip("torch")
    if approach == "torch_per_frame":
        return TorchPerFrame(torch, out)
    if approach == "torch_per_frame_device":
        return TorchPerFrame(torch, out, to_host=False)
    return TorchBatched(torch, out)


def count(result) -> int:
    if isinstance(result, segpost.BatchResult):
        return result.num_detections
    if isinstance(result, tuple):  # torch batched, on device
        return len(result[1])
    return sum(len(scores) for _, scores, _ in result)


@pytest.mark.parametrize("approach", APPROACHES)
@pytest.mark.parametrize("frames,kept,size", CONFIGS, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_postprocess(benchmark, approach, frames, kept, size):
    import cupy as cp

    dtype = np.float16 if "fp16" in approach else np.float32
    out = outputs_for(cp, frames, kept, size, dtype)
    fn = build(approach, cp, out)
    assert count(fn(out)) == kept, f"{approach} found a different number of detections"
    if hasattr(fn, "postprocessor"):
        assert not fn(out).mask_overflow, "RLE counts did not fit: the figure would not be a full result"
        benchmark.extra_info["host_bytes"] = fn.postprocessor.last_host_bytes
    rounds = 3 if (approach in SLOW and kept >= 200) else 10 if approach in SLOW else 50
    benchmark.extra_info.update(approach=approach, frames=frames, kept=kept, height=size[0], width=size[1],
                                mask_dtype=np.dtype(dtype).name)
    benchmark.pedantic(fn, args=(out,), rounds=rounds, iterations=1, warmup_rounds=2)


def test_bandwidth(benchmark):
    """Device memory and pinned PCIe bandwidths of this machine, for the floor in the report."""
    import cupy as cp

    n = 1 << 30
    src, dst = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
    pinned = cp.cuda.alloc_pinned_memory(n)
    start, stop = cp.cuda.Event(), cp.cuda.Event()

    def timed(fn, reps=10):
        fn()
        start.record()
        for _ in range(reps):
            fn()
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop) / 1e3 / reps

    hbm = 2 * n / timed(lambda: dst.__setitem__(Ellipsis, src))  # bytes read + written
    d2h = n / timed(lambda: cp.cuda.runtime.memcpyAsync(pinned.ptr, src.data.ptr, n,
                                                          cp.cuda.runtime.memcpyDeviceToHost, 0))
    benchmark.extra_info.update(hbm_bytes_per_s=hbm, d2h_bytes_per_s=d2h)
    benchmark.pedantic(lambda: None, rounds=1)
