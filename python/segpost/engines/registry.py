"""Engine backends by name. Each backend module registers its builder where it is defined
(``@register_backend("onnx")``), so a backend's name is written once; the config reader
(segpost.config) imports the backend modules and looks the name up here.

Registering imports nothing: a builder imports its optional library (tensorrt, torch,
onnxruntime) when it runs, so naming one backend in a config never loads another's library.
This module knows no backend module itself (the synthetic engines live in segpost.synthetic,
above the core): whoever looks a name up says which modules offer backends, in the order their
names are listed in messages.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import Engine, EngineError
from .tensor_names import TensorNames, split_tensor_names

# (class name, features [L, D], mask [L] or None), one per class, in class order.
Prompt = Tuple[str, np.ndarray, Optional[np.ndarray]]


@dataclass(frozen=True)
class BackendRequest:
    """What a builder gets: the config's keys, the folder its relative paths start from, the
    device, and where the config came from (every error names it)."""

    raw: Mapping[str, Any]
    base: str
    device: str
    where: str

    def path(self, relative: str) -> str:
        return relative if os.path.isabs(relative) else os.path.join(self.base, relative)

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")


Builder = Callable[[BackendRequest], Tuple[Engine, Engine, List[Prompt]]]


@dataclass(frozen=True)
class Backend:
    """name: the config's ``"backend"``; build: the engines and prompts from a request;
    engine_files: it runs a vision_encoder and a decoder file (and takes ``tensor_names``);
    keys: config keys that only this backend reads (an error with any other backend)."""

    name: str
    build: Builder
    module: str
    engine_files: bool = False
    keys: FrozenSet[str] = frozenset()


_BACKENDS: Dict[str, Backend] = {}


def register_backend(name: str, *, engine_files: bool = False, keys: Sequence[str] = ()) -> Callable[[Builder], Builder]:
    """Decorator: ``build`` is backend ``name``'s builder (registered in its module's name)."""
    def register(build: Builder) -> Builder:
        _register(Backend(name, build, build.__module__, engine_files, frozenset(keys)))
        return build
    return register


def _register(backend: Backend) -> None:
    existing = _BACKENDS.get(backend.name)
    if existing is not None and existing.module != backend.module:   # a module imported twice re-registers
        raise ValueError(f"backend {backend.name!r} is registered already, by {existing.module}")
    _BACKENDS[backend.name] = backend


def register_engine_files(name: str, open_engine: Callable[[str, str, Optional[TensorNames]], Engine]) -> None:
    """A backend of two engine files, ``vision_encoder`` and ``decoder``, with one prompt file
    (.npz) per class; ``open_engine(path, device, tensor_names)`` opens one file."""
    def build(request: BackendRequest) -> Tuple[Engine, Engine, List[Prompt]]:
        raw = request.raw
        ve_names, decoder_names = split_tensor_names(raw.get("tensor_names"), request.where)
        for key in ("vision_encoder", "decoder"):
            if key not in raw:
                raise request.error(f"the {name} backend needs {key!r} (an engine or .onnx file)")
        if not isinstance(raw["classes"], dict):
            raise request.error("'classes' must map each class name to its prompt file (.npz)")
        # The pipeline checks the batch ranges (F for the encoder, F x classes_per_call for the decoder).
        vision_encoder = open_engine(request.path(raw["vision_encoder"]), request.device, ve_names)
        decoder = open_engine(request.path(raw["decoder"]), request.device, decoder_names)
        return vision_encoder, decoder, [load_prompt(c, request.path(f)) for c, f in raw["classes"].items()]

    _register(Backend(name, build, open_engine.__module__, engine_files=True))   # where open_engine is defined


def load_prompt(name: str, file: str) -> Prompt:
    """A class's prompt file: an .npz with ``features`` [L, D] and optionally ``mask`` [L]."""
    if not os.path.isfile(file):
        raise EngineError(f"prompt file of class {name!r} not found: {file}")
    with np.load(file) as data:
        if "features" not in data:
            raise ValueError(f"{file}: a prompt file needs a 'features' array [L, D] (it has {list(data)})")
        return name, data["features"], data["mask"] if "mask" in data else None


def backends(modules: Sequence[ModuleType]) -> List[Backend]:
    """The backends ``modules`` registered (importing them did), in the modules' order."""
    return [b for m in modules for b in _BACKENDS.values() if b.module == m.__name__]


def find_backend(name: Any, modules: Sequence[ModuleType], where: str = "config") -> Backend:
    """Backend ``name`` among those ``modules`` registered; a ValueError naming them otherwise."""
    known = backends(modules)
    for backend in known:
        if backend.name == name:
            return backend
    names = [b.name for b in known]
    listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
    raise ValueError(f"{where}: unknown backend {name!r}; use {listed}")
