"""Sam3Model rounds (8 cameras x 4 classes, 1080p, FULL and PACKED) on the GPU, per engine mode,
against the compute floor.

    python bench/sam3_rounds.py --out DIR [--modes eager_per_class eager_all compiled_all cudagraphs_all]

Modes: eager PyTorch with one decoder call per class (plan C), eager with every class in one
call (batch 32), torch.compile (default mode) with every class in one call, the same with CUDA
graphs, and AOTInductor packages (engines/aoti.py, built here at batch 8 / 32). Also: the FLOPs of a round (torch.utils.flop_counter), a dense fp16 matmul's rate
(the roof), each row's round over the floor; VRAM per mode; the compiled rounds' agreement with
eager (same kept queries, mask IoU); a cold and a warm start of the compiled engine (the warm one
in a fresh process reading the kernel cache).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from pipeline_round import staged, timed_rounds  # noqa: E402  (bench/, this script's folder)
from tables import print_table, save_json  # noqa: E402  (bench/, this script's folder)

NAMES = ["person", "hand", "counter", "blow gun"]
CAMERAS, SIZE = 8, (1080, 1920)


def matmul_roof() -> float:
    """TFLOP/s of a dense fp16 8192-cube matmul on random data (median of 10 after warm-up)."""
    import torch

    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.float16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return 2 * 8192 ** 3 / (np.median(times) / 1e3) / 1e12


def round_flops(sam3) -> dict:
    """FLOPs of the encoder at batch 8 and of one class's decoder call at batch 8."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from segpost.engines.sam3_onnx import example_inputs

    inputs = example_inputs(sam3, CAMERAS)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as encoder:
            sam3.vision_features(inputs["images"])
        with FlopCounterMode(display=False) as decoder:
            sam3.detect(*(inputs[n] for n in ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2",
                                               "prompt_features", "prompt_mask")))
    return {"encoder_tflop": encoder.get_total_flops() / 1e12, "decoder_tflop_per_class": decoder.get_total_flops() / 1e12}


def build(compile_mode: str, cuda_graphs: bool, per_call, output, cache: str, sam3=None):
    """(engines, pipeline, seconds): the engines are made (and compiled) unless given."""
    from segpost.engines.torch_sam3 import Sam3Torch
    from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    started = time.perf_counter()
    aoti = compile_mode == "aoti"
    if sam3 is None:
        sam3 = Sam3Torch(None, dtype=np.float16, device="cuda", seed=0, compile="off" if aoti else compile_mode,
                         cuda_graphs=cuda_graphs)
        if aoti:
            from segpost.engines.aoti import AotiEngine, build_aoti

            paths = build_aoti(sam3, os.path.join(cache, "aoti"), max_batch=CAMERAS, classes_per_call=len(NAMES))
            sam3.aoti = [AotiEngine(paths[key]) for key in ("vision_encoder", "decoder")]
    prompts = [ClassPrompt(*p) for p in sam3.text_prompts(NAMES)]
    # Random weights score at random: keep the 5 best per camera and class (40 kept masks per
    # class-batch at 1080p, the users' measurement).
    config = PipelineConfig(prompts, max_cameras=CAMERAS, max_frame_size=SIZE, output=output, score_threshold=0.0,
                            top_k=5, classes_per_call=per_call)
    vision_encoder, decoder = getattr(sam3, "aoti", (sam3.vision_encoder, sam3.decoder))
    pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
    return sam3, pipeline, time.perf_counter() - started


def measure(pipeline, frames, rounds: int) -> dict:
    import torch

    slots = staged(pipeline, frames)
    torch.cuda.reset_peak_memory_stats()
    row, result = timed_rounds(pipeline, slots, rounds)
    detections = {(c, n): (fr.query_ids.copy(), np.asarray(fr.masks).copy() if pipeline.config.output.value == "full" else None)
                  for c, cam in result.cameras.items() for n, fr in cam.by_class.items()}
    report = pipeline.memory_report()
    return {**row, "vram_gb": {"device_used": report["device_used"] / 2**30, "io_buffers": report["io_buffers"] / 2**30,
                               "torch_peak_allocated": torch.cuda.max_memory_allocated() / 2**30}}, detections


def agreement(eager: dict, compiled: dict) -> dict:
    same_queries = total = 0
    ious = []
    for key, (queries, masks) in eager.items():
        other_queries, other_masks = compiled[key]
        common = set(queries.tolist()) & set(other_queries.tolist())
        same_queries += len(common)
        total += len(queries)
        for q in common:
            a = masks[list(queries).index(q)]
            b = other_masks[list(other_queries).index(q)]
            union = np.count_nonzero(a | b)
            ious.append(np.count_nonzero(a & b) / union if union else 1.0)
    return {"same_kept_queries": same_queries / max(total, 1), "mask_iou_min": float(np.min(ious)) if ious else None,
            "mask_iou_mean": float(np.mean(ious)) if ious else None}


