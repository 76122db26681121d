"""Pipeline config files (JSON): which engines, which classes and prompts, which thresholds.

    {
      "backend": "tensorrt",                       # tensorrt | tensorrt_rtx | aoti | onnx | torch | synthetic
      "vision_encoder": "b8_q200/vision-encoder.engine",
      "decoder": "b8_q200/decoder.engine",
      "classes": {"person": "prompts/person.npz", "hand": "prompts/hand.npz"},
      "max_cameras": 8, "max_frame_size": [1080, 1920],
      "score_threshold": 0.5, "capacity": 128, "output": "full",
      "resize": "antialias",                       # or "bilinear" (cv2.INTER_LINEAR-like)
      "classes_per_call": "all",                   # or 1, or a divisor of the classes; default: what
                                                   # the decoder's batch range allows
      "tensor_names": {"presence_logits": "presence"},  # contract name -> the engines' own, where they differ
      "track": true,                               # or {"max_age": 60, ...}: segpost.TrackerConfig's fields
      "schedule": "every_frame",                   # or "on_change", or {"mode": "on_change", "max_interval": 2,
                                                   # ...}: segpost.schedule.ScheduleConfig's fields
      "zones": {"0": [{"name": "counter", "polygon": [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]}]},
                                                   # keyed by camera ("0", "1", ...): segpost.zones' format;
                                                   # turns tracking on (the "track" settings, else the defaults)
      "zone_rule": "mask"                          # or "bottom_centre" (the peers' test, for comparison)
    }

Relative paths are relative to the config file. A prompt file is an .npz with ``features``
[L, D] and optionally ``mask`` [L] (engines/extract_prompts.py writes them). The torch backend
takes ``weights`` (a local Sam3Model directory, or omitted for random weights) instead of engine
files and makes its prompts from the class names; ``compile`` ("off", "default", "max-autotune"),
``cuda_graphs`` and ``compile_cache`` (a folder) run it through torch.compile; the synthetic
backend takes class names only, and ``busy_ms`` [encoder, decoder] and ``startup_s`` to stand in
for a real engine's compute and start-up (the fleet's failover tests), and ``faults`` to make its
engines fail or hang on chosen calls (the fault-injection tests, tests/test_faults.py):
``{"raise": [[call, "vision_encoder"|"decoder"], ...], "hang": [[call, seconds], ...],
"raise_probability": p, "seed": n}``, calls counted per engine from 0 in each process; an injected
exception is an EngineError whose message says it was injected (synthetic/engines.py: Faults).
The onnx backend is the tensorrt one with .onnx files run by onnxruntime on the CPU (device cpu).
``tensor_names`` (engine-file backends) binds engines that name the contract's tensors otherwise;
``segpost inspect VISION_ENGINE DECODER_ENGINE`` prints the map a pair needs.
String values may name environment variables, ``"${NAME}"``, so that secrets stay out of files.
"""
from __future__ import annotations

import json
import os
from types import ModuleType
from typing import Any, Dict, Tuple

from .engines.base import Engine, EngineError
from .engines.registry import BackendRequest, backends, find_backend, load_prompt
from .io.secrets import expand_env
from .pipeline import ClassPrompt, PipelineConfig
from .postprocess import MaskMode, OutputKind
from .schedule import ScheduleConfig
from .track import TrackerConfig

_KNOWN = {"backend", "vision_encoder", "decoder", "weights", "classes", "max_cameras", "max_frame_size",
          "score_threshold", "mask_threshold", "mask_mode", "top_k", "capacity", "output", "dtype", "busy_ms",
          "resize", "classes_per_call", "compile", "cuda_graphs", "compile_cache", "tensor_names", "track",
          "startup_s", "faults", "schedule", "zones", "zone_rule"}


