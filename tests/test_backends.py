"""Config backends are registered by name where they are defined (engines/registry.py) and the
config reader finds them there; registering loads no optional library."""
import json
import re
import subprocess
import sys
import textwrap

import pytest

from segpost import config
from segpost.engines import registry
from segpost.engines.base import EngineError

# Each backend and the module that defines it (and so registers it).
DEFINED_IN = {"tensorrt": "segpost.engines.tensorrt", "tensorrt_rtx": "segpost.engines.tensorrt",
              "aoti": "segpost.engines.aoti", "onnx": "segpost.engines.onnx_runtime",
              "torch": "segpost.engines.torch_sam3", "synthetic": "segpost.synthetic.engines"}


def test_an_unknown_backend_names_every_known_one():
    with pytest.raises(ValueError) as error:
        registry.find_backend("openvino", config._backend_modules(), "site.json")
    message = str(error.value)
    assert message.startswith("site.json: unknown backend 'openvino'; use ")
    listed = message.split("; use ")[1].replace(" or ", ", ").split(", ")
    assert sorted(listed) == sorted(DEFINED_IN)


def test_each_name_resolves_to_the_builder_of_its_module():
    modules = config._backend_modules()
    for name, module in DEFINED_IN.items():
        backend = registry.find_backend(name, modules)
        assert (backend.name, backend.module) == (name, module)
        assert backend.engine_files == (name not in ("torch", "synthetic")), name


def test_the_reader_builds_through_the_registered_builder(tmp_path):
    # An engine-file backend opens its files with its own engine class: the error is its own (the
    # onnx one's says onnxruntime is missing where it is, as in CI's CPU-only environment).
    for name, words in (("tensorrt", "TensorRT engine file not found"),
                        ("onnx", r"ONNX|the onnx backend needs onnxruntime"), ("aoti", "")):
        with pytest.raises((EngineError, ValueError)) as error:
            config.build_from_config({"backend": name, "classes": {"a": "a.npz"}, "vision_encoder": "ve.x",
                                      "decoder": "dec.x"}, str(tmp_path), device="cpu", where="c.json")
        assert re.search(words, str(error.value)), (name, error.value)
    ve, dec, pipeline = config.build_from_config({"backend": "synthetic", "classes": ["red", "green"]},
                                                 str(tmp_path), device="cpu")
    assert type(ve).__module__ == "segpost.synthetic.engines" and [c.name for c in pipeline.classes] == ["red", "green"]


def test_a_name_registered_by_another_module_is_refused():
    with pytest.raises(ValueError, match="backend 'onnx' is registered already, by segpost.engines.onnx_runtime"):
        config._backend_modules()
        registry.register_backend("onnx")(lambda request: None)


def test_registering_imports_no_optional_library():
    """In a fresh interpreter: the reader's backend modules load, every name is registered, and
    none of tensorrt, torch, onnxruntime (nor onnx, transformers) is imported."""
    code = textwrap.dedent("""
        import json, sys
        from segpost import config
        from segpost.engines.registry import backends
        names = [b.name for b in backends(config._backend_modules())]
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                       ("tensorrt", "tensorrt_lean", "tensorrt_rtx", "torch", "onnxruntime", "onnx", "transformers"))
        print(json.dumps({"names": names, "heavy": heavy}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(seen["names"]) == sorted(DEFINED_IN)
    assert seen["heavy"] == []
