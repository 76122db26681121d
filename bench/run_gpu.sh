#!/usr/bin/env bash
# On any CUDA machine: build segpost for this GPU, run the GPU test suite and the benchmarks,
# print the tables for bench/RESULTS.md.
#   bench/run_gpu.sh [output-dir]
# SEGPOST_SECTIONS picks what runs (default: all of them, in this order):
#   build tests bench pipeline track zones demo soak decode e2e transformers sam3 fleet serve sanitize
# Not in the default list: capacity (bench/capacity.py, cameras served per GPU, every_frame against
# on_change with compiled Sam3Model; ~8 min incl. one compile; SEGPOST_CAPACITY_ARGS adds flags,
# e.g. "--max-seconds 540 --top-k 2"): SEGPOST_SECTIONS="build capacity" bench/run_gpu.sh
# SEGPOST_VIDEO: an H.264 1080p25 file for decode, e2e, transformers and fleet (bench/make_video.py
# writes one). Needs nvcc, CuPy, pytest, pytest-benchmark, opencv, pydantic (segpost's one base
# dependency besides numpy: the install below takes --no-deps, so a machine without internet brings
# its wheels); torch + transformers for the Sam3Model rows; PyNvVideoCodec for NVDEC; Ray for fleet and serve.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
arch=${SEGPOST_CUDA_ARCHITECTURES:-native}
sections=${SEGPOST_SECTIONS:-build tests bench pipeline track zones demo soak decode e2e transformers sam3 fleet serve sanitize}
video=${SEGPOST_VIDEO:-}
status=0
want() { [[ " $sections " == *" $1 "* ]]; }
step() { echo "== $1"; }

if want build; then
  step "build (CUDA architectures: $arch)"
  "$py" -c "import pydantic" 2>/dev/null || { echo "segpost needs pydantic (pip install 'pydantic>=2.5', or its wheels)"; exit 1; }
  "$py" -m pip install --no-build-isolation --no-deps -e . -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" \
    -C cmake.define.SEGPOST_REQUIRE_CUDA=ON >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
  {
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    nvcc --version | tail -n 1
    "$py" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
    "$py" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>/dev/null \
      || echo "torch/transformers: not installed (no PyTorch rows)"
    git rev-parse --short HEAD 2>/dev/null || true
  } | tee "$out/machine.txt"
fi

if want tests; then
  step "tests (GPU)"
  "$py" -m pytest tests -q -rs -m gpu -p no:cacheprovider ${SEGPOST_TEST_ARGS:-} 2>&1 | tee "$out/tests.log" | tail -n 25 || status=1
fi

if want bench; then
  step "benchmarks (postprocess, preprocess)"
  "$py" -m pytest bench -q --benchmark-json="$out/bench.json" --benchmark-columns=median,min,max,rounds \
    --benchmark-sort=name 2>&1 | tee "$out/bench.log" | tail -n 5 || status=1
  "$py" bench/report.py "$out/bench.json" --plot "$out/ms_vs_kept.png" | tee "$out/table.md"
fi

if want pipeline; then
  step "pipeline rounds (synthetic engines with busy time; transformers Sam3Model when torch is present)"
  "$py" bench/pipeline_round.py --out "$out" 2>&1 | tee "$out/pipeline.log" | tail -n 8 || status=1
fi

if want track; then
  step "tracker cost (8 cameras x 4 classes, 40 and 120 detections per class-batch)"
  "$py" bench/track_cost.py --out "$out" 2>&1 | tee "$out/track_cost.log" | tail -n 6 || status=1
fi

if want zones; then
  step "zone membership cost (8 cameras x 4 classes x 40 detections, 8 zones per camera)"
  "$py" bench/zone_cost.py --out "$out" 2>&1 | tee "$out/zone_cost.log" | tail -n 8 || status=1
fi

if want demo; then
  step "demo (synthetic 8-camera scene, mask IoU vs ground truth)"
  "$py" -m segpost demo --frames 800 --min-iou 0.9 --save "$out/demo.png" --json "$out/demo.json" 2>&1 \
    | tee "$out/demo.log" || status=1
fi

soak=${SEGPOST_SOAK_FRAMES:-100000}
if want soak && [ "$soak" -gt 0 ]; then
  step "soak ($soak frames; VRAM and RSS sampled every 1000 frames)"
  "$py" -m segpost demo --frames "$soak" --soak --eval-every 0 --size 640x480 --json "$out/soak.json" 2>&1 \
    | tee "$out/soak.log" | tail -n 8 || status=1
