"""SAM3 compiled ahead of time by AOTInductor: an engine file for GPUs where TensorRT is not at hand.

``build_aoti`` exports both stages of Sam3Model (torch.export) at a fixed batch and compiles them
(torch._inductor.aoti_compile_and_package) into vision-encoder.pt2 and decoder.pt2, each with a
.json of its tensors. ``AotiEngine`` loads a package with torch alone (no transformers, no model
code) and runs it on the pipeline's bound buffers: rounds with fewer cameras run the compiled
batch, the rows past them ignored. Packages are tied to the torch version and the GPU
architecture they were built with.

Proven: both stages on the CPU (torch 2.13, tests/test_aoti.py) and the vision encoder on an H100
(torch 2.11). Not yet: the decoder on CUDA with torch 2.11, where Inductor's lowering stops at a
data-dependent shape (GuardOnDataDependentSymNode, Max(1, u0*u1)); the builder reports it.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import EngineError, EngineUnreadable, TensorSpec
from .registry import register_engine_files
from .tensor_names import TensorNames, rename_tensors
from .torch_stage import TorchStage

VISION_ENCODER_PACKAGE = "vision-encoder.pt2"
DECODER_PACKAGE = "decoder.pt2"


def _spec_path(package: str) -> str:
    return os.path.splitext(package)[0] + ".json"


def read_aoti_spec(path: str) -> Tuple[Dict[str, TensorSpec], Dict[str, Any]]:
    """A package's tensors (by their names) and build facts (batch, device, torch, gpu), from the
    .json beside the .pt2: no torch needed."""
    for file in (path, _spec_path(path)):
        if not os.path.isfile(file):
            raise EngineUnreadable(f"AOTInductor engine file not found: {file} (engines/build_engines.sh --builder aoti "
                                   "writes the .pt2 and its .json)")
    try:
        with open(_spec_path(path)) as f:
            meta = json.load(f)
        specs = {t["name"]: TensorSpec(t["name"], tuple(t["shape"]), np.dtype(t["dtype"]), t["input"])
                 for t in meta["tensors"]}
        int(meta["batch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineUnreadable(f"{_spec_path(path)} is not the tensor spec of an AOTInductor package: {exc!r}") from exc
    return specs, meta


class AotiEngine(TorchStage):
    """`tensor_names` maps contract names to the package's own (tensor_names.py)."""

    static_batch = True

    def __init__(self, path: str, device: str = "cuda", *, tensor_names: Optional[TensorNames] = None):
        specs, meta = read_aoti_spec(path)
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise EngineUnreadable("AOTInductor packages need torch (pip install torch)") from exc
        name = f"{path} (AOTInductor)"
        super().__init__(name, rename_tensors(name, specs, tensor_names), device)
        self.batch = self.max_batch = int(meta["batch"])
        if meta.get("device", device) != device:
            raise EngineError(f"{path} was compiled for {meta['device']}, not {device}")
        try:
            self._runner = self.torch._inductor.aoti_load_package(path)
        except Exception as exc:  # a package of another torch or GPU
            raise EngineError(f"{path}: torch {self.torch.__version__} cannot load this package (built with torch "
                              f"{meta.get('torch')} for {meta.get('gpu')}?): {exc}") from exc
        # The package takes and gives its tensors in the spec's order.
        self._inputs = [n for n, s in self._specs.items() if s.is_input]
        self._outputs = [n for n, s in self._specs.items() if not s.is_input]

    def prepare(self) -> None:
        rows = next(iter(self.full_batch().values())).shape[0]
        if rows != self.batch:
            raise EngineError(f"{self.name} was compiled for batch {self.batch}, the pipeline bound {rows} rows: set "
                              f"max_cameras (x classes_per_call for the decoder) to match the build")

    def compute(self, views: Dict[str, Any]) -> None:
        for name, value in zip(self._outputs, self._runner(*(views[n] for n in self._inputs))):
            views[name].copy_(value)


# Config backend (engines/registry.py): .pt2 packages; torch is imported when one is opened.
register_engine_files("aoti", lambda path, device, names: AotiEngine(path, device=device, tensor_names=names))


def _package(sam3: Any, module: Any, names_in: Sequence[str], engine: Any, batch: int, path: str,
             inputs: Dict[str, Any]) -> None:
    torch = sam3.torch
    args = tuple(inputs[n] for n in names_in)
    # Exported as the model is, outside no_grad: under it, Sam3Model's attention masks trace to
    # data-dependent shapes that export cannot guard (seen with torch 2.13).
    try:
        program = torch.export.export(module, args, strict=False)
        torch._inductor.aoti_compile_and_package(program, package_path=path)
    except Exception as exc:  # export and Inductor raise many kinds; the first line says what
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EngineError(f"AOTInductor could not compile {os.path.basename(path)} with torch {torch.__version__} on "
                          f"{sam3.device}: {type(exc).__name__}: {first_line}") from exc
    gpu = torch.cuda.get_device_name() if sam3.device == "cuda" else "cpu"
    write_aoti_spec(path, engine.tensors, batch, device=sam3.device, torch=torch.__version__, gpu=gpu)


