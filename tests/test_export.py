"""engines/: SAM3 -> ONNX with the contract's names, onnxruntime vs PyTorch, the pipeline on the
exported graphs (CPU), and the TensorRT builder against a stand-in trtexec. The graphs come from
conftest.py's `exported` (export_cases.py); graphs named otherwise: test_export_names.py.
"""
import dataclasses
import json
import os
import stat
import sys

import numpy as np
import pytest

from export_cases import CLASSES, frames, skip_without_export_packages, tiny_model

skip_without_export_packages()

from segpost.engines import sam3_onnx  # noqa: E402
from segpost.engines.base import EngineError  # noqa: E402
from segpost.engines.build import build_engines, main as build_main, trtexec_commands  # noqa: E402
from segpost.engines.contract import DECODER_INPUTS, DECODER_OUTPUTS, FPN_TENSORS, VISION_INPUTS  # noqa: E402
from segpost.engines.torch_sam3 import Sam3Torch  # noqa: E402


def relative_error(ours, reference):
    return float(np.linalg.norm(ours.astype(np.float64) - reference) / max(np.linalg.norm(reference), 1e-30))


def test_graphs_have_the_contract_names_ranks_and_a_dynamic_batch(exported):
    import onnx

    _, (vision_path, decoder_path), references, _ = exported
    for path in (vision_path, decoder_path):
        onnx.checker.check_model(path)
    vision, decoder = sam3_onnx.onnx_tensor_shapes(vision_path), sam3_onnx.onnx_tensor_shapes(decoder_path)
    assert list(vision) == list(VISION_INPUTS + FPN_TENSORS)
    assert list(decoder) == list(DECODER_INPUTS + DECODER_OUTPUTS)
    reference = references[1]
    for shapes in (vision, decoder):
        for name, shape in shapes.items():
            assert shape[0] == "batch", f"{name} has no dynamic batch axis: {shape}"
            assert shape[1:] == reference[name].shape[1:], name  # every other axis fixed, as traced
    assert decoder["pred_masks"][1:] == (200, 32, 32) and decoder["presence_logits"][1:] == (1,)


@pytest.mark.parametrize("batch", [1, 3])  # traced at 2: other batch sizes run through the dynamic axis
def test_onnxruntime_matches_pytorch(exported, batch):
    import onnxruntime

    _, (vision_path, decoder_path), references, _ = exported
    reference = references[batch]
    for path, names_in, names_out in ((vision_path, VISION_INPUTS, FPN_TENSORS),
                                      (decoder_path, DECODER_INPUTS, DECODER_OUTPUTS)):
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        outputs = session.run(list(names_out), {n: reference[n] for n in names_in})
        for name, value in zip(names_out, outputs):
            assert value.shape == reference[name].shape
            assert relative_error(value, reference[name]) < 1e-3, name


def test_float16_export_matches_the_float32_export(exported, tmp_path):
    """export_onnx.py --dtype float16: the half model's graphs (what TensorRT-RTX's strongly typed
    builder takes) are valid ONNX (strict type check), every float tensor is float16, and they
    compute what the float32 graphs compute, within half precision."""
    import onnx
    import onnxruntime

    _, (vision32, decoder32), references, _ = exported
    half = Sam3Torch(None, dtype=np.float16, device="cpu", config=sam3_onnx.tiny_sam3_config(), seed=3)
    vision16, decoder16 = sam3_onnx.export_onnx(half, str(tmp_path), batch=2)
    for path in (vision16, decoder16):
        onnx.checker.check_model(path, full_check=True)
        model = onnx.load(path)
        floats = {i.type.tensor_type.elem_type for i in list(model.graph.input) + list(model.graph.output)} - \
            {onnx.TensorProto.BOOL}
        assert floats == {onnx.TensorProto.FLOAT16}, path
        sizes = {kind: sum(int(np.prod(w.dims)) for w in model.graph.initializer if w.data_type == kind)
                 for kind in (onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT)}
        # The encoder is all half; the half model computes its mask head in float (as PyTorch runs it),
        # so some decoder weights stay float.
        share = sizes[onnx.TensorProto.FLOAT16] / (sizes[onnx.TensorProto.FLOAT16] + sizes[onnx.TensorProto.FLOAT])
        assert share == 1.0 if path == vision16 else share > 0.4, (path, share)
    reference = references[3]
    session32 = {p: onnxruntime.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (vision32, decoder32)}
    session16 = {p: onnxruntime.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (vision16, decoder16)}
    features32 = session32[vision32].run(list(FPN_TENSORS), {"images": reference["images"]})
    features16 = session16[vision16].run(list(FPN_TENSORS), {"images": reference["images"].astype(np.float16)})
    for name, a, b in zip(FPN_TENSORS, features16, features32):
        assert a.dtype == np.float16 and relative_error(a, b) < 5e-3, name
    feeds = dict(zip(FPN_TENSORS, features32), prompt_features=reference["prompt_features"],
                 prompt_mask=reference["prompt_mask"])
    out32 = session32[decoder32].run(list(DECODER_OUTPUTS), feeds)
    out16 = session16[decoder16].run(list(DECODER_OUTPUTS), {n: v.astype(np.float16) if v.dtype == np.float32 else v
                                                             for n, v in feeds.items()})
    for name, a, b in zip(DECODER_OUTPUTS, out16, out32):
        assert a.dtype == np.float16 and relative_error(a, b) < 5e-3, name


