"""Engines that name the contract's tensors otherwise or leave optional ones out (the users' own
engines), the tensor_names map, and `segpost inspect` on TensorRT plans (the recording fake) and
AOTInductor specs. The ONNX side (a real export of the tiny SAM3) is in test_export.py."""
import json
import sys

import numpy as np
import pytest

from fake_tensorrt import USERS_NAMES, FakeTensorRT, RenamedEngine
from pipeline_cases import NAMES, assert_scene_seen, camera_sizes, geometry_for
from segpost.cli import main
from segpost.config import load_config
from segpost.engines.aoti import write_aoti_spec
from segpost.engines.base import EngineError
from segpost.engines.contract import DECODER_TENSORS, VISION_TENSORS, check_engines
from segpost.engines.tensor_names import Tensors, match_engines, rename_tensors
from segpost.engines.tensorrt import TensorRTEngine
from segpost.pipeline import ClassPrompt, MultiCameraPipeline, PipelineConfig
from segpost.synthetic.engines import (LOGIT_ON, SyntheticDecoder, SyntheticGeometry, SyntheticVisionEncoder,
                                       prompt_for_class)
from segpost.synthetic.scene import Scene

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
MASKLESS = ("prompt_mask",)


def _write_plans(tmp_path, engines):
    """{file stem: engine} -> ({stem: path}, FakeTensorRT plans)."""
    files, plans = {}, {}
    for stem, engine in engines.items():
        files[stem] = tmp_path / f"{stem}.engine"
        files[stem].write_bytes(f"plan of {stem}".encode())
        plans[f"plan of {stem}".encode()] = engine
    return {k: str(v) for k, v in files.items()}, plans


def _users_engines(tmp_path, device, dtype, without=MASKLESS, geometry=None, max_batch=12):
    geometry = geometry or geometry_for(device)
    ve = SyntheticVisionEncoder(geometry, device=device, dtype=dtype)
    dec = SyntheticDecoder(geometry, device=device, dtype=dtype)
    files, plans = _write_plans(tmp_path, {"vision-encoder": RenamedEngine(ve, USERS_NAMES),
                                           "decoder": RenamedEngine(dec, USERS_NAMES, without)})
    return files, FakeTensorRT(plans, on_device=device == "cuda", max_batch=max_batch), geometry


def _full_prompts(geometry):
    """Prompts of P valid tokens (no mask): what a decoder without prompt_mask takes."""
    return [ClassPrompt(name, prompt_for_class(i, geometry)[0]) for i, name in enumerate(NAMES)]


def _pipeline(ve, dec, geometry, device, cameras=3, **config):
    if device == "cpu":  # the fake runs on host memory: let the pipeline allocate host buffers
        ve.device = dec.device = "cpu"
    sizes = camera_sizes(device, cameras)
    pipeline = MultiCameraPipeline(ve, dec, PipelineConfig(
        config.pop("classes", None) or _full_prompts(geometry), max_cameras=cameras,
        max_frame_size=(max(h for h, _ in sizes), max(w for _, w in sizes)), **config))
    return pipeline, Scene(sizes, seed=3)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.float64(x)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("presence", [True, False])
