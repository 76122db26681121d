"""Turn a pytest-benchmark JSON from bench/ into the markdown table of bench/RESULTS.md and a plot.

python bench/report.py bench.json [--plot ms_vs_kept.png]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

COLUMNS = ["segpost_fp32", "segpost_fp16", "segpost_packed_fp16", "segpost_rle_fp16", "segpost_rle_dicts_fp16",
           "segpost_crop_fp16", "segpost_lowres_fp16",
           "segpost_device_fp16", "v3", "v2", "torch_per_frame",
           "torch_batched", "torch_per_frame_device"]
MASK = 288 * 288
RECORD_BYTES = 4 + 4 + 4 + 16 + 8


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows, extra, host_bytes = defaultdict(dict), {}, defaultdict(dict)
    for b in data["benchmarks"]:
        info = b["extra_info"]
        if str(info.get("approach", "")).startswith("preprocess_"):
            extra[f"{info['approach']}_{info['dtype']}_ms"] = b["stats"]["median"] * 1e3
        elif "approach" in info:
            key = (info["frames"], info["kept"], info["height"], info["width"])
            rows[key][info["approach"]] = b["stats"]["median"] * 1e3
            if "host_bytes" in info:
                host_bytes[key][info["approach"]] = info["host_bytes"]
        else:
            extra.update({k: v for k, v in info.items() if k != "mask_dtype"} if "segpost_kernel_us" not in info
                         else {f"{k}_{info['mask_dtype']}": v for k, v in info.items() if k != "mask_dtype"})
    return data, rows, extra, host_bytes


def floor_ms(key, hbm, d2h, host_bytes=None):
    """Bytes that must move: kept fp32 low-res masks read from HBM, and the results over PCIe
    (full-res uint8 masks and the records, or the measured bytes of an encoded kind); the two
    can overlap, so the floor is the larger of the two times."""
    frames, kept, h, w = key
    hbm_s = kept * MASK * 4 / hbm
    pcie = host_bytes if host_bytes is not None else kept * h * w + kept * RECORD_BYTES
    return 1e3 * max(hbm_s, pcie / d2h)


def table(rows, extra, host_bytes) -> str:
    hbm, d2h = extra.get("hbm_bytes_per_s"), extra.get("d2h_bytes_per_s")
    present = [c for c in COLUMNS if any(c in r for r in rows.values())]
    ours = [("segpost_fp32", "full"), ("segpost_packed_fp16", "packed")]
    head = ["frames", "kept", "frame"] + [f"{c} ms" for c in present]
    for _, label in ours:
        head += [f"v3 / {label}", f"torch/frame / {label}", f"{label} / floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(rows, key=lambda k: (k[2] * k[3], k[0], k[1])):
        r = rows[key]
        cells = [str(key[0]), str(key[1]), f"{key[3]}x{key[2]}"] + [f"{r[c]:.3f}" if c in r else "-" for c in present]
        for column, _ in ours:
            seg = r.get(column)
            ratio = lambda c: f"{r[c] / seg:.1f}x" if seg and c in r else "-"  # noqa: E731
            fl = floor_ms(key, hbm, d2h, host_bytes.get(key, {}).get(column)) if hbm and d2h else None
            cells += [ratio("v3"), ratio("torch_per_frame"), f"{seg / fl:.2f}x" if fl and seg and key[1] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if hbm and d2h:
        notes.append(f"Measured bandwidths: device memory {hbm / 1e9:.0f} GB/s (read+write), "
                     f"pinned device-to-host {d2h / 1e9:.1f} GB/s. Floor: max(kept low-res fp32 masks read / device "
                     "bandwidth, bytes that crossed PCIe / PCIe bandwidth).")
    for dt in ("float32", "float16"):
        if f"segpost_kernel_us_{dt}" in extra:
            notes.append(f"GPU kernel time, 8 frames x 200 queries, 40 kept, 1920x1080, {dt} masks, masks left on the "
                         f"device (CUPTI): segpost {extra[f'segpost_kernel_us_{dt}']:.1f} us, torch batched unfused "
                         f"{extra[f'torch_kernel_us_{dt}']:.1f} us; segpost per kernel (us): "
                         f"{extra.get(f'segpost_kernels_{dt}')}.")
    pre = {k[len("preprocess_"):-3]: v for k, v in extra.items() if k.startswith("preprocess_")}
    if pre:
        notes.append("Preprocessing of 8 BGR 1920x1080 frames to [8, 3, 1008, 1008], upload included (ms): " +
                     ", ".join(f"{k} {v:.3f}" for k, v in sorted(pre.items())) + ".")
    return "\n".join(lines) + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def bytes_table(host_bytes) -> str:
    """MB that crossed PCIe per class-batch, per segpost output kind."""
    kinds = [c for c in COLUMNS if c.startswith("segpost") and "dicts" not in c and any(c in r for r in host_bytes.values())]
    lines = ["| frames | kept | frame | " + " | ".join(f"{k} MB" for k in kinds) + " |", "|" + "---|" * (3 + len(kinds))]
    for key in sorted(host_bytes, key=lambda k: (k[2] * k[3], k[0], k[1])):
        r = host_bytes[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[3]}x{key[2]} | " +
                     " | ".join(f"{r[k] / 1e6:.3f}" if k in r else "-" for k in kinds) + " |")
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = sorted(k for k in rows if k[0] == 8 and (k[2], k[3]) == (1080, 1920))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in COLUMNS:
        pts = [(k[1], rows[k][c]) for k in sweep if c in rows[k]]
        if pts:
            ax.plot([max(p[0], 0.5) for p in pts], [p[1] for p in pts], marker="o", label=c)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("kept masks per class-batch (8 frames, 1920x1080; 0 drawn at 0.5)")
    ax.set_ylabel("ms per class-batch (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    data, rows, extra, host_bytes = load(args.json)
    mi = data.get("machine_info", {})
    print(f"Benchmarks of {data.get('datetime', '?')} on {mi.get('node', '?')} ({mi.get('cpu', {}).get('brand_raw', '?')})\n")
    print(table(rows, extra, host_bytes))
    print("\n" + bytes_table(host_bytes))
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