def warm_start(cache: str, compile_mode: str, cuda_graphs: bool) -> float:
    """Seconds a fresh process takes to build the compiled engine and pipeline from the cache."""
    code = (f"import sys, time; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import sam3_rounds, segpost; t = time.perf_counter(); "
            f"sam3_rounds.build({compile_mode!r}, {cuda_graphs!r}, 'all', segpost.OutputKind.FULL, {cache!r}); "
            f"print('WARM', time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("WARM")), None)
    if line is None:
        raise RuntimeError(done.stderr[-800:])
    return float(line.split()[1])


MODES = {"eager_per_class": ("off", False, 1), "eager_all": ("off", False, "all"),
         "compiled_all": ("default", False, "all"), "cudagraphs_all": ("default", True, "all"),
         "aoti_all": ("aoti", False, "all")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    import segpost
    from segpost.synthetic.scene import Scene

    os.makedirs(args.out, exist_ok=True)
    frames, _ = Scene([SIZE] * CAMERAS, seed=0).render(0)
    roof = matmul_roof()
    rows, eager_detections, flops = [], None, None
    cache = tempfile.mkdtemp(prefix="segpost-inductor-")
    for mode in args.modes:
        compile_mode, graphs, per_call = MODES[mode]
        sam3 = None
        for output in (segpost.OutputKind.FULL, segpost.OutputKind.PACKED):
            try:
                sam3, pipeline, build_s = build(compile_mode, graphs, per_call, output, cache, sam3)
                if flops is None:
                    flops = round_flops(sam3)
                row, detections = measure(pipeline, frames, args.rounds)
            except Exception as exc:  # report the mode and go on
                rows.append({"mode": mode, "output": output.value, "error": f"{type(exc).__name__}: {exc}"[:500]})
                print(json.dumps(rows[-1]), flush=True)
                continue
            row.update(mode=mode, output=output.value, build_s=build_s, classes_per_call=pipeline.classes_per_call)
            if output is segpost.OutputKind.FULL:
                if mode == "eager_all":
                    eager_detections = detections
                elif compile_mode != "off" and eager_detections is not None:
                    row["agreement_with_eager"] = agreement(eager_detections, detections)
                if compile_mode not in ("off", "aoti"):
                    row["cold_start_s"] = build_s
                    try:
                        row["warm_start_s"] = warm_start(cache, compile_mode, graphs)
                    except Exception as exc:  # report it in the row
                        row["warm_start_error"] = str(exc)[-300:]
            rows.append(row)
            print(json.dumps(row), flush=True)
            del pipeline
        del sam3
        import torch

        torch.cuda.empty_cache()
    floor_ms = (flops["encoder_tflop"] + len(NAMES) * flops["decoder_tflop_per_class"]) / roof * 1e3 if flops else None
    summary = {"matmul_roof_tflops": roof, "flops": flops, "floor_ms": floor_ms, "rows": rows}
    save_json(os.path.join(args.out, "sam3_rounds.json"), summary)
    print(f"\nroof {roof:.0f} TFLOP/s; encoder {flops['encoder_tflop']:.2f} TFLOP (batch 8), decoder "
          f"{flops['decoder_tflop_per_class']:.2f} TFLOP per class (batch 8); floor {floor_ms:.1f} ms a round")

    def cells(r):
        agree = r.get("agreement_with_eager")
        agreed = f"{agree['same_kept_queries']:.3f} / {agree['mask_iou_min']:.4f}" if agree and agree["mask_iou_min"] is not None else ""
        return [r["mode"], r["output"], str(r["classes_per_call"]), f"{r['round_ms']:.1f}", f"{r['round_ms_p95']:.1f}",
                f"{r['round_ms'] / floor_ms:.2f}", f"{r['stages_ms']['vision_encoder']:.1f}",
                f"{r['stages_ms']['decoder']:.1f}", f"{r['vram_gb']['device_used']:.2f}",
                f"{r['vram_gb']['io_buffers']:.2f}", f"{r['build_s']:.0f}", f"{r.get('warm_start_s', float('nan')):.0f}",
                agreed]

    print_table(["mode", "output", "classes per call", "round p50 (ms)", "p95", "round / floor", "encoder (ms)",
                 "decoder (ms)", "VRAM used (GB)", "I/O buffers (GB)", "build (s)", "warm start (s)",
                 "same kept / mask IoU min"], rows, cells, ["mode", "output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
