"""``segpost inspect VISION_ENGINE DECODER_ENGINE``: both engine files' tensors, whether the pair
fits segpost's engine contract, and the ``tensor_names`` block that binds it.

Exit status: 0 when the pair fits (the map printed, if one is needed), 1 when it does not or
when the shapes cannot tell two tensors apart (name them with --tensor-names), 2 when a file or
the package that reads it is missing, or a file cannot be read.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional

from ..engines.base import EngineError, EngineUnreadable
from ..engines.files import FORMATS, EngineFile, read_engine_file
from ..engines.tensor_names import Match, match_engines, rename_tensors, split_tensor_names


def add_parser(commands) -> None:
    inspect = commands.add_parser("inspect", help="show two engine files' tensors, whether they fit the contract, "
                                                  "and the tensor_names map they need")
    inspect.add_argument("vision_encoder", metavar="VISION_ENGINE", help=".engine/.plan, .onnx or .pt2 file")
    inspect.add_argument("decoder", metavar="DECODER_ENGINE", help=".engine/.plan, .onnx or .pt2 file")
    inspect.add_argument("--backend", choices=sorted(FORMATS),
                         help="the files' format (default: from the extension; TensorRT-RTX engines need tensorrt_rtx)")
    inspect.add_argument("--tensor-names", metavar="JSON",
                         help='entries of the map that you know, checked with the rest: {"fpn_pos_2": "pos"} or a '
                              "JSON file holding one (or a pipeline config with tensor_names)")
    inspect.set_defaults(handler=run_command)


def _given(text: Optional[str]) -> Optional[Dict[str, str]]:
    if text is None:
        return None
    try:
        if os.path.isfile(text):
            with open(text) as f:
                value = json.load(f)
            if isinstance(value, dict) and "classes" in value:   # a pipeline config
                return value.get("tensor_names", {})
            return value
        return json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--tensor-names: neither a JSON object nor a readable JSON file ({exc})") from None


def _table(title: str, engine: EngineFile, roles: Dict[str, str]) -> List[str]:
    rows = [("tensor", "kind", "shape", "dtype", "batch", "role")]
    for name, spec in engine.tensors.items():
        rows.append((name, "input" if spec.is_input else "output", spec.dims(), spec.dtype.name,
                     engine.batch.get(name, "-"), roles.get(name, "?")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [f"{title}: {engine.name} ({engine.format})"] + \
        ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _verdict(match: Match) -> List[str]:
    if not match.fits:
        return [f"does not fit the contract: {match.message}"]
    g = match.geometry
    lines = [f"fits the contract: images {g.image_size}x{g.image_size} {g.image_dtype.name}, {g.num_queries} queries, "
             f"masks {g.mask_size[0]}x{g.mask_size[1]}, prompts [{g.prompt_length},{g.prompt_width}]"]
    if not g.prompt_mask:
        lines.append(f"  no prompt_mask input: prompts are bound without one, so each prompt file must hold "
                     f"{g.prompt_length} valid tokens (features [{g.prompt_length},{g.prompt_width}], no mask or an "
                     "all-true one)")
    if not g.presence:
        lines.append("  no presence output: score = sigmoid(pred_logits), as transformers scores without presence")
    if match.tensor_names:
        block = json.dumps(match.tensor_names, indent=2).replace("\n", "\n  ")
        lines += ["add to the pipeline config:", f'  "tensor_names": {block}']
    else:
        lines.append("the engines use the contract's names: no tensor_names needed")
    return lines


def run_command(args: Any) -> int:
    try:
        engines = [read_engine_file(path, args.backend) for path in (args.vision_encoder, args.decoder)]
    except EngineUnreadable as exc:
        print(f"segpost inspect: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:   # read, but a tensor segpost cannot bind
        print(f"does not fit the contract: {exc}")
        return 1
    given = _given(args.tensor_names)
    for engine, names in zip(engines, split_tensor_names(given, "--tensor-names")):
        rename_tensors(engine.name, engine.tensors, names)   # refuses entries that name no tensor (exit 2)
    match = match_engines(*engines, given=given)
    lines = _table("vision encoder", engines[0], match.roles.get("vision encoder", {})) + [""] + \
        _table("decoder", engines[1], match.roles.get("decoder", {})) + [""] + _verdict(match)
    print("\n".join(lines))
    return 0 if match.fits else 1
