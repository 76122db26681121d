"""The tiny SAM3 exported to ONNX for the export tests (test_export.py, test_export_names.py),
and what they share. conftest.py's session fixtures `exported` and `users_exported` export once.

Needs torch, transformers >= 5 (Sam3Model), onnx and onnxruntime; CI installs them and sets
SEGPOST_EXPECT_EXPORT=1 so that a missing one fails instead of skipping.
"""
import os

import numpy as np
import pytest

REQUIRED = ("torch", "transformers", "onnx", "onnxruntime")
CLASSES = ["person", "blow gun"]


def _missing():
    import importlib

    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if not missing:
        from transformers import Sam3Model  # noqa: F401  (transformers < 5 has no SAM3)
    return missing


def skip_without_export_packages():
    """At a test module's top: skip it when a package is missing (fail under SEGPOST_EXPECT_EXPORT=1)."""
    try:
        missing = _missing()
    except ImportError:
        missing = ["transformers>=5 (Sam3Model)"]
    if missing and os.environ.get("SEGPOST_EXPECT_EXPORT") != "1":
        pytest.skip(f"export tests need {', '.join(missing)} (pip install segpost[export])", allow_module_level=True)


def tiny_model():
    from segpost.engines import sam3_onnx
    from segpost.engines.torch_sam3 import Sam3Torch

    return Sam3Torch(None, dtype=np.float32, device="cpu", config=sam3_onnx.tiny_sam3_config(), seed=3)


def export_contract(out):
    """The tiny model's graphs with the contract's names, PyTorch outputs computed before
    exporting (see export_onnx), and prompt files: (out, paths, references, prompts)."""
    import torch

    from segpost.engines import sam3_onnx
    from segpost.engines.contract import DECODER_INPUTS, DECODER_OUTPUTS

    sam3 = tiny_model()
    references = {}
    for batch in (1, 3):
        inputs = sam3_onnx.example_inputs(sam3, batch, seed=batch)
        with torch.inference_mode():
            outputs = dict(zip(DECODER_OUTPUTS, sam3.detect(*(inputs[n] for n in DECODER_INPUTS))))
        references[batch] = {n: t.numpy() for n, t in {**inputs, **outputs}.items()}
    paths = sam3_onnx.export_onnx(sam3, str(out), batch=2)
    prompts = sam3_onnx.write_prompts(sam3, CLASSES, str(out / "prompts"))
    return out, paths, references, prompts


def frames(seed, sizes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def renamed_graph(source, target, renames=None, drop_outputs=()):
    """A copy of an ONNX graph with tensors renamed and outputs left out (the nodes still compute them)."""
    import onnx

    model = onnx.load(source)
    renames = renames or {}
    for node in model.graph.node:
        for field in (node.input, node.output):
            names = [renames.get(n, n) for n in field]
            del field[:]
            field.extend(names)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        value.name = renames.get(value.name, value.name)
    kept = [o for o in model.graph.output if o.name not in drop_outputs]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(target))
    return str(target)
