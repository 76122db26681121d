"""SAM3 (transformers' Sam3Model) to the two ONNX graphs of the engine contract, and its prompts.

``export_onnx`` writes ``vision-encoder.onnx`` (images -> fpn_feat_0..2, fpn_pos_2) and
``decoder.onnx`` (the FPN tensors + prompt_features + prompt_mask -> pred_masks, pred_boxes,
pred_logits, presence_logits), every tensor with a dynamic batch axis 0. ``write_prompts`` turns
class names into the per-class .npz files the pipeline loads. Both graphs are the same
computation as the PyTorch backend (Sam3Torch.vision_features / Sam3Torch.detect).
"""
from __future__ import annotations

import argparse
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .contract import DECODER_INPUTS, DECODER_OUTPUTS, FPN_TENSORS, VISION_INPUTS
from .onnx_runtime import load_onnx_graph
from .torch_sam3 import Sam3Torch

VISION_ENCODER_FILE = "vision-encoder.onnx"
DECODER_FILE = "decoder.onnx"
OPSET = 18


def tiny_sam3_config(width: int = 32, image_size: int = 112) -> Any:
    """A Sam3Config of the real architecture at toy size (two ViT layers, one layer per transformer
    stage, `width` channels): seconds to export and run on a CPU, for tests and CI."""
    from transformers import Sam3Config, Sam3ViTConfig

    grid = image_size // 14
    small = dict(hidden_size=width, intermediate_size=2 * width, num_attention_heads=2)
    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(model_type=Sam3ViTConfig.model_type, num_hidden_layers=2, image_size=image_size,
                                 patch_size=14, window_size=grid // 2, global_attn_indexes=[1],
                                 pretrain_image_size=image_size // 2, **small),
            fpn_hidden_size=width, backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]),
        text_config=dict(num_hidden_layers=1, projection_dim=width, **small),
        geometry_encoder_config=dict(num_layers=1, **small),
        detr_encoder_config=dict(num_layers=1, **small),
        detr_decoder_config=dict(num_layers=1, **small),
        mask_decoder_config=dict(hidden_size=width, num_attention_heads=2),
    )


def _graphs(sam3: Sam3Torch) -> Tuple[Any, Any]:
    torch = sam3.torch
    dtype = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}[sam3.dtype]

    class VisionEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = sam3.model  # registered, so the exporter sees the weights

        def forward(self, images):
            return tuple(t.to(dtype) for t in sam3.vision_features(images))

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = sam3.model

        def forward(self, fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2, prompt_features, prompt_mask):
            # A half model computes some of its heads in float (type promotion): every output in the
            # engine's dtype, as the contract's specs say.
            return tuple(t.to(dtype) for t in sam3.detect(fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2,
                                                          prompt_features, prompt_mask))

    return VisionEncoder().eval(), Decoder().eval()


def example_inputs(sam3: Sam3Torch, batch: int = 2, seed: int = 0) -> Dict[str, Any]:
    """Random images and prompts of the model's shapes (FPN inputs from the vision encoder)."""
    torch = sam3.torch
    spec = sam3.vision_encoder.tensors
    generator = torch.Generator().manual_seed(seed)
    dtype = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}[sam3.dtype]
    images = torch.rand((batch,) + spec["images"].shape[1:], generator=generator).mul(2).sub(1)
    length, width = sam3.decoder.tensors["prompt_features"].shape[1:]
    features = torch.randn(batch, length, width, generator=generator)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, :3] = True  # a few valid tokens, as a short class name gives
    inputs = {"images": images, "prompt_features": features, "prompt_mask": mask}
    inputs = {name: t.to(sam3.device, dtype if t.is_floating_point() else t.dtype) for name, t in inputs.items()}
    with torch.inference_mode():
        inputs.update(zip(FPN_TENSORS, sam3.vision_features(inputs["images"])))
    return inputs


def export_onnx(sam3: Sam3Torch, out_dir: str, *, batch: int = 2, opset: int = OPSET,
                tensor_names: Optional[Mapping[str, str]] = None, prompt_mask: bool = True) -> Tuple[str, str]:
    """Write both graphs into out_dir; returns their paths. Traced at `batch` with batch dynamic,
    in the model's dtype: float16 graphs are what strongly typed builders (TensorRT-RTX) need.
    `tensor_names` (contract name -> name to write) and ``prompt_mask=False`` (a decoder that
    attends to all P prompt tokens) write graphs as other exporters do: the engines users bring.

    Exporting changes the state of a transformers Sam3Model (seen with 5.23: eager outputs
    differ afterwards), so compute any PyTorch reference before, or on another instance."""
    torch = sam3.torch
    os.makedirs(out_dir, exist_ok=True)
    vision_encoder, decoder = _graphs(sam3)
    decoder_inputs = DECODER_INPUTS if prompt_mask else DECODER_INPUTS[:-1]
    if not prompt_mask:
        decoder = _every_token_valid(torch, decoder)
    inputs = example_inputs(sam3, batch)
    paths = os.path.join(out_dir, VISION_ENCODER_FILE), os.path.join(out_dir, DECODER_FILE)
    named = lambda names: [(tensor_names or {}).get(n, n) for n in names]  # noqa: E731
    # The TorchScript exporter: torch.export (dynamo=True) fails on Sam3Model's decoder views.
    for module, engine, path, names_in, names_out in (
            (vision_encoder, sam3.vision_encoder, paths[0], VISION_INPUTS, FPN_TENSORS),
            (decoder, sam3.decoder, paths[1], decoder_inputs, DECODER_OUTPUTS)):
        args = tuple(inputs[n] for n in names_in)
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on Python-level branches of Sam3Model; the tests check the graphs.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(module, args, path, input_names=named(names_in), output_names=named(names_out),
                              opset_version=opset, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in named(names_in) + named(names_out)})
        _fix_output_shapes(path, dict(zip(named(names_out), (engine.tensors[n].shape[1:] for n in names_out))))
    return paths