def read_json(path: str, what: str = "config file") -> Dict[str, Any]:
    """A JSON object from a file, with ${ENV} values expanded (errors name the file)."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise EngineError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a JSON object")
    return expand_env(raw, path)

def read_app_config(path: str, known: set, what: str) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    """A fleet or serve config: (its keys, the pipeline config object, the folder the pipeline's
    relative paths start from); "pipeline" is a `segpost run` config file or the object inline."""
    raw = read_json(path, what)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    base = os.path.dirname(os.path.abspath(path))
    pipeline = raw.get("pipeline")
    if isinstance(pipeline, str):
        pipeline_path = pipeline if os.path.isabs(pipeline) else os.path.join(base, pipeline)
        base, pipeline = os.path.dirname(os.path.abspath(pipeline_path)), read_json(pipeline_path)
    if not isinstance(pipeline, dict):
        raise ValueError(f"{path}: 'pipeline' must be a `segpost run` config file or object")
    return raw, pipeline, base


def load_config(path: str, device: str = "cuda") -> Tuple[Engine, Engine, PipelineConfig]:
    """Build both engines and the PipelineConfig a config file describes (EngineError/ValueError
    name the file and the key at fault)."""
    return build_from_config(read_json(path), os.path.dirname(os.path.abspath(path)), device, where=path)


def build_from_config(raw: Dict[str, Any], base: str, device: str = "cuda", where: str = "config"
                      ) -> Tuple[Engine, Engine, PipelineConfig]:
    """load_config for a config already read: relative paths are relative to `base`."""
    path = where
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known keys are {sorted(_KNOWN)}")
    backend_name = raw.get("backend", "tensorrt")
    modules = _backend_modules()
    known = backends(modules)
    for other in known:   # keys another backend owns (synthetic's startup_s, faults)
        for key in sorted(other.keys):
            if key in raw and other.name != backend_name:
                raise ValueError(f"{path}: {key} is for the {other.name} backend only")
    classes = raw.get("classes")
    if not classes:
        raise ValueError(f"{path}: 'classes' must name at least one class")
    files = [b.name for b in known if b.engine_files]
    if "tensor_names" in raw and backend_name not in files:
        raise ValueError(f"{path}: tensor_names is for engine files (backends {', '.join(files)}), "
                         f"not the {backend_name} backend")
    backend = find_backend(backend_name, modules, path)
    vision_encoder, decoder, prompts = backend.build(BackendRequest(raw, base, device, path))
    return vision_encoder, decoder, _pipeline_config(path, raw, [ClassPrompt(*p) for p in prompts])


def _backend_modules() -> Tuple[ModuleType, ...]:
    """The modules that define config backends; importing one registers its backends (and loads
    no optional library). Their order is the order of the names in messages."""
    from .engines import aoti, onnx_runtime, tensorrt, torch_sam3
    from .synthetic import engines as synthetic_engines

    return tensorrt, aoti, onnx_runtime, torch_sam3, synthetic_engines


def _load_prompt(name: str, file: str) -> ClassPrompt:
    """A prompt file as a ClassPrompt (engines/registry.py reads it)."""
    return ClassPrompt(*load_prompt(name, file))


def _pipeline_config(path: str, raw: Dict[str, Any], prompts) -> PipelineConfig:
    try:
        output = OutputKind(raw.get("output", "full"))
        mode = MaskMode[raw.get("mask_mode", "LOGIT").upper()]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}; output is one of {[k.value for k in OutputKind]}, mask_mode logit or probability") from None
    zones, zone_rule = _zones(path, raw, [p.name for p in prompts])
    track = TrackerConfig.from_value(raw.get("track"), f"{path}: track")
    return PipelineConfig(classes=prompts, max_cameras=raw.get("max_cameras", 8),
                          max_frame_size=tuple(raw.get("max_frame_size", (1080, 1920))),
                          score_threshold=raw.get("score_threshold", 0.5), mask_threshold=raw.get("mask_threshold"),
                          mask_mode=mode, top_k=raw.get("top_k"), capacity=raw.get("capacity", 128), output=output,
                          resize=raw.get("resize", "antialias"), classes_per_call=raw.get("classes_per_call"),
                          track=track if zones is None else (track or TrackerConfig()),   # zones need tracks
                          schedule=ScheduleConfig.from_value(raw.get("schedule"), f"{path}: schedule"),
                          zones=zones, zone_rule=zone_rule)


def _zones(path: str, raw: Dict[str, Any], class_names) -> Tuple[Any, str]:
    """The "zones" block as a ZoneSet and the "zone_rule"; one-line errors naming the file and the
    zone. Camera keys are checked where the cameras are known (segpost run: its sources)."""
    from .zones import ZoneSet
    from .zones.config import ZONE_RULES

    rule = raw.get("zone_rule", "mask")
    if rule not in ZONE_RULES:
        raise ValueError(f"{path}: zone_rule must be one of {list(ZONE_RULES)}, got {rule!r}")
    if raw.get("zones") is None:
        return None, rule
    return ZoneSet.from_value(raw["zones"], class_names=class_names, where=f"{path}: zones"), rule
