"""The folder and pipeline.json that every engine builder writes (build.py: TensorRT and
TensorRT-RTX; aoti.py: AOTInductor; engines/export_onnx.py: onnxruntime), so that
``segpost run --config FOLDER/pipeline.json`` loads what was built."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Tuple

CONFIG_FILE = "pipeline.json"


def engine_folder(out_root: str, max_batch: int, num_queries: int, classes_per_call: int = 1) -> str:
    per_call = f"_c{classes_per_call}" if classes_per_call > 1 else ""
    return os.path.join(out_root, f"b{max_batch}{per_call}_q{num_queries}")


def write_pipeline_config(path: str, backend: str, vision_encoder: str, decoder: str, classes: Dict[str, str],
                          max_cameras: int, max_frame_size: Tuple[int, int] = (1080, 1920),
                          classes_per_call: Optional[int] = None) -> str:
    """A config file for ``segpost run``; paths are written relative to the config's folder."""
    base = os.path.dirname(os.path.abspath(path))
    relative = lambda p: os.path.relpath(os.path.abspath(p), base)  # noqa: E731
    config = {"backend": backend, "vision_encoder": relative(vision_encoder), "decoder": relative(decoder),
              "classes": {name: relative(file) for name, file in classes.items()},
              "max_cameras": max_cameras, "max_frame_size": list(max_frame_size), "score_threshold": 0.5}
    if classes_per_call is not None:
        config["classes_per_call"] = classes_per_call
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path