fi

if [ -n "$video" ]; then
  if want decode; then
    step "decoding N streams: NVDEC vs OpenCV; then decoded and preprocessed"
    "$py" bench/decode_streams.py --video "$video" --streams 1 8 16 32 --json "$out/decode.json" 2>&1 \
      | tee "$out/decode.log" | tail -n 12 || status=1
    "$py" bench/decode_streams.py --video "$video" --streams 16 --decoders gpu --preprocess \
      --json "$out/decode_preprocess.json" 2>&1 | tee "$out/decode_preprocess.log" | tail -n 4 || status=1
  fi
  if want e2e; then
    step "segpost run end to end, --decode gpu vs cpu (synthetic engines, 40 + 10 ms busy)"
    "$py" bench/run_e2e.py --video "$video" --cameras 8 16 --out "$out" 2>&1 | tee "$out/run_e2e.log" | tail -n 8 || status=1
  fi
  if want transformers; then
    step "segpost vs the transformers path (Sam3Model fp16, 8 cameras x 4 classes)"
    "$py" bench/transformers_path.py --video "$video" --json "$out/transformers_path.json" 2>&1 \
      | tee "$out/transformers_path.log" | tail -n 5 || status=1
  fi
fi

if want sam3; then
  step "Sam3Model rounds per engine mode (eager per class, eager all classes, compiled, CUDA graphs)"
  "$py" bench/sam3_rounds.py --out "$out" ${SEGPOST_SAM3_ARGS:-} 2>&1 | tee "$out/sam3_rounds.log" | tail -n 14 || status=1
fi

if [ -n "$video" ] && want fleet; then
  step "fleet on this machine's GPUs: 1 and 2 workers (synthetic, Sam3Model eager), start-up and failover (compiled, standby)"
  "$py" bench/fleet_gpu.py --video "$video" --out "$out" --phases synthetic eager ${SEGPOST_FLEET_ARGS:-} 2>&1 \
    | tee "$out/fleet_layouts.log" | tail -n 16 || status=1
  "$py" bench/fleet_gpu.py --video "$video" --out "$out" --phases compiled ${SEGPOST_FLEET_ARGS:-} 2>&1 \
    | tee "$out/fleet_compiled.log" | tail -n 12 || status=1
fi

if want serve; then
  step "serve vs segpost run (Sam3Model fp16 compiled, 1080p JPEGs, decode gpu and cpu, 1 / 32 clients)"
  "$py" bench/serve_latency.py --backend torch --compile default --decode gpu cpu --clients 1 32 --run-side \
    --out "$out/serve" 2>&1 | tee "$out/serve.log" | tail -n 9 || status=1
fi

if want capacity; then
  step "capacity: cameras served per GPU at 5 records/s each, staleness p95 <= 1 s, every_frame vs on_change (compiled Sam3Model)"
  "$py" bench/capacity.py --out "$out" ${SEGPOST_CAPACITY_ARGS:-} 2>&1 | tee "$out/capacity.log" | tail -n 16 || status=1
fi

if want sanitize && [ "${SEGPOST_SANITIZE:-0}" = 1 ]; then
  # compute-sanitizer over the GPU tests of segpost's own kernels (the pipeline and engine tests,
  # the PyTorch-input test and the 4K, property and thread cases are left out: they mostly run
  # CuPy's or torch's kernels, or take long under the tools).
  step "compute-sanitizer"
  for tool in memcheck racecheck initcheck synccheck; do
    echo "-- $tool" | tee -a "$out/sanitize.log"
    compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
      "$py" -m pytest tests/test_postprocess_gpu.py tests/test_encodings.py tests/test_preprocess.py tests/test_errors.py \
      -q -m gpu -k "not torch and not 2160 and not vram and not random_batches and not threads" -p no:cacheprovider \
      >>"$out/sanitize.log" 2>&1 && echo "$tool: 0 errors" || { echo "$tool: FAILED"; status=1; }
    grep -E "ERROR SUMMARY|passed|failed" "$out/sanitize.log" | tail -n 2
  done
fi

[ "$status" = 0 ] || echo "FAILED: see the logs in $out"
exit "$status"