def write_aoti_spec(package: str, tensors: Mapping[str, TensorSpec], batch: int, **facts: str) -> None:
    """The .json beside a package: its tensors in the order it takes and gives them, its batch,
    and `facts` about the build (device, torch, gpu)."""
    listed = [{"name": n, "shape": list(s.shape), "dtype": np.dtype(s.dtype).name, "input": s.is_input}
              for n, s in tensors.items()]
    with open(_spec_path(package), "w") as f:
        json.dump({"batch": batch, **facts, "tensors": listed}, f, indent=1)


def build_aoti(sam3: Any, out_dir: str, *, max_batch: int, classes_per_call: int = 1,
               log: Callable[[str], None] = print) -> Dict[str, str]:
    """Both packages of a Sam3Torch into out_dir, the encoder at max_batch and the decoder at
    max_batch x classes_per_call; returns their paths."""
    from .contract import DECODER_INPUTS, VISION_INPUTS
    from .sam3_onnx import _graphs, example_inputs

    os.makedirs(out_dir, exist_ok=True)
    paths = {"vision_encoder": os.path.join(out_dir, VISION_ENCODER_PACKAGE),
             "decoder": os.path.join(out_dir, DECODER_PACKAGE)}
    vision_encoder, decoder = _graphs(sam3)
    for key, names, batch in (("vision_encoder", VISION_INPUTS, max_batch),
                              ("decoder", DECODER_INPUTS, max_batch * classes_per_call)):
        module, engine = (vision_encoder, sam3.vision_encoder) if key == "vision_encoder" else (decoder, sam3.decoder)
        # Cloned out of inference mode (torch.export refuses inference tensors) and row-major: the
        # package assumes its example inputs' strides without checking them, and the pipeline's
        # buffers are row-major while the model's FPN outputs are channels-last.
        inputs = {n: t.clone(memory_format=sam3.torch.contiguous_format) for n, t in example_inputs(sam3, batch).items()}
        started = time.perf_counter()
        log(f"AOTInductor: exporting and compiling the {key.replace('_', ' ')} at batch {batch} ...")
        _package(sam3, module, names, engine, batch, paths[key], inputs)
        log(f"built {os.path.basename(paths[key])} in {time.perf_counter() - started:.0f} s: "
            f"{os.path.getsize(paths[key]) / 2**20:.1f} MiB")
    return paths


def build_aoti_engines(model: str, out_root: str, classes: Dict[str, Any], *, max_batch: int = 8,
                       classes_per_call: int = 1, device: str = "cuda", log: Callable[[str], None] = print) -> str:
    """engines/build_engines.sh --builder aoti: `model` is a Sam3Model weights folder, "random" or
    "tiny"; classes map names to prompt files, or to None for prompts from the model's text
    encoder. Writes OUT_ROOT/b{B}[_c{K}]_q{Q}/ with both packages, prompts/ and pipeline.json."""
    import shutil

    from .pipeline_file import CONFIG_FILE, engine_folder, write_pipeline_config
    from .sam3_onnx import tiny_sam3_config, write_prompts
    from .torch_sam3 import Sam3Torch

    sam3 = Sam3Torch(None if model in ("random", "tiny") else model,
                     dtype=np.float16 if device == "cuda" else np.float32, device=device,
                     config=tiny_sam3_config() if model == "tiny" else None)
    queries = sam3.decoder.tensors["pred_logits"].shape[1]
    folder = engine_folder(out_root, max_batch, queries, classes_per_call)
    paths = build_aoti(sam3, folder, max_batch=max_batch, classes_per_call=classes_per_call, log=log)
    prompts = os.path.join(folder, "prompts")
    os.makedirs(prompts, exist_ok=True)
    files = write_prompts(sam3, [n for n, f in classes.items() if f is None], prompts)
    files.update({n: shutil.copy(f, os.path.join(prompts, os.path.basename(f))) for n, f in classes.items() if f})
    config = write_pipeline_config(os.path.join(folder, CONFIG_FILE), "aoti", paths["vision_encoder"],
                                   paths["decoder"], {n: files[n] for n in classes}, max_batch,
                                   classes_per_call=classes_per_call)
    log(f"engines and config in {folder}; run: segpost run --config {config} --source CAMERA ...")
    return config