def test_the_users_engines_run_through_the_map(tmp_path, device, dtype, presence):
    """The users' TensorRT engines (their names, no prompt-mask input, fp32 or fp16 I/O), with and
    without a presence output: bound by their own names, the scene seen, scores as transformers'."""
    files, fake, geometry = _users_engines(tmp_path, device, dtype, MASKLESS + (() if presence else ("presence_logits",)))
    ve = TensorRTEngine(files["vision-encoder"], trt=fake, tensor_names={})
    dec = TensorRTEngine(files["decoder"], trt=fake, tensor_names=USERS_NAMES if presence else {})
    assert ("presence_logits" in dec.tensors) == presence and "prompt_mask" not in dec.tensors
    if presence:
        assert dec.tensors["presence_logits"].engine_name == "presence"
    assert dec.tensors["pred_masks"].dtype == dtype and ve.tensors["images"].dtype == dtype
    pipeline, scene = _pipeline(ve, dec, geometry, device)
    assert (pipeline.geometry.prompt_mask, pipeline.geometry.presence) == (False, presence)
    fake.calls.clear()
    frames, truths = scene.render(2)
    result = pipeline.process(frames)
    assert_scene_seen(result, truths)
    # the engine saw its own names only: presence bound (at construction), no prompt mask
    assert set(dec._context.addresses) == set(fake.plans[b"plan of decoder"].tensors)
    assert ("presence" in dec._context.addresses) == presence
    assert {c[1] for c in fake.calls if c[0] == "set_input_shape"} == {"images", "fpn_feat_0", "fpn_feat_1",
                                                                        "fpn_feat_2", "fpn_pos_2", "prompt_features"}
    scores = np.concatenate([r.scores for cam in result.cameras.values() for r in cam.by_class.values()])
    expected = _sigmoid(LOGIT_ON) ** (2 if presence else 1)   # the kept objects' logit and presence are LOGIT_ON
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_a_maskless_decoder_refuses_prompts_with_padding(tmp_path):
    files, fake, geometry = _users_engines(tmp_path, "cpu", np.float32)
    ve = TensorRTEngine(files["vision-encoder"], trt=fake)
    dec = TensorRTEngine(files["decoder"], trt=fake, tensor_names=USERS_NAMES)
    features, mask = prompt_for_class(0, geometry)   # one valid token of P = 4
    for prompt in (ClassPrompt("red", features, mask), ClassPrompt("red", features[:1])):
        with pytest.raises(EngineError, match=r"decoder.engine has no prompt_mask input, so it attends to all 4 "
                                              r"prompt tokens, padding included; the prompt of class 'red' has 1 valid"):
            _pipeline(ve, dec, geometry, "cpu", classes=[prompt])
    # unmapped, the presence output is a tensor the contract does not know
    with pytest.raises(EngineError, match=r"output presence \[B,1\] float32 is not a tensor of the contract.*"
                                          r"tensor_names.*segpost inspect"):
        _pipeline(ve, TensorRTEngine(files["decoder"], trt=fake), geometry, "cpu")


def _config(tmp_path, files, geometry, **entries):
    classes = {}
    for i, name in enumerate(NAMES):
        classes[name] = str(tmp_path / f"{name}.npz")
        np.savez(classes[name], features=prompt_for_class(i, geometry)[0])
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"backend": "tensorrt", "vision_encoder": files["vision-encoder"],
                                "decoder": files["decoder"], "classes": classes, "max_cameras": 3,
                                "max_frame_size": [480, 640], **entries}))
    return str(path)


def test_tensor_names_in_a_config_file(tmp_path, monkeypatch):
    files, fake, geometry = _users_engines(tmp_path, "cpu", np.float32)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    ve, dec, config = load_config(_config(tmp_path, files, geometry, tensor_names=USERS_NAMES), device="cpu")
    assert dec.tensors["presence_logits"].engine_name == "presence" and "presence_logits" not in ve.tensors
    ve.device = dec.device = "cpu"
    frames, truths = Scene(camera_sizes("cpu", 3), seed=3).render(1)
    assert_scene_seen(MultiCameraPipeline(ve, dec, config).process(frames), truths)
    with pytest.raises(EngineError, match=r"vision-encoder.engine: tensor_names maps 'presense_logits', which is not "
                                          "a tensor of the contract"):
        load_config(_config(tmp_path, files, geometry, tensor_names={"presense_logits": "presence"}), device="cpu")
    with pytest.raises(EngineError, match=r"decoder.engine: tensor_names maps pred_logits to 'logits', but the engine "
                                          r"has no tensor 'logits'; it has fpn_feat_0"):
        load_config(_config(tmp_path, files, geometry, tensor_names={"pred_logits": "logits"}), device="cpu")
    with pytest.raises(ValueError, match=r"pipeline.json: tensor_names: Input should be a valid dictionary \(got \['presence'\]\)"):
        load_config(_config(tmp_path, files, geometry, tensor_names=["presence"]), device="cpu")
    with pytest.raises(ValueError, match="tensor_names is for engine files"):
        load_config(_config(tmp_path, files, geometry, backend="synthetic", tensor_names={}), device="cpu")


