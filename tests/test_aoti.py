"""engines/build --builder aoti: the tiny Sam3Model compiled ahead of time by AOTInductor (on the
CPU here), loaded by a fresh process that never imports transformers, equal to the model."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

try:
    import torch  # noqa: F401
    from transformers import Sam3Model  # noqa: F401
except ImportError as exc:
    if os.environ.get("SEGPOST_EXPECT_EXPORT") == "1":
        raise
    pytest.skip(f"AOTInductor packages need torch and transformers >= 5 (pip install segpost[export]): {exc}",
                allow_module_level=True)

from segpost.engines.aoti import AotiEngine  # noqa: E402
from segpost.engines.base import EngineError  # noqa: E402
from segpost.engines.build import main as build_main  # noqa: E402

# Runs a 2-camera pipeline in a fresh process on the packages (argv: pipeline.json) or on the tiny
# model itself (argv: "tiny"), and prints its kept queries, scores and mask areas.
CHECK = r"""
import json, sys
import numpy as np
from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from segpost.synthetic.scene import Scene
if sys.argv[1] == "tiny":
    from segpost.engines.sam3_onnx import tiny_sam3_config
    from segpost.engines.torch_sam3 import Sam3Torch
    sam3 = Sam3Torch(None, dtype=np.float32, device="cpu", config=tiny_sam3_config())
    ve, dec = sam3.vision_encoder, sam3.decoder
    prompts = [ClassPrompt(*p) for p in sam3.text_prompts(["person", "hand"])]
else:
    from segpost.config import load_config
    ve, dec, config = load_config(sys.argv[1], device="cpu")
    prompts = config.classes
config = PipelineConfig(prompts, max_cameras=2, max_frame_size=(480, 640), score_threshold=0.0, top_k=5,
                        classes_per_call=2)
pipeline = MultiCameraPipeline(ve, dec, config)
frames, _ = Scene([(240, 320), (480, 640)], num_classes=2, seed=3).render(0)
out = []
for present in ([0, 1], [1]):
    result = pipeline.process([frames[c] if c in present else None for c in range(2)])
    out.append({f"{c}/{n}": [fr.query_ids.tolist(), fr.scores.tolist(), np.asarray(fr.masks).mean(axis=(1, 2)).tolist()]
                for c, cam in result.cameras.items() for n, fr in cam.by_class.items()})
print(json.dumps({"records": out, "transformers_imported": "transformers" in sys.modules}))
"""


def check(script, argument):
    done = subprocess.run([sys.executable, str(script), argument], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("aoti")
    assert build_main(["tiny", str(out), "--builder", "aoti", "--device", "cpu", "--max-batch", "2",
                       "--classes-per-call", "2", "--class", "person", "--class", "hand"]) == 0
    return out / "b2_c2_q200"


def test_package_runs_without_transformers_and_equals_the_model(built, tmp_path):
    config = json.loads((built / "pipeline.json").read_text())
    assert config["backend"] == "aoti" and config["classes_per_call"] == 2 and config["max_cameras"] == 2
    assert sorted(os.listdir(built)) == ["decoder.json", "decoder.pt2", "pipeline.json", "prompts",
                                         "vision-encoder.json", "vision-encoder.pt2"]
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    packaged, eager = check(script, str(built / "pipeline.json")), check(script, "tiny")
    assert not packaged["transformers_imported"] and eager["transformers_imported"]
    for a, b in zip(packaged["records"], eager["records"]):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key][0] == b[key][0], key                            # the same kept queries
            np.testing.assert_allclose(a[key][1], b[key][1], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(a[key][2], b[key][2], atol=1e-3)


def test_a_package_bound_to_another_batch_is_refused(built):
    from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig

    ve, dec = (AotiEngine(str(built / f), device="cpu") for f in ("vision-encoder.pt2", "decoder.pt2"))
    assert ve.max_batch == 2 and dec.max_batch == 4
    with np.load(built / "prompts" / "person.npz") as p:
        prompt = ClassPrompt("person", p["features"], p["mask"])
    with pytest.raises(EngineError, match="compiled for batch 2, the pipeline bound 1 rows"):
        MultiCameraPipeline(ve, dec, PipelineConfig([prompt], max_cameras=1, max_frame_size=(240, 320)))
    with pytest.raises(EngineError, match="AOTInductor engine file not found"):
        AotiEngine(str(built / "missing.pt2"), device="cpu")


def test_a_graph_the_compiler_refuses_is_reported_with_the_torch_version(tmp_path, monkeypatch):
    import torch

    from segpost.engines.aoti import build_aoti_engines

    def refuse(*args, **kwargs):
        raise RuntimeError("GuardOnDataDependentSymNode: Could not guard on data-dependent expression\nmore")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", refuse)
    expected = (f"could not compile vision-encoder.pt2 with torch {torch.__version__} on cpu: RuntimeError: "
                "GuardOnDataDependentSymNode: Could not guard on data-dependent expression")
    with pytest.raises(EngineError, match=re.escape(expected) + "$"):
        build_aoti_engines("tiny", str(tmp_path), {"person": None}, max_batch=1, device="cpu")