def test_prompt_files_hold_padded_features_and_a_mask(exported):
    _, _, _, prompts = exported
    assert sorted(prompts) == sorted(CLASSES) and os.path.basename(prompts["blow gun"]) == "blow_gun.npz"
    with np.load(prompts["person"]) as data:
        assert data["features"].shape == (32, 32) and data["features"].dtype == np.float32
        assert data["mask"].dtype == np.bool_ and 0 < data["mask"].sum() < 32


def test_pipeline_runs_on_the_exported_graphs_like_on_pytorch(exported, tmp_path):
    """The whole pipeline on onnxruntime engines (CPU) against the same pipeline on the PyTorch
    model: the same kept queries and boxes, and masks equal but for pixels at the threshold."""
    from segpost.config import load_config
    from segpost.engines.pipeline_file import write_pipeline_config
    from segpost.pipeline import ClassPrompt, MultiCameraPipeline

    out, paths, _, prompts = exported
    config_path = write_pipeline_config(str(tmp_path / "pipeline.json"), "onnx", *paths, prompts, max_cameras=3,
                                        max_frame_size=(120, 160))
    vision_encoder, decoder, config = load_config(config_path, device="cpu")
    assert vision_encoder.device == decoder.device == "cpu"
    config = dataclasses.replace(config, score_threshold=0.0, top_k=4)
    onnx_pipeline = MultiCameraPipeline(vision_encoder, decoder, config)
    sam3 = tiny_model()  # a fresh instance with the same weights: exporting changed the other one's state
    torch_config = dataclasses.replace(config, classes=[ClassPrompt(*p) for p in sam3.text_prompts(CLASSES)])
    torch_pipeline = MultiCameraPipeline(sam3.vision_encoder, sam3.decoder, torch_config)
    for seed, sizes in ((0, [(120, 160), (90, 120), (120, 160)]), (1, [(64, 96), (120, 160)])):
        ours, theirs = onnx_pipeline.process(frames(seed, sizes)), torch_pipeline.process(frames(seed, sizes))
        assert sorted(ours.cameras) == sorted(theirs.cameras) == list(range(len(sizes)))
        for camera, size in enumerate(sizes):
            for name in CLASSES:
                a, b = ours.cameras[camera].by_class[name], theirs.cameras[camera].by_class[name]
                assert len(a) == len(b) == 4
                np.testing.assert_array_equal(a.query_ids, b.query_ids)
                np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
                np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
                assert a.masks.shape == (4,) + size
                assert np.mean(np.asarray(a.masks) != np.asarray(b.masks)) < 1e-3