def _tables(names=None, without=()):
    geometry = SyntheticGeometry.small()
    return [Tensors(file, RenamedEngine(engine, names or {}, skip).tensors) for file, engine, skip in
            (("vision.plan", SyntheticVisionEncoder(geometry), ()), ("decoder.plan", SyntheticDecoder(geometry), without))]


def test_rename_refuses_maps_that_would_bind_wrongly():
    (vision, decoder) = _tables(names={"fpn_feat_2": "f2", "fpn_pos_2": "p2"})
    with pytest.raises(EngineError, match="maps both fpn_feat_2 and fpn_pos_2 to 'f2'"):
        rename_tensors("vision.plan", vision.tensors, {"fpn_feat_2": "f2", "fpn_pos_2": "f2"})
    with pytest.raises(EngineError, match="maps fpn_feat_0 to 'f2', but the engine has a tensor named 'fpn_feat_0' "
                                          "too"):
        rename_tensors("vision.plan", vision.tensors, {"fpn_feat_0": "f2"})
    swapped = rename_tensors("vision.plan", vision.tensors, {"fpn_feat_2": "p2", "fpn_pos_2": "f2"})
    assert swapped["fpn_pos_2"].engine_name == "f2" and list(swapped)[0] == "images"
    # levels bound the wrong way round are caught by the contract check (the FPN levels halve)
    swap = {"fpn_feat_0": "fpn_feat_1", "fpn_feat_1": "fpn_feat_0"}
    vision, decoder = (Tensors(t.name, rename_tensors(t.name, t.tensors, swap)) for t in _tables())
    with pytest.raises(EngineError, match=r"fpn_feat_1 \(the engine's 'fpn_feat_0'\) \[B,4,72,72\] float16 should be "
                                          r"1/2 the size of fpn_feat_0 \(36x36\)"):
        check_engines(vision, decoder)


def test_match_by_names_then_shapes_and_never_between_equal_shapes():
    # the users' engines: one entry to add
    match = match_engines(*_tables(names=USERS_NAMES, without=MASKLESS))
    assert match.fits and match.tensor_names == USERS_NAMES and not match.geometry.prompt_mask
    assert match.roles["decoder"]["presence"] == "presence_logits"
    # names that say nothing: the ranks, the FPN levels' sizes and the contract check decide ...
    anonymous = {"images": "input", "fpn_feat_0": "a", "fpn_feat_1": "b", "fpn_feat_2": "c", "fpn_pos_2": "d",
                 "prompt_features": "text", "prompt_mask": "text_mask", "pred_masks": "o1", "pred_boxes": "o2",
                 "pred_logits": "o3", "presence_logits": "o4"}
    match = match_engines(*_tables(names=anonymous))
    # ... but for c and d, which have one shape: no map, the roles say both, the message which to name
    assert not match.fits and match.tensor_names == {}
    assert "cannot tell which of c, d is fpn_feat_2 / fpn_pos_2" in match.message
    assert match.roles["vision encoder"]["c"] == match.roles["decoder"]["d"] == "fpn_feat_2 or fpn_pos_2"
    assert match.roles["vision encoder"]["a"] == "fpn_feat_0" and match.roles["decoder"]["o4"] == "presence_logits"
    match = match_engines(*_tables(names=anonymous), given={"fpn_pos_2": "d"})
    assert match.fits and match.tensor_names == anonymous
    # a tensor no role explains: no guess, the contract check's message
    vision, decoder = _tables(names=USERS_NAMES)
    extra = dict(decoder.tensors, iou=decoder.tensors["presence"])
    match = match_engines(vision, Tensors(decoder.name, extra))
    assert not match.fits and "is not a tensor of the contract" in match.message
    assert set(VISION_TENSORS) <= set(match.roles["vision encoder"].values())
    assert match.roles["decoder"]["iou"] == "?" and "prompt_mask" in DECODER_TENSORS