def _every_token_valid(torch: Any, decoder: Any) -> Any:
    """The decoder graph without a prompt_mask input: every prompt token is attended to."""

    class Maskless(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2, prompt_features):
            valid = torch.ones(prompt_features.shape[:2], dtype=torch.bool, device=prompt_features.device)
            return self.decoder(fpn_feat_0, fpn_feat_1, fpn_feat_2, fpn_pos_2, prompt_features, valid)

    return Maskless().eval()


def _typed_graph(model: Any) -> Dict[str, int]:
    """Element type of every tensor the graph names, from ONNX's (lenient) type inference."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return types


def make_half_graph_valid(model: Any) -> Tuple[int, int]:
    """The two places where the exporter writes a half Sam3Model as ONNX that the standard does
    not allow; fixed as PyTorch computes them (returns how many of each were fixed):
    - Range on float16 (torch.arange(..., dtype=half) in the position encodings): computed in
      float and cast back to float16;
    - LayerNormalization of a float input with float16 weights (half + float position terms
      promote to float in PyTorch, and its layer_norm accepts the mix): the weights are cast to
      the input's type, so the layer keeps computing in float."""
    from onnx import TensorProto, helper

    types = _typed_graph(model)
    nodes, ranges, norms = [], 0, 0
    for node in model.graph.node:
        if node.op_type == "Range" and any(types.get(i) == TensorProto.FLOAT16 for i in node.input):
            floats = [f"{i}__float" for i in node.input]
            nodes += [helper.make_node("Cast", [i], [f], to=TensorProto.FLOAT, name=f) for i, f in zip(node.input, floats)]
            nodes.append(helper.make_node("Range", floats, [f"{node.output[0]}__float"], name=node.name))
            nodes.append(helper.make_node("Cast", [f"{node.output[0]}__float"], [node.output[0]], to=TensorProto.FLOAT16,
                                          name=f"{node.output[0]}__half"))
            ranges += 1
            continue
        if node.op_type == "LayerNormalization" and len(node.input) > 1 and types.get(node.input[0]) \
                and types.get(node.input[0]) != types.get(node.input[1]):
            kind = types[node.input[0]]
            weights = [f"{i}__as_input_type__{node.name}" for i in node.input[1:]]
            nodes += [helper.make_node("Cast", [i], [w], to=kind, name=w) for i, w in zip(node.input[1:], weights)]
            del node.input[1:]
            node.input.extend(weights)
            norms += 1
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]   # stale types; consumers infer them again
    return ranges, norms


def _fix_output_shapes(path: str, shapes: Dict[str, Tuple[int, ...]]) -> None:
    """The exporter leaves output axes it cannot infer symbolic (pred_masks [batch, Einsum...]);
    write the sizes the model produced when Sam3Torch probed it, the contract's fixed axes. A half
    graph also gets make_half_graph_valid."""
    import onnx

    model = onnx.load(path, load_external_data=False)  # external weights stay where they are
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer) or \
            any(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for v in model.graph.input):
        make_half_graph_valid(model)
    for output in model.graph.output:
        for dim, size in zip(output.type.tensor_type.shape.dim[1:], shapes[output.name]):
            dim.dim_value = size
    onnx.save(model, path)
    onnx.checker.check_model(path, full_check=True)   # strict type inference: an invalid graph fails here


def onnx_tensor_shapes(path: str) -> Dict[str, Tuple[Any, ...]]:
    """name -> shape of every graph input and output (a dynamic axis is its name, e.g. 'batch');
    reads the graph only, not the weights."""
    model = load_onnx_graph(path)
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_param if d.dim_param else d.dim_value for d in dims)
    return shapes


def write_prompts(sam3: Sam3Torch, names: Sequence[str], out_dir: str) -> Dict[str, str]:
    """One .npz per class (``features`` [P, D] float32, ``mask`` [P] bool, P = the prompt length)
    from the model's text encoder; returns class name -> file path."""
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for name, features, mask in sam3.text_prompts(names):
        path = os.path.join(out_dir, "".join(c if c.isalnum() or c in "-_" else "_" for c in name) + ".npz")
        if path in files.values():
            raise ValueError(f"class names {names} give the same file name {os.path.basename(path)}")
        np.savez(path, features=features.astype(np.float32), mask=mask.astype(bool))
        files[name] = path
    return files


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--weights / --random / --tiny and --device: which Sam3Model the engines/ scripts load."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", help="a Sam3Model directory, or a Hugging Face id already in the local cache")
    which.add_argument("--random", action="store_true", help="full-size model with random weights (shapes, timing)")
    which.add_argument("--tiny", action="store_true", help="toy-size model with random weights (tests)")
    parser.add_argument("--device", default="cpu", help="where to run the model while exporting (cpu or cuda)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="float32 (TensorRT makes fp16 engines with --fp16), or float16: the graphs of the half "
                             "model, for strongly typed builders (TensorRT-RTX)")


def load_model(args: argparse.Namespace) -> Sam3Torch:
    """The model the arguments name, in the dtype they ask for."""
    return Sam3Torch(args.weights, dtype=np.dtype(getattr(args, "dtype", "float32")), device=args.device,
                     config=tiny_sam3_config() if args.tiny else None)
