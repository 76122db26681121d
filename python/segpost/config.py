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
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from typing_extensions import Annotated

from ._settings import Int, Number, describe_errors, fields_of, numbers
from .engines.base import Engine, EngineError
from .engines.registry import BackendRequest, backends, find_backend, load_prompt
from .io.secrets import expand_env
from .pipeline import ClassPrompt, PipelineConfig
from .postprocess_config import MaskMode, OutputKind, Size, TopK
from .schedule import ScheduleConfig, schedule_object
from .track import TrackerConfig


def _track_value(value: Any) -> Any:
    # "track": true is TrackerConfig's defaults, false (or null) no tracking.
    return {} if value is True else None if value is False else value


def _mask_mode_name(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in MaskMode.__members__:
        return value.lower()
    raise ValueError(f"mask_mode must be logit or probability, got {value!r}")


def _pipeline(name: str) -> Any:
    """PipelineConfig's declaration of ``name``, as the run config's key of that name."""
    return fields_of(PipelineConfig)[name]


def _backend_modules() -> Tuple[ModuleType, ...]:
    """The modules that define config backends; importing one registers its backends (and loads
    no optional library). Their order is the order of the names in messages."""
    from .engines import aoti, onnx_runtime, tensorrt, torch_sam3
    from .synthetic import engines as synthetic_engines

    return tensorrt, aoti, onnx_runtime, torch_sam3, synthetic_engines


_BACKENDS = " | ".join(b.name for b in backends(_backend_modules()))   # as registered


class UiConfig(BaseModel):
    """The run config's "ui": the live page (segpost[ui]); `segpost run --ui...` flags override it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    listen: str = Field(description="HOST:PORT of the live page, e.g. 127.0.0.1:8080 (loopback unless key_file)")
    key_file: Optional[str] = Field(None, description="file of API keys, one a line (Bearer or the login page); "
                                                      "needed beyond loopback; relative to this file")
    allow_unauthenticated: bool = Field(False, description="listen beyond loopback without keys (a trusted network)")
    certfile: Optional[str] = Field(None, description="HTTPS: PEM certificate chain; relative to this file")
    keyfile: Optional[str] = Field(None, description="HTTPS: PEM private key; relative to this file")
    fps: Number = Field(4.0, gt=0, le=60, description="frames a second sent per watched camera")
    width: Int = Field(640, ge=16, le=7680, description="the live page's frames are at most this wide")


class RunConfig(BaseModel):
    """A `segpost run` config file (and the "pipeline" of a fleet or serve config): every key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: str = Field("tensorrt", description=_BACKENDS)
    vision_encoder: Optional[str] = Field(None, description="engine or .onnx file (engine-file backends)")
    decoder: Optional[str] = Field(None, description="engine or .onnx file (engine-file backends)")
    classes: Union[Dict[str, str], List[str]] = Field(
        description="class name -> prompt file (.npz, engine-file backends), or a list of class names (torch, "
                    "synthetic)")
    tensor_names: Optional[Dict[str, Any]] = Field(
        None, description="contract name -> the engines' own name, where they differ (segpost inspect prints it)")
    weights: Optional[str] = Field(None, description="torch: a local Sam3Model folder; null: random weights")
    dtype: str = Field("float16", description="torch: the model's dtype")
    compile: str = Field("off", description="torch: torch.compile mode (off, default, max-autotune)")
    cuda_graphs: bool = Field(False, description="torch: run through CUDA graphs")
    compile_cache: Optional[str] = Field(None, description="torch: torch.compile's cache folder")
    busy_ms: Tuple[numbers(ge=0), numbers(ge=0)] = Field(
        (0.0, 0.0), description="synthetic: [encoder, decoder] milliseconds of stand-in compute a call")
    startup_s: Number = Field(0.0, ge=0, le=3600, description="synthetic: seconds of stand-in start-up")
    faults: Optional[Dict[str, Any]] = Field(None, description="synthetic: injected engine faults (tests)")
    max_cameras: Int = _pipeline("max_cameras")
    max_frame_size: Size = _pipeline("max_frame_size")
    score_threshold: Number = _pipeline("score_threshold")
    mask_threshold: Optional[Number] = _pipeline("mask_threshold")
    mask_mode: Annotated[Literal["logit", "probability"], BeforeValidator(_mask_mode_name)] = Field(
        "logit", description=_pipeline("mask_mode").description)
    top_k: TopK = _pipeline("top_k")
    capacity: Int = _pipeline("capacity")
    output: Literal[tuple(k.value for k in OutputKind)] = Field(  # type: ignore[valid-type]
        "full", description=_pipeline("output").description)
    resize: str = _pipeline("resize")
    classes_per_call: Union[Int, Literal["all"], None] = _pipeline("classes_per_call")
    track: Annotated[Optional[TrackerConfig], BeforeValidator(_track_value)] = Field(
        None, description="true, false, or an object of tracker settings (below): track identities")
    schedule: Annotated[Optional[ScheduleConfig], BeforeValidator(schedule_object)] = Field(
        None, description="every_frame, on_change, or an object of schedule settings (below); null: every_frame")
    zones: Optional[Dict[str, Any]] = Field(
        None, description="zones and lines keyed by camera (\"0\", \"1\", ...): segpost.zones' format; turns "
                          "tracking on")
    zone_rule: str = _pipeline("zone_rule")
    ui: Optional[UiConfig] = Field(None, description="segpost run's live page (as its --ui flags)")


def validated(model: Any, raw: Dict[str, Any], where: str, secret_keys=()) -> Any:
    """``raw`` as ``model``; a ValueError naming the file and each key at fault."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{where}: " + describe_errors(exc, secret_keys=secret_keys, model=model)) from None


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

def read_config(path: str, model: Any, what: str = "config file", secret_keys=()) -> Any:
    """The one reader of segpost's config files: JSON, ${ENV} expanded, checked against its declared
    model; every error names the file and the key (``fleet.json: sink.shards: ...``)."""
    return validated(model, read_json(path, what), path, secret_keys)


def read_run_settings(path: str) -> RunConfig:
    """A `segpost run` config's keys, checked (paths in its "ui" block made relative to the file)."""
    settings = read_config(path, RunConfig)
    if settings.ui is None:
        return settings
    folder = os.path.dirname(os.path.abspath(path))
    files = {key: os.path.join(folder, value) for key in ("key_file", "certfile", "keyfile")
             if isinstance(value := getattr(settings.ui, key), str)}
    return settings.model_copy(update={"ui": settings.ui.model_copy(update=files)})


def read_app_config(path: str, known: Any, what: str) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    """A fleet or serve config: (its keys, the pipeline config object, the folder the pipeline's
    relative paths start from); "pipeline" is a `segpost run` config file or the object inline.
    ``known``: the file's model (its keys are checked by the caller's validation)."""
    raw = read_json(path, what)
    keys = set(known.model_fields) if hasattr(known, "model_fields") else set(known)
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known keys are {sorted(keys)}")
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
    settings = validated(RunConfig, raw, path)   # every key, checked against its declaration
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
    return vision_encoder, decoder, _pipeline_config(path, settings, [ClassPrompt(*p) for p in prompts])


def _load_prompt(name: str, file: str) -> ClassPrompt:
    """A prompt file as a ClassPrompt (engines/registry.py reads it)."""
    return ClassPrompt(*load_prompt(name, file))


def _pipeline_config(path: str, settings: RunConfig, prompts) -> PipelineConfig:
    zones, zone_rule = _zones(path, settings, [p.name for p in prompts])
    track = settings.track
    passed = {name: getattr(settings, name) for name in fields_of(PipelineConfig) if name in RunConfig.model_fields
              and name not in ("classes", "mask_mode", "output", "track", "schedule", "zones", "zone_rule")}
    return PipelineConfig(classes=prompts, **passed, mask_mode=MaskMode[settings.mask_mode.upper()],
                          output=OutputKind(settings.output),
                          track=track if zones is None else (track or TrackerConfig()),   # zones need tracks
                          schedule=settings.schedule,
                          zones=zones, zone_rule=zone_rule)


def _zones(path: str, settings: RunConfig, class_names) -> Tuple[Any, str]:
    """The "zones" block as a ZoneSet and the "zone_rule"; one-line errors naming the file and the
    zone. Camera keys are checked where the cameras are known (segpost run: its sources)."""
    from .zones import ZoneSet
    from .zones.config import ZONE_RULES

    rule = settings.zone_rule
    if rule not in ZONE_RULES:
        raise ValueError(f"{path}: zone_rule must be one of {list(ZONE_RULES)}, got {rule!r}")
    if settings.zones is None:
        return None, rule
    return ZoneSet.from_value(settings.zones, class_names=class_names, where=f"{path}: zones"), rule
