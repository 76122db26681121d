"""The TensorRT adapter against a recording fake of the TensorRT 10 runtime API, and config files."""
import json

import numpy as np
import pytest

from fake_tensorrt import FakeTensorRT
from pipeline_cases import assert_scene_seen, camera_sizes, geometry_for, prompts
from segpost.config import load_config
from segpost.engines.base import EngineError
from segpost.synthetic.engines import SyntheticDecoder, SyntheticVisionEncoder
from segpost.engines.tensorrt import TENSORRT_RTX, TensorRTEngine, TensorRTRtxEngine, import_tensorrt
from segpost.pipeline import MultiCameraPipeline, PipelineConfig
from segpost.synthetic.scene import Scene

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _plans(tmp_path, device):
    geometry = geometry_for(device)
    ve, dec = SyntheticVisionEncoder(geometry, device=device), SyntheticDecoder(geometry, device=device)
    files = {}
    for name, engine in (("vision-encoder", ve), ("decoder", dec)):
        files[name] = tmp_path / f"{name}.engine"
        files[name].write_bytes(f"plan of {name}".encode())
    plans = {f"plan of {name}".encode(): engine for name, engine in (("vision-encoder", ve), ("decoder", dec))}
    return files, plans, geometry


def _trt_engines(tmp_path, device, **fake_kw):
    files, plans, geometry = _plans(tmp_path, device)
    fake = FakeTensorRT(plans, on_device=device == "cuda", **fake_kw)
    ve = TensorRTEngine(str(files["vision-encoder"]), trt=fake, max_batch=3)
    dec = TensorRTEngine(str(files["decoder"]), trt=fake, max_batch=3)
    if device == "cpu":  # the fake runs on host memory: let the pipeline allocate host buffers
        ve.device = dec.device = "cpu"
    return fake, ve, dec, geometry


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("profile_max,per_call", [(3, 1), (6, 2), (12, 4)])
def test_pipeline_through_tensorrt_adapter(tmp_path, device, profile_max, per_call):
    """The decoder's profile decides how many classes share a call (classes_per_call by default):
    max batch 3 for 3 cameras -> one class per call; 6 -> two; 12 -> all four."""
    fake, ve, dec, geometry = _trt_engines(tmp_path, device, max_batch=profile_max)
    sizes = camera_sizes(device, 3)
    pipeline = MultiCameraPipeline(ve, dec, PipelineConfig(prompts(geometry), max_cameras=3,
                                                           max_frame_size=(max(h for h, _ in sizes), max(w for _, w in sizes))))
    assert pipeline.classes_per_call == per_call and dec.max_batch == profile_max
    scene = Scene(sizes, seed=3)
    fake.calls.clear()
    frames, truths = scene.render(4)
    assert_scene_seen(pipeline.process([frames[0], frames[1], None]), truths)
    calls = fake.calls
    # the vision encoder: one shape, one launch; the decoder: shapes, then per call a prompt rebind + launch
    assert calls[0] == ("set_input_shape", "images", (2, 3, geometry.image_size, geometry.image_size))
    assert calls[1][0] == "execute_async_v3"
    assert ("set_input_shape", "fpn_feat_0", (2 * per_call,) + dec.tensors["fpn_feat_0"].shape[1:]) in calls
    launches = [c for c in calls if c[0] == "execute_async_v3"]
    assert len(launches) == 1 + 4 // per_call and len({c[1] for c in launches}) == 1
    prompt_binds = [c for c in calls if c[:2] == ("set_tensor_address", "prompt_features")]
    assert len(prompt_binds) == 4 // per_call and len({c[2] for c in prompt_binds}) == 4 // per_call
    # zero copy: both engines were bound to the same FPN addresses at construction
    addresses = {}
    for engine in (ve, dec):
        addresses[engine.name] = {n: engine._context.addresses[n] for n in ("fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2")}
    assert addresses[ve.name] == addresses[dec.name]


def test_adapter_reports_tensors_and_memory(tmp_path):
    fake, ve, dec, geometry = _trt_engines(tmp_path, "cpu")
    assert list(ve.tensors) == ["images", "fpn_feat_0", "fpn_feat_1", "fpn_feat_2", "fpn_pos_2"]
    assert ve.tensors["images"].shape == (-1, 3, geometry.image_size, geometry.image_size)
    assert dec.tensors["prompt_mask"].dtype == np.bool_ and dec.tensors["pred_masks"].dtype == np.float16
    assert ve.memory_bytes() == (1 << 20) + len(b"plan of vision-encoder")


def test_adapter_errors(tmp_path):
    files, plans, _ = _plans(tmp_path, "cpu")
    path = str(files["decoder"])
    with pytest.raises(EngineError, match="engine file not found: .*nope.engine"):
        TensorRTEngine(str(tmp_path / "nope.engine"), trt=FakeTensorRT(plans))
    with pytest.raises(EngineError, match="too old"):
        TensorRTEngine(path, trt=FakeTensorRT(plans, version="8.6.1"))
    bad = tmp_path / "other.engine"
    bad.write_bytes(b"garbage")
    with pytest.raises(EngineError, match="could not deserialize"):
        TensorRTEngine(str(bad), trt=FakeTensorRT(plans))
    with pytest.raises(EngineError, match="built for batches up to 4; the pipeline needs 8"):
        TensorRTEngine(path, trt=FakeTensorRT(plans, max_batch=4), max_batch=8)
    fake = FakeTensorRT(plans)
    fake.fail.add("create_execution_context")
    with pytest.raises(EngineError, match="execution context"):
        TensorRTEngine(path, trt=fake)
    fake = FakeTensorRT(plans, max_batch=2)
    engine = TensorRTEngine(path, trt=fake)
    with pytest.raises(EngineError, match="refused shape"):
        engine.set_input_shape("fpn_feat_0", (3,) + engine.tensors["fpn_feat_0"].shape[1:])
    with pytest.raises(EngineError, match="no tensor named 'masks'"):
        engine.set_tensor_address("masks", np.zeros(1))
    with pytest.raises(EngineError, match="execute_async_v3 failed"):
        engine.enqueue(0)
    with pytest.raises(TypeError, match="cannot bind a list"):
        engine.set_tensor_address("pred_masks", [1, 2])


