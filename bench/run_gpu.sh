#!/usr/bin/env bash
# On any CUDA machine: build segpost for this GPU, run the GPU test suite and the benchmarks,
# print the markdown table for bench/RESULTS.md. Usage: bench/run_gpu.sh [output-dir]
# Needs: nvcc, CuPy, pytest, pytest-benchmark, opencv; torch for the PyTorch rows.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
arch=${SEGPOST_CUDA_ARCHITECTURES:-native}

echo "== build (CUDA architectures: $arch)"
"$py" -m pip install --no-build-isolation --no-deps -e . -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" \
  -C cmake.define.SEGPOST_REQUIRE_CUDA=ON >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }

echo "== machine"
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -n 1
  "$py" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
  "$py" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "torch: not installed (no PyTorch rows)"
} | tee "$out/machine.txt"

echo "== tests"
status=0
"$py" -m pytest tests -q -rs 2>&1 | tee "$out/tests.log" || status=1

echo "== benchmarks"
"$py" -m pytest bench -q --benchmark-json="$out/bench.json" --benchmark-columns=median,min,max,rounds \
  --benchmark-sort=name 2>&1 | tee "$out/bench.log" | tail -n 5 || status=1

echo "== table"
"$py" bench/report.py "$out/bench.json" --plot "$out/ms_vs_kept.png" | tee "$out/table.md"
echo "== pipeline rounds (synthetic engines with busy time; transformers Sam3Model when torch is present)"
"$py" bench/pipeline_round.py --out "$out" 2>&1 | tee "$out/pipeline.log" | tail -n 8 || status=1

echo "== demo (synthetic 8-camera scene, mask IoU vs ground truth)"
"$py" -m segpost demo --frames 800 --min-iou 0.9 --save "$out/demo.png" --json "$out/demo.json" 2>&1 \
  | tee "$out/demo.log" || status=1

soak=${SEGPOST_SOAK_FRAMES:-100000}
if [ "$soak" -gt 0 ]; then
  echo "== soak ($soak frames; VRAM and RSS sampled every 1000 frames)"
  "$py" -m segpost demo --frames "$soak" --soak --eval-every 0 --size 640x480 --json "$out/soak.json" 2>&1 \
    | tee "$out/soak.log" | tail -n 8 || status=1
fi

if [ "${SEGPOST_SANITIZE:-0}" = 1 ]; then
  # compute-sanitizer over the GPU tests of segpost's own kernels (the pipeline and engine tests,
  # the PyTorch-input test and the 4K, property and thread cases are left out: they mostly run
  # CuPy's or torch's kernels, or take long under the tools).
  echo "== compute-sanitizer"
  for tool in memcheck racecheck initcheck synccheck; do
    echo "-- $tool" | tee -a "$out/sanitize.log"
    compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
      "$py" -m pytest tests/test_postprocess_gpu.py tests/test_encodings.py tests/test_preprocess.py tests/test_errors.py \
      -q -m gpu -k "not torch and not 2160 and not vram and not random_batches and not threads" -p no:cacheprovider \
      >>"$out/sanitize.log" 2>&1 && echo "$tool: 0 errors" || { echo "$tool: FAILED"; status=1; }
    grep -E "ERROR SUMMARY|passed|failed" "$out/sanitize.log" | tail -n 2
  done
fi

[ "$status" = 0 ] || echo "FAILED: see $out/tests.log and $out/bench.log"
exit "$status"