def test_onnx_backend_reports_bad_files(tmp_path):
    from segpost.engines.onnx_runtime import OnnxRuntimeEngine

    with pytest.raises(EngineError, match="cannot load"):
        OnnxRuntimeEngine(str(tmp_path / "missing.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load"):
        OnnxRuntimeEngine(str(tmp_path / "junk.onnx"))
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        sam3_onnx.onnx_tensor_shapes(str(tmp_path / "junk.onnx"))


FAKE_TRTEXEC = """#!{python}
import sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
with open(args["saveEngine"], "w") as f:
    f.write(" ".join(sys.argv[1:]))
if "{fail}" in args["onnx"]:
    print("[E] Error[4]: fake failure while parsing {fail}")
    sys.exit(3)
"""


def fake_trtexec(tmp_path, fail="never"):
    path = tmp_path / "trtexec"
    path.write_text(FAKE_TRTEXEC.format(python=sys.executable, fail=fail))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_trtexec_commands_have_the_batch_profile(exported):
    out, _, _, _ = exported
    vision, decoder = trtexec_commands(str(out), "/engines", max_batch=8, opt_batch=4)
    assert vision[1].endswith("vision-encoder.onnx") and vision[2] == "--saveEngine=/engines/vision-encoder.engine"
    assert "--minShapes=images:1x3x112x112" in vision and "--optShapes=images:4x3x112x112" in vision
    assert "--maxShapes=images:8x3x112x112" in vision and vision[-1] == "--fp16"
    assert ("--maxShapes=fpn_feat_0:8x32x32x32,fpn_feat_1:8x32x16x16,fpn_feat_2:8x32x8x8,fpn_pos_2:8x32x8x8,"
            "prompt_features:8x32x32,prompt_mask:8x32") in decoder
    with pytest.raises(ValueError, match="opt_batch"):
        trtexec_commands(str(out), "/engines", max_batch=2, opt_batch=4)


def test_build_engines_writes_the_matched_set_and_a_config(exported, tmp_path):
    out, _, _, prompts = exported
    logged = []
    config_path = build_engines(str(out), str(tmp_path / "engines"), prompts, max_batch=4,
                                trtexec=fake_trtexec(tmp_path), log=logged.append)
    folder = tmp_path / "engines" / "b4_q200"
    assert config_path == str(folder / "pipeline.json")
    assert (folder / "vision-encoder.engine").read_text().count("x3x112x112") == 3
    with open(config_path) as f:
        config = json.load(f)
    assert config["backend"] == "tensorrt" and config["max_cameras"] == 4
    assert config["vision_encoder"] == "vision-encoder.engine" and config["decoder"] == "decoder.engine"
    assert config["classes"] == {"person": "prompts/person.npz", "blow gun": "prompts/blow_gun.npz"}
    assert all((folder / p).is_file() for p in config["classes"].values())
    assert sum("trtexec" in line for line in logged) == 2


def test_build_engines_reports_trtexec_failures(exported, tmp_path):
    out, _, _, prompts = exported
    with pytest.raises(EngineError, match="not found"):
        build_engines(str(out), str(tmp_path), prompts, trtexec=str(tmp_path / "no-trtexec"), log=lambda _: None)
    with pytest.raises(EngineError, match=r"trtexec failed \(exit 3\).*decoder.engine:\n.*fake failure"):
        build_engines(str(out), str(tmp_path), prompts, trtexec=fake_trtexec(tmp_path, fail="decoder"),
                      log=lambda _: None)
    with pytest.raises(EngineError, match="prompt file"):
        build_engines(str(out), str(tmp_path), {"x": str(tmp_path / "x.npz")}, trtexec=fake_trtexec(tmp_path))
    assert build_main([str(out), str(tmp_path), "--print-commands"]) == 0
    assert build_main([str(tmp_path / "nothing"), str(tmp_path), "--print-commands"]) == 1


class FakeBuilderAPI:
    """The slice of TensorRT 10's Python builder that build_with_tensorrt uses, recording calls."""

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    BuilderFlag = type("BuilderFlag", (), {"FP16": "FP16"})
    NetworkDefinitionCreationFlag = type("NetworkDefinitionCreationFlag", (), {"STRONGLY_TYPED": 1})
    ComputeCapability = type("ComputeCapability", (), {"SM80": 80, "SM86": 86, "SM89": 89, "SM120": 120})

    def __init__(self, parse_fails_on="never", build_fails=False):
        self.calls, fake = [], self

        class Parser:
            def __init__(self, network, logger):
                self.num_errors = 0

            def parse_from_file(self, path):
                fake.calls.append(("parse", os.path.basename(path)))
                self.num_errors = int(parse_fails_on in path)
                return not self.num_errors

            def get_error(self, i):
                return "In node 7 (Einsum): unsupported equation"

        class Profile:
            def set_shape(self, name, smallest, best, largest):
                fake.calls.append(("shape", name, smallest, best, largest))

        class Config:
            num_compute_capabilities = 0

            def set_flag(self, flag):
                fake.calls.append(("flag", flag))

            def set_compute_capability(self, capability, index):
                fake.calls.append(("compute_capability", capability, index, self.num_compute_capabilities))

            def add_optimization_profile(self, profile):
                fake.calls.append(("profile",))

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls.append(("network", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build",))
                return None if build_fails else b"plan"

        self.OnnxParser, self.Builder = Parser, Builder


def test_build_engines_with_the_tensorrt_python_builder(exported, tmp_path):
    out, _, _, prompts = exported
    fake = FakeBuilderAPI()
    config_path = build_engines(str(out), str(tmp_path), prompts, max_batch=8, opt_batch=2, builder="tensorrt",
                                trt=fake, log=lambda _: None)
    folder = tmp_path / "b8_q200"
    assert (folder / "vision-encoder.engine").read_bytes() == b"plan" and (folder / "decoder.engine").is_file()
    assert os.path.isfile(config_path)
    assert fake.calls[:6] == [("network", 0), ("parse", "vision-encoder.onnx"), ("flag", "FP16"),
                              ("shape", "images", (1, 3, 112, 112), (2, 3, 112, 112), (8, 3, 112, 112)),
                              ("profile",), ("build",)]
    decoder_shapes = [c[1] for c in fake.calls[6:] if c[0] == "shape"]
    assert decoder_shapes == list(DECODER_INPUTS)
    with pytest.raises(EngineError, match="cannot parse .*decoder.onnx:\n.*Einsum"):
        build_engines(str(out), str(tmp_path), prompts, builder="tensorrt", trt=FakeBuilderAPI("decoder"),
                      log=lambda _: None)
    with pytest.raises(EngineError, match="could not build"):
        build_engines(str(out), str(tmp_path), prompts, builder="tensorrt", trt=FakeBuilderAPI(build_fails=True),
                      log=lambda _: None)
    with pytest.raises(ValueError, match="builder must be"):
        build_engines(str(out), str(tmp_path), prompts, builder="onnx")


def test_build_engines_with_tensorrt_rtx_for_another_gpu_and_all_classes_per_call(exported, tmp_path):
    """--builder tensorrt-rtx: a strongly typed network, no FP16 flag (the graph's dtypes rule), a
    target compute capability, the decoder's profile up to 8 cameras x 4 classes."""
    out, _, _, prompts = exported
    fake, notes = FakeBuilderAPI(), []
    config_path = build_engines(str(out), str(tmp_path), prompts, max_batch=8, builder="tensorrt-rtx", trt=fake,
                                classes_per_call=4, compute_capability="12.0", log=notes.append)
    assert config_path == str(tmp_path / "b8_c4_q200" / "pipeline.json")
    config = json.loads(open(config_path).read())
    assert config["backend"] == "tensorrt_rtx" and config["classes_per_call"] == 4 and config["max_cameras"] == 8
    assert ("network", 2) in fake.calls and not any(c[0] == "flag" for c in fake.calls)
    assert fake.calls.count(("compute_capability", 120, 0, 1)) == 2
    shapes = {c[1]: c[2:] for c in fake.calls if c[0] == "shape"}
    assert shapes["images"][2][0] == 8 and shapes["prompt_features"][2][0] == 32 and shapes["fpn_feat_0"][1][0] == 32
    assert any("float32" in n and "--dtype float16" in n for n in notes)   # the tiny graphs here are float32
    with pytest.raises(ValueError, match="cannot build for compute capability 9.0; it knows"):
        build_engines(str(out), str(tmp_path), prompts, builder="tensorrt-rtx", trt=FakeBuilderAPI(),
                      compute_capability="9.0", log=lambda _: None)
    with pytest.raises(ValueError, match="TensorRT-RTX option"):
        build_engines(str(out), str(tmp_path), prompts, builder="tensorrt", trt=FakeBuilderAPI(),
                      compute_capability="12.0", log=lambda _: None)
    with pytest.raises(ValueError, match="classes_per_call must be a positive int"):
        build_engines(str(out), str(tmp_path), prompts, builder="tensorrt", trt=FakeBuilderAPI(),
                      classes_per_call=0, log=lambda _: None)


def test_trtexec_commands_reach_the_classes_per_call_batch(exported):
    out, _, _, _ = exported
    vision, decoder = trtexec_commands(str(out), "engines", max_batch=8, opt_batch=4, classes_per_call=2)
    assert "--maxShapes=images:8x3x112x112" in vision and "--optShapes=images:4x3x112x112" in vision
    assert any(a.startswith("--maxShapes=fpn_feat_0:16x") for a in decoder)
    assert any(a.startswith("--optShapes=fpn_feat_0:8x") for a in decoder)
