"""classes_per_call: every class in one decoder call (batch F x C) gives the records of one call
per class: exactly with the synthetic engines, and with the tiny Sam3Model on the CPU."""
import dataclasses
import json

import numpy as np
import pytest

from pipeline_cases import camera_sizes, geometry_for, make_pipeline, prompts
from segpost.config import load_config
from segpost.engines.base import EngineError
from segpost.pipeline import MultiCameraPipeline, PipelineConfig, resolve_classes_per_call
from segpost.postprocess import OutputKind
from segpost.synthetic.engines import SyntheticDecoder, SyntheticVisionEncoder
from segpost.synthetic.scene import Scene


def rounds_of(pipeline, scene, plan):
    """Records of rounds whose frames follow `plan` (camera indices present in each round)."""
    out = []
    for r, present in enumerate(plan):
        frames, _ = scene.render(r)
        result = pipeline.process([frames[c] if c in present else None for c in range(len(frames))])
        out.append({(camera, name): (fr.scores.copy(), fr.boxes.copy(), fr.query_ids.copy(), np.asarray(fr.masks).copy())
                    for camera, cam in result.cameras.items() for name, fr in cam.by_class.items()})
    return out


@pytest.mark.parametrize("output", [OutputKind.FULL, OutputKind.RLE])
def test_all_classes_in_one_call_equal_one_call_per_class_exactly(output):
    plan = [{0, 1, 2}, {0, 2}, {1}, {0, 1, 2}]   # the camera count changes: prompts are laid out again
    results = {}
    for per_call in (1, 2, "all"):
        pipeline, scene = make_pipeline("cpu", cameras=3, classes=4, output=output, classes_per_call=per_call)
        assert pipeline.classes_per_call == {1: 1, 2: 2, "all": 4}[per_call]
        results[per_call] = rounds_of(pipeline, scene, plan)
    for per_call in (2, "all"):
        for a, b in zip(results[1], results[per_call]):
            assert a.keys() == b.keys()
            for key in a:
                for x, y in zip(a[key], b[key]):
                    np.testing.assert_array_equal(x, y, err_msg=f"{per_call}: {key}")
    assert sum(len(v[0]) for r in results[1] for v in r.values()) > 20   # something was detected


def test_default_is_as_many_classes_as_the_decoder_batch_allows():
    assert resolve_classes_per_call(None, 4, 8, None) == 4
    assert resolve_classes_per_call(None, 4, 8, 32) == 4
    assert resolve_classes_per_call(None, 4, 8, 16) == 2
    assert resolve_classes_per_call(None, 4, 8, 8) == 1
    assert resolve_classes_per_call(None, 3, 8, 16) == 1       # 2 does not divide 3
    assert resolve_classes_per_call("all", 3, 2, None) == 3


@pytest.mark.parametrize("value,match", [
    (0, "divisor"), (-1, "divisor"), ("some", "divisor"), (3, "divisor"), (True, "divisor"), (8, "divisor"),
    (2.0, "divisor"),
])
def test_bad_values_are_clear_errors(value, match):
    with pytest.raises(ValueError, match=match):
        make_pipeline("cpu", cameras=2, classes=4, classes_per_call=value)


def test_a_decoder_whose_batch_range_is_too_small():
    geometry = geometry_for("cpu")
    decoder = SyntheticDecoder(geometry)
    decoder.max_batch = 8
    config = PipelineConfig(prompts(geometry), max_cameras=3, max_frame_size=(480, 640), classes_per_call="all")
    with pytest.raises(EngineError, match=r"takes batches up to 8; classes_per_call 'all' needs 3 cameras x 4 "
                                          r"classes = 12\. Rebuild the decoder with --classes-per-call 4"):
        MultiCameraPipeline(SyntheticVisionEncoder(geometry), decoder, config)
    encoder = SyntheticVisionEncoder(geometry)
    encoder.max_batch = 2
    with pytest.raises(EngineError, match="takes batches up to 2; the pipeline needs 3"):
        MultiCameraPipeline(encoder, SyntheticDecoder(geometry), dataclasses.replace(config, classes_per_call=1))


def test_config_file_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"], "classes_per_call": 1}))
    _, _, config = load_config(str(path), device="cpu")
    assert config.classes_per_call == 1
    path.write_text(json.dumps({"backend": "synthetic", "classes": ["red", "green"], "classes_per_call": "some"}))
    ve, dec, config = load_config(str(path), device="cpu")
    with pytest.raises(ValueError, match="classes_per_call"):
        MultiCameraPipeline(ve, dec, config)