def test_import_tensorrt_says_how_to_install():
    with pytest.raises(EngineError, match="pip install tensorrt"):
        import_tensorrt("segpost_no_such_module")
    with pytest.raises(EngineError, match=r'TensorRT-RTX engines need .*pip install "segpost\[tensorrt-rtx\]"'):
        import_tensorrt("segpost_no_such_module", TENSORRT_RTX)


@pytest.mark.parametrize("device", DEVICES)
def test_pipeline_through_the_tensorrt_rtx_adapter(tmp_path, device):
    """TensorRT-RTX (1.x) has the execution-context API of TensorRT 10: the same adapter, with
    its own version floor and messages; here against the recording fake (no RTX GPU here)."""
    files, plans, geometry = _plans(tmp_path, device)
    fake = FakeTensorRT(plans, on_device=device == "cuda", max_batch=12, version="1.7.1")
    ve, dec = (TensorRTRtxEngine(str(files[n]), trt=fake) for n in ("vision-encoder", "decoder"))
    if device == "cpu":
        ve.device = dec.device = "cpu"
    sizes = camera_sizes(device, 3)
    pipeline = MultiCameraPipeline(ve, dec, PipelineConfig(prompts(geometry), max_cameras=3,
                                                           max_frame_size=(max(h for h, _ in sizes), max(w for _, w in sizes))))
    assert pipeline.classes_per_call == 4
    frames, truths = Scene(sizes, seed=3).render(2)
    assert_scene_seen(pipeline.process(frames), truths)
    launches = [c for c in fake.calls if c[0] == "execute_async_v3"]
    assert len(launches) == 2   # the encoder, then every class in one decoder call
    with pytest.raises(EngineError, match="TensorRT-RTX 0.9.0 is too old"):
        TensorRTRtxEngine(str(files["decoder"]), trt=FakeTensorRT(plans, version="0.9.0"))
    with pytest.raises(EngineError, match="TensorRT-RTX runs engines on Ampere, Ada and Blackwell"):
        garbage = tmp_path / "for-another-gpu.engine"
        garbage.write_bytes(b"an engine this GPU refuses")
        TensorRTRtxEngine(str(garbage), trt=FakeTensorRT(plans, version="1.7.1"))


def _write_config(tmp_path, **entries):
    path = tmp_path / "segpost.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_config_file_errors(tmp_path):
    with pytest.raises(EngineError, match="config file not found"):
        load_config(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(str(tmp_path / "broken.json"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['thresold'\]"):
        load_config(_write_config(tmp_path, backend="synthetic", classes=["a"], thresold=0.5))
    with pytest.raises(ValueError, match="unknown backend 'openvino'; use tensorrt, tensorrt_rtx, aoti, onnx, torch or synthetic"):
        load_config(_write_config(tmp_path, backend="openvino", classes=["a"]))
    with pytest.raises(ValueError, match="needs 'decoder'"):
        load_config(_write_config(tmp_path, backend="tensorrt", vision_encoder="ve.engine", classes={"a": "a.npz"}))
    with pytest.raises(EngineError, match="TensorRT engine file not found: .*ve.engine"):
        load_config(_write_config(tmp_path, backend="tensorrt", vision_encoder="ve.engine", decoder="dec.engine",
                                  classes={"a": "a.npz"}))
    with pytest.raises(ValueError, match=r"segpost.json: output: Input should be .full., .device_full., .packed., .rle., .crop. or .lowres. \(got .jpeg.\)"):
        load_config(_write_config(tmp_path, backend="synthetic", classes=["a"], output="jpeg"), device="cpu")


def test_prompt_files(tmp_path):
    from segpost.config import _load_prompt

    with pytest.raises(EngineError, match="prompt file of class 'hand' not found"):
        _load_prompt("hand", str(tmp_path / "hand.npz"))
    np.savez(tmp_path / "hand.npz", feats=np.zeros((3, 8)))
    with pytest.raises(ValueError, match="needs a 'features' array"):
        _load_prompt("hand", str(tmp_path / "hand.npz"))
    np.savez(tmp_path / "hand.npz", features=np.ones((3, 8)), mask=np.array([1, 1, 0]))
    prompt = _load_prompt("hand", str(tmp_path / "hand.npz"))
    assert prompt.features.shape == (3, 8) and prompt.mask.tolist() == [1, 1, 0]


def test_synthetic_config_builds_a_pipeline(tmp_path):
    ve, dec, config = load_config(_write_config(tmp_path, backend="synthetic", classes=["red", "green"],
                                                max_cameras=2, max_frame_size=[480, 640], output="packed"), device="cpu")
    pipeline = MultiCameraPipeline(ve, dec, config)
    scene = Scene([(240, 320), (480, 640)], num_classes=2, seed=1)
    frames, truths = scene.render(0)
    assert_scene_seen(pipeline.process(frames), truths, classes=2)
