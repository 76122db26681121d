"""Engines named otherwise, without a prompt-mask input (the engines users bring), on real ONNX
graphs: the tiny SAM3 written with other names (tests/users_engines.py) run by onnxruntime
through the tensor_names map against the contract-named export, and `segpost inspect` on ONNX
pairs. The exports are conftest.py's session fixtures, shared with test_export.py.
"""
import dataclasses
import json
import os

import numpy as np
import pytest

from export_cases import CLASSES, frames, renamed_graph, skip_without_export_packages

skip_without_export_packages()

import users_engines  # noqa: E402
from segpost.engines.base import EngineError  # noqa: E402
from segpost.engines.build import trtexec_commands  # noqa: E402


def _onnx_pipeline(tmp_path, name, paths, prompts, tensor_names=None):
    from segpost.config import load_config
    from segpost.engines.pipeline_file import write_pipeline_config
    from segpost.pipeline import MultiCameraPipeline

    path = write_pipeline_config(str(tmp_path / f"{name}.json"), "onnx", *paths, prompts, max_cameras=3,
                                 max_frame_size=(120, 160))
    if tensor_names is not None:
        config = json.loads(open(path).read())
        open(path, "w").write(json.dumps(dict(config, tensor_names=tensor_names)))
    vision_encoder, decoder, config = load_config(path, device="cpu")
    return MultiCameraPipeline(vision_encoder, decoder, dataclasses.replace(config, score_threshold=0.0, top_k=4))


def _every_token(prompts, folder):
    """The text encoder's prompts as a decoder without prompt_mask takes them: P tokens, no mask."""
    files = {}
    for name, file in prompts.items():
        with np.load(file) as data:
            files[name] = str(folder / os.path.basename(file))
            np.savez(files[name], features=data["features"])
    return files


def test_engines_named_otherwise_run_through_the_map_like_the_contract_export(exported, users_exported, tmp_path):
    """onnxruntime runs the graphs with other names and no prompt-mask input through tensor_names
    and detects what the contract-named graphs detect with the same prompts (all P tokens valid);
    without a presence output, the same queries with scores sigmoid(logit)."""
    out, paths, _, prompts = exported
    full = _every_token(prompts, tmp_path)
    contract = _onnx_pipeline(tmp_path, "contract", paths, full)
    users = _onnx_pipeline(tmp_path, "users", users_exported, full, users_engines.OTHER_NAMES)
    assert not users.geometry.prompt_mask and users.geometry.presence
    decoder = users_exported[1]
    no_presence = renamed_graph(decoder, tmp_path / "decoder-without-presence.onnx", drop_outputs=("presence",))
    without = {n: v for n, v in users_engines.OTHER_NAMES.items() if n != "presence_logits"}
    bare = _onnx_pipeline(tmp_path, "bare", (users_exported[0], no_presence), full, without)
    assert not bare.geometry.presence
    for seed, sizes in ((0, [(120, 160), (90, 120), (120, 160)]), (1, [(64, 96), (120, 160)])):
        ours, theirs, scored = (p.process(frames(seed, sizes)) for p in (users, contract, bare))
        for camera in range(len(sizes)):
            for name in CLASSES:
                a, b, c = (r.cameras[camera].by_class[name] for r in (ours, theirs, scored))
                assert len(a) == len(b) == 4
                # the same computation (all tokens valid either way): the same bits
                for field in ("query_ids", "scores", "boxes"):
                    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
                np.testing.assert_array_equal(np.asarray(a.masks), np.asarray(b.masks))
                # no presence: the same ranking, every score divided by the frame's sigmoid(presence)
                np.testing.assert_array_equal(c.query_ids, a.query_ids)
                ratio = a.scores / c.scores
                assert 0 < ratio[0] < 1 and np.allclose(ratio, ratio[0], rtol=1e-5)
    # the text encoder's own prompt files pad with a mask that this decoder cannot honour
    with pytest.raises(EngineError, match=r"decoder.onnx \(onnxruntime\) has no prompt_mask input, so it attends to "
                                          r"all 32 prompt tokens, padding included"):
        _onnx_pipeline(tmp_path, "padded", users_exported, prompts, users_engines.OTHER_NAMES)


def _inspect(capsys, *args):
    from segpost.cli import main

    code = main(["inspect", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_onnx_pairs(exported, users_exported, tmp_path, capsys):
    _, paths, _, _ = exported
    code, out, _ = _inspect(capsys, *paths)
    assert code == 0 and "(ONNX)" in out and "prompt_mask      input   [B,32]" in out
    assert "fits the contract: images 112x112 float32, 200 queries, masks 32x32, prompts [32,32]" in out
    assert "no tensor_names needed" in out
    code, out, _ = _inspect(capsys, *users_exported)
    assert code == 0 and "pixel_values  input   [B,3,112,112]  float32  dynamic  images" in out
    assert "no prompt_mask input" in out
    assert json.loads(out.split('"tensor_names": ', 1)[1]) == users_engines.OTHER_NAMES
    # fpn_feat_2 and fpn_pos_2 under names that do not say which: asked for, never guessed
    levels = {"fpn_feat_2": "fpn_2", "fpn_pos_2": "pos_2"}
    ambiguous = [renamed_graph(p, tmp_path / os.path.basename(p), levels) for p in users_exported]
    code, out, _ = _inspect(capsys, *ambiguous)
    assert code == 1 and "the shapes cannot tell which of fpn_2, pos_2 is fpn_feat_2 / fpn_pos_2" in out
    assert "fpn_2        input   [B,32,8,8]     float32  dynamic  fpn_feat_2 or fpn_pos_2" in out
    code, out, _ = _inspect(capsys, "--tensor-names", json.dumps(levels), *ambiguous)
    assert code == 0 and json.loads(out.split('"tensor_names": ', 1)[1]) == dict(users_engines.OTHER_NAMES, **levels)
    # a pair from two exporters: the decoder does not take the encoder's outputs by their names
    code, out, _ = _inspect(capsys, paths[0], users_exported[1])
    assert code == 1 and "does not fit the contract: decoder engine" in out
    assert "missing input tensor(s) ['fpn_feat_0', 'fpn_feat_1', 'prompt_features']" in out
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    code, _, err = _inspect(capsys, str(tmp_path / "junk.onnx"), paths[1])
    assert code == 2 and "junk.onnx is not a readable ONNX model" in err


def test_a_maskless_export_with_the_contract_names_builds_and_inspects(users_exported, tmp_path, capsys):
    """Without prompt_mask the builder's profiles leave it out, and no map is needed."""
    folder = tmp_path / "maskless"
    folder.mkdir()
    back = {own: name for name, own in users_engines.OTHER_NAMES.items()}
    paths = [renamed_graph(p, folder / os.path.basename(p), back) for p in users_exported]
    vision, decoder = trtexec_commands(str(folder), "/engines", max_batch=4)
    assert "--maxShapes=images:4x3x112x112" in vision
    assert ("--maxShapes=fpn_feat_0:4x32x32x32,fpn_feat_1:4x32x16x16,fpn_feat_2:4x32x8x8,fpn_pos_2:4x32x8x8,"
            "prompt_features:4x32x32") in decoder
    code, out, _ = _inspect(capsys, *paths)
    assert code == 0 and "no prompt_mask input" in out and "no tensor_names needed" in out
