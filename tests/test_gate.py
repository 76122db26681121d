"""segpost.ChangeGate: its grids and counts against an independent numpy reference, and what it
must (a moving or arriving object) and must not (sensor noise, slow light drift) call a change."""
import numpy as np
import pytest

from segpost import YuvFrame
from segpost.gate import LEVEL_SCALE, ChangeGate


def ref_luma(frame) -> np.ndarray:
    """Luma as the gate defines it: the Y plane of YUV frames; BT.601 8-bit weights of BGR."""
    if isinstance(frame, YuvFrame):
        h = frame.data.shape[0] * 2 // 3
        return np.asarray(frame.data[:h], np.int64)
    b, g, r = (frame[..., c].astype(np.int64) for c in range(3))
    return (29 * b + 150 * g + 77 * r + 128) >> 8


def ref_grid(frame, rows, cols) -> np.ndarray:
    y = ref_luma(frame)
    h, w = y.shape
    ys, xs = np.arange(rows + 1) * h // rows, np.arange(cols + 1) * w // cols
    sums = np.add.reduceat(np.add.reduceat(y, ys[:-1], axis=0), xs[:-1], axis=1)
    counts = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return (sums * LEVEL_SCALE + counts // 2) // counts


def ref_changed_cells(cur, ref, threshold) -> int:
    dev = np.abs((cur - ref) - (cur.mean() - ref.mean()))
    return int((dev > round(threshold * LEVEL_SCALE)).sum())


def random_bgr(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def padded_nv12(rng, h, w, pad=6):
    data = rng.integers(0, 256, (h * 3 // 2, w + pad), dtype=np.uint8)
    return YuvFrame(data[:, :w])   # rows pitched w + pad, as NVDEC surfaces


@pytest.mark.parametrize("make,size,grid", [
    ("bgr", (97, 131), (7, 9)),
    ("bgr", (64, 96), (32, 32)),
    ("nv12", (90, 124), (8, 8)),
    ("i420", (72, 100), (5, 11)),
])
def test_cpu_grid_matches_numpy(make, size, grid):
    rng = np.random.default_rng(1)
    h, w = size
    if make == "bgr":
        frame = random_bgr(rng, h, w)
    elif make == "nv12":
        frame = padded_nv12(rng, h, w)
    else:
        frame = YuvFrame(rng.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8), layout="i420")
    gate = ChangeGate(cameras=3, grid=grid, device="cpu")
    gate.measure([frame], [2])
    np.testing.assert_array_equal(gate.latest_grid(2), ref_grid(frame, *grid))


def test_cpu_counts_match_numpy():
    rng = np.random.default_rng(2)
    grid, threshold = (16, 16), 3.0
    gate = ChangeGate(cameras=4, grid=grid, threshold=threshold, min_cells=5, device="cpu")
    # Smooth frames so that counts land in the middle of the range, not at 0 or all cells.
    base = [np.repeat(np.repeat(random_bgr(rng, 16, 16), 8, 0), 8, 1) for _ in range(3)]
    gate.measure(base, [0, 1, 3])
    gate.mark_seen([0, 1])
    # Each cell moves by its own step: some beyond the threshold, some not.
    steps = [np.repeat(np.repeat(rng.integers(-6, 7, (16, 16, 1)), 8, 0), 8, 1) for _ in base]
    nxt = [np.clip(b.astype(int) + d + rng.integers(-2, 3, b.shape), 0, 255).astype(np.uint8)
           for b, d in zip(base, steps)]
    changed = gate.measure(nxt, [0, 1, 3])
    want = [ref_changed_cells(ref_grid(nxt[i], *grid), ref_grid(base[i], *grid), threshold) for i in range(2)]
    assert 0 < min(want) and max(want) < 256, want   # the scene tests something
    np.testing.assert_array_equal(gate.last_counts, want + [256])   # camera 3 was never seen: all cells
    np.testing.assert_array_equal(changed, [w >= 5 for w in want] + [True])


def site_background(rng, h, w) -> np.ndarray:
    """A textured grey scene (levels 40 .. 200): smooth blobs plus fine texture."""
    coarse = rng.uniform(40, 200, (h // 16 + 2, w // 16 + 2))
    ys, xs = np.linspace(0, coarse.shape[0] - 1.001, h), np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    smooth = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
              + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
    return np.clip(smooth + rng.normal(0, 8, (h, w)), 40, 200)


def camera_frame(rng, scene, t, frames, drift=20.0, noise=4.0) -> np.ndarray:
    """scene (float, grey) at time t of `frames`: light drifting by `drift` levels over the clip,
    per-pixel sensor noise of sigma `noise`, as a BGR uint8 frame."""
    grey = scene + drift * t / frames + rng.normal(0, noise, scene.shape)
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_noise_and_slow_light_drift_are_not_change():
    rng = np.random.default_rng(3)
    scene, frames = site_background(rng, 240, 320), 100
    gate = ChangeGate(cameras=1, device="cpu")
    gate.measure([camera_frame(rng, scene, 0, frames)], [0])
    gate.mark_seen([0])
    changed = [bool(gate.measure([camera_frame(rng, scene, t, frames)], [0])[0]) for t in range(1, frames + 1)]
    assert not any(changed), f"{sum(changed)} of {frames} frames of a still scene called changed"


def test_moving_and_arriving_objects_are_change():
    rng = np.random.default_rng(4)
    scene, frames = site_background(rng, 240, 320), 40
    gate = ChangeGate(cameras=2, device="cpu")

    def with_box(t, y, x, level):
        f = camera_frame(rng, scene, t, frames)
        f[y:y + 20, x:x + 20] = level   # a 20x20 object, about 3x3 cells of the 32x32 grid
        return f

    # Camera 0: an object moving 3 px a frame; the model saw it at its start.
    # Camera 1: the empty scene seen; an object arrives at t = 20 and stays.
    first = [with_box(0, 100, 40, 230), camera_frame(rng, scene, 0, frames)]
    gate.measure(first, [0, 1])
    gate.mark_seen([0, 1])
    moved, arrived = [], []
    for t in range(1, frames):
        f1 = with_box(t, 150, 200, 20) if t >= 20 else camera_frame(rng, scene, t, frames)
        c = gate.measure([with_box(t, 100, 40 + 3 * t, 230), f1], [0, 1])
        moved.append(bool(c[0]))
        arrived.append(bool(c[1]))
    assert all(moved[1:]), moved   # 6 px and more from where the model saw it
    assert arrived == [False] * 19 + [True] * 20, arrived


def test_mark_seen_moves_the_reference():
    rng = np.random.default_rng(5)
    scene = site_background(rng, 120, 160)
    gate = ChangeGate(cameras=1, grid=(16, 16), device="cpu")
    before = camera_frame(rng, scene, 0, 1, noise=0)
    after = before.copy()
    after[40:80, 40:80] = 255
    assert gate.measure([before], [0])[0]   # nothing seen yet
    gate.mark_seen([0])
    assert not gate.measure([before], [0])[0]
    assert gate.measure([after], [0])[0]
    gate.mark_seen([0])   # the model saw the object: it is the scene now
    assert not gate.measure([after], [0])[0]


def test_rejects_bad_input():
    gate = ChangeGate(cameras=2, grid=(32, 32), device="cpu")
    with pytest.raises(ValueError, match="smaller than the gate's grid"):
        gate.measure([np.zeros((16, 64, 3), np.uint8)], [0])
    with pytest.raises(ValueError, match="distinct indices"):
        gate.measure([np.zeros((64, 64, 3), np.uint8)] * 2, [1, 1])
    with pytest.raises(ValueError, match="must have been measured"):
        gate.mark_seen([0])


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["bgr", "nv12"])
def test_gpu_matches_cpu_twin(cp, layout):
    rng = np.random.default_rng(6)
    host = [random_bgr(rng, 97, 131), random_bgr(rng, 1080, 1920)] if layout == "bgr" else \
        [padded_nv12(rng, 90, 124), padded_nv12(rng, 1080, 1920)]
    host2 = [random_bgr(rng, 97, 131), random_bgr(rng, 1080, 1920)] if layout == "bgr" else \
        [padded_nv12(rng, 90, 124), padded_nv12(rng, 1080, 1920)]

    def on_device(f):
        return YuvFrame(cp.asarray(f.data.base)[:, :f.data.shape[1]]) if isinstance(f, YuvFrame) else cp.asarray(f)

    cpu, gpu = ChangeGate(cameras=3, threshold=2.0, device="cpu"), ChangeGate(cameras=3, threshold=2.0, device="cuda")
    for frames in (host, host2):
        want = cpu.measure(frames, [0, 2])
        got = gpu.measure([on_device(f) for f in frames], [0, 2])
        np.testing.assert_array_equal(gpu.last_counts, cpu.last_counts)
        np.testing.assert_array_equal(got, want)
        for c in (0, 2):
            np.testing.assert_array_equal(gpu.latest_grid(c), cpu.latest_grid(c))
        cpu.mark_seen([0])
        gpu.mark_seen([0])
    assert 0 < gpu.last_counts[0] < 1024   # the second round compared against a reference
