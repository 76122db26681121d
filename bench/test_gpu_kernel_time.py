"""GPU time of the kernels alone (CUPTI through torch.profiler), 8 frames x 200 queries,
40 kept, 1920x1080, masks left on the device: segpost's fused kernels vs torch's unfused ops."""
from __future__ import annotations

import numpy as np
import pytest

import segpost
from inputs import make_outputs
from old_ways import TorchBatched


def kernel_us_per_call(torch, fn, calls=50) -> tuple:
    """(total, {kernel name: us}) per call, memcpy/memset excluded."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA" and "memcpy" not in e.name.lower()
               and "memset" not in e.name.lower()]
    per_kernel: dict = {}
    for e in kernels:
        per_kernel[e.name] = per_kernel.get(e.name, 0.0) + e.device_time / calls
    return sum(per_kernel.values()), per_kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_kernel_time(benchmark, dtype):
    torch = pytest.importorskip("torch")
    import cupy as cp

    out = make_outputs(cp, 8, 40, (1080, 1920), mask_dtype=dtype)
    pp = segpost.Postprocessor(max_frames=8, capacity=40, output=segpost.OutputKind.DEVICE_FULL, device="cuda")
    seg, seg_kernels = kernel_us_per_call(torch, lambda: pp.run(out.logits, out.presence, out.boxes, out.masks, out.frame_sizes))
    ref = TorchBatched(torch, out, to_host=False)
    tor, _ = kernel_us_per_call(torch, lambda: ref(out))
    benchmark.extra_info.update(segpost_kernel_us=seg, torch_kernel_us=tor, mask_dtype=np.dtype(dtype).name,
                                segpost_kernels={name.split("(")[0][:60]: round(us, 1) for name, us in seg_kernels.items()})
    benchmark.pedantic(lambda: None, rounds=1)
    assert seg > 0 and tor > 0
