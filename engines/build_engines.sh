#!/usr/bin/env bash
# TensorRT engines (trtexec) from engines/export_onnx.py's ONNX files, into OUT_ROOT/b{B}_q{Q}/
# with the prompt files and pipeline.json. The work is segpost.engines.build (the same builder
# from Python: segpost.engines.build.build_engines); --print-commands shows the trtexec lines.
#   engines/build_engines.sh onnx/ engines-out/ --max-batch 8 --class person=prompts/person.npz ...
set -euo pipefail
exec "${PYTHON:-python3}" -m segpost.engines.build "$@"