def _inspect(capsys, *args):
    code = main(["inspect", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _printed_map(out):
    return json.loads(out.split('"tensor_names": ', 1)[1])


def test_inspect_tensorrt_plans(tmp_path, monkeypatch, capsys):
    files, fake, _ = _users_engines(tmp_path, "cpu", np.float32, max_batch=8)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    code, out, _ = _inspect(capsys, files["vision-encoder"], files["decoder"])
    assert code == 0, out
    assert "vision encoder: " + files["vision-encoder"] + " (TensorRT)" in out
    assert "presence         output  [B,1]" in out and "presence_logits" in out and "1..8 (opt 8)" in out
    assert "fits the contract: images 252x252 float32, 16 queries, masks 72x72, prompts [4,8]" in out
    assert "no prompt_mask input: prompts are bound without one" in out and "no presence output" not in out
    assert _printed_map(out) == USERS_NAMES
    # TensorRT-RTX plans: the same reader with its runtime
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", FakeTensorRT(fake.plans, version="1.7.1"))
    assert _inspect(capsys, "--backend", "tensorrt_rtx", files["vision-encoder"], files["decoder"])[0] == 0
    # a pair that was not built together: exit 1 and the contract check's message
    other = SyntheticGeometry(image_size=252, mask_size=80, channels=4, num_queries=16, prompt_length=4, prompt_width=8)
    mismatched, plans = _write_plans(tmp_path, {"other-decoder": SyntheticDecoder(other)})
    fake.plans.update(plans)
    code, out, _ = _inspect(capsys, files["vision-encoder"], mismatched["other-decoder"])
    assert code == 1 and "does not fit the contract: fpn_feat_0 is fpn_feat_0 [B,4,72,72] float32 out of the vision " \
                          "encoder but fpn_feat_0 [B,4,80,80] float16 into the decoder: the two engines were not " \
                          "built as a pair" in out
    # a map that names what the engine does not have: a usage error
    code, _, err = _inspect(capsys, "--tensor-names", '{"pred_logits": "logits"}', files["vision-encoder"],
                            files["decoder"])
    assert code == 2 and "decoder.engine: tensor_names maps pred_logits to 'logits', but the engine has no tensor" in err


def test_inspect_says_what_is_missing(tmp_path, monkeypatch, capsys):
    files, fake, _ = _users_engines(tmp_path, "cpu", np.float32)
    for module in ("tensorrt", "tensorrt_lean"):
        monkeypatch.setitem(sys.modules, module, None)   # not installed
    code, _, err = _inspect(capsys, files["vision-encoder"], files["decoder"])
    assert code == 2 and "TensorRT engines need the TensorRT Python runtime: pip install tensorrt" in err
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    code, _, err = _inspect(capsys, str(tmp_path / "missing.engine"), files["decoder"])
    assert code == 2 and "TensorRT engine file not found: " in err
    (tmp_path / "garbage.plan").write_bytes(b"not a plan")
    code, _, err = _inspect(capsys, str(tmp_path / "garbage.plan"), files["decoder"])
    assert code == 2 and "could not deserialize this engine" in err
    code, _, err = _inspect(capsys, str(tmp_path / "model.bin"), files["decoder"])
    assert code == 2 and "cannot tell the engine format from '.bin'" in err and "--backend" in err
    code, _, err = _inspect(capsys, "--tensor-names", "{not json", files["vision-encoder"], files["decoder"])
    assert code == 2 and "--tensor-names: neither a JSON object nor a readable JSON file" in err


def test_inspect_aoti_packages_from_their_spec(tmp_path, capsys):
    geometry = SyntheticGeometry.small()
    paths = []
    for name, engine in (("vision-encoder", SyntheticVisionEncoder(geometry)), ("decoder", SyntheticDecoder(geometry))):
        package = tmp_path / f"{name}.pt2"
        package.write_bytes(b"an AOTInductor package")
        write_aoti_spec(str(package), engine.tensors, 8, device="cuda", torch="2.11", gpu="NVIDIA H100")
        paths.append(str(package))
    code, out, _ = _inspect(capsys, *paths)
    assert code == 0 and "(AOTInductor)" in out and "static 8" in out and "no tensor_names needed" in out
    (tmp_path / "decoder.json").unlink()
    code, _, err = _inspect(capsys, *paths)
    assert code == 2 and "AOTInductor engine file not found: " in err and "decoder.json" in err