def test_memory_report_grows_with_the_classes_per_call():
    one, _ = make_pipeline("cpu", cameras=3, classes=4, classes_per_call=1)
    four, _ = make_pipeline("cpu", cameras=3, classes=4, classes_per_call=4)
    for name in ("pred_masks", "fpn_feat_0"):   # F x C rows instead of F
        assert four._buffers[name].nbytes == 4 * one._buffers[name].nbytes
    grown = sum(four._buffers[n].nbytes - one._buffers[n].nbytes for n in four._buffers)
    assert four.memory_report()["io_buffers"] - one.memory_report()["io_buffers"] >= grown


def test_tiny_sam3_all_classes_in_one_call_equal_one_call_per_class():
    pytest.importorskip("torch")
    try:
        from segpost.engines.sam3_onnx import tiny_sam3_config
        from segpost.engines.torch_sam3 import Sam3Torch
        tiny_sam3_config()
    except ImportError as exc:
        pytest.skip(f"needs transformers >= 5 with Sam3Model: {exc}")
    from segpost.pipeline import ClassPrompt

    sizes = camera_sizes("cpu", 3)
    scene = Scene(sizes, seed=3)
    records = {}
    for per_call in (1, "all"):
        sam3 = Sam3Torch(None, dtype=np.float32, device="cpu", config=tiny_sam3_config(), seed=3)
        classes = [ClassPrompt(*p) for p in sam3.text_prompts(["person", "hand", "counter", "blow gun"])]
        config = PipelineConfig(classes, max_cameras=3, max_frame_size=(480, 640), score_threshold=0.0,
                                top_k=5, classes_per_call=per_call)
        pipeline = MultiCameraPipeline(sam3.vision_encoder, sam3.decoder, config)
        records[per_call] = rounds_of(pipeline, scene, [{0, 1, 2}, {1, 2}])
    for a, b in zip(records[1], records["all"]):
        assert a.keys() == b.keys()
        for key in a:
            scores_a, boxes_a, queries_a, masks_a = a[key]
            scores_b, boxes_b, queries_b, masks_b = b[key]
            np.testing.assert_array_equal(queries_a, queries_b, err_msg=str(key))   # the same kept queries
            np.testing.assert_allclose(scores_a, scores_b, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(boxes_a, boxes_b, rtol=0, atol=1e-2)
            assert np.mean(masks_a != masks_b) < 1e-4, str(key)


def test_tiny_sam3_compiled_equals_eager_and_never_recompiles(tmp_path, monkeypatch):
    """compile="default" on the CPU (inductor's C++ backend): the same kept queries and scores as
    eager; rounds with fewer cameras run the compiled batch (no new graphs)."""
    torch = pytest.importorskip("torch")
    try:
        from segpost.engines.sam3_onnx import tiny_sam3_config
        from segpost.engines.torch_sam3 import Sam3Torch
        tiny_sam3_config()
    except ImportError as exc:
        pytest.skip(f"needs transformers >= 5 with Sam3Model: {exc}")
    from segpost.pipeline import ClassPrompt

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    sizes = camera_sizes("cpu", 3)
    scene = Scene(sizes, seed=3)
    records, messages = {}, []
    for mode in ("off", "default"):
        sam3 = Sam3Torch(None, dtype=np.float32, device="cpu", config=tiny_sam3_config(), seed=3, compile=mode,
                         log=messages.append)
        classes = [ClassPrompt(*p) for p in sam3.text_prompts(["person", "hand", "counter", "blow gun"])]
        config = PipelineConfig(classes, max_cameras=3, max_frame_size=(480, 640), score_threshold=0.0, top_k=5)
        pipeline = MultiCameraPipeline(sam3.vision_encoder, sam3.decoder, config)
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        records[mode] = rounds_of(pipeline, scene, [{0, 1, 2}, {0, 2}, {1}, {0, 1, 2}])
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "a round recompiled"
    assert any("compiling the sam3 decoder (torch) for batch 12" in m for m in messages)
    assert any("compiled in" in m for m in messages)
    for a, b in zip(records["off"], records["default"]):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key][2], b[key][2], err_msg=str(key))
            np.testing.assert_allclose(a[key][0], b[key][0], rtol=1e-4, atol=1e-5)


def test_compile_settings_are_checked():
    pytest.importorskip("torch")
    from segpost.engines.base import EngineError as Error
    from segpost.engines.torch_sam3 import torch_compile_mode

    assert torch_compile_mode("off", False) is None
    assert torch_compile_mode("default", True) == "reduce-overhead"
    assert torch_compile_mode("max-autotune", False) == "max-autotune-no-cudagraphs"
    with pytest.raises(Error, match="compile must be one of"):
        torch_compile_mode("fast", False)
    with pytest.raises(Error, match="cuda_graphs needs compile"):
        torch_compile_mode("off", True)
