"""How segpost declares a setting: once, as a field with its type, default, bounds and one line of
description, on a frozen pydantic (v2) class next to what it configures.

Why pydantic, for the whole package: serve's config was already a strict pydantic model (frozen,
extra keys refused, SecretStr, a printable JSON Schema), and Ray, which the fleet and serve run on,
declares its settings as pydantic fields with descriptions. The core's settings (TrackerConfig,
PostprocessConfig, PipelineConfig) are pydantic *dataclasses*, so that ``dataclasses.replace`` and
``dataclasses.fields`` keep working for their users; the config files' models are BaseModels.

Here: the field types that refuse what a bare ``int``/``float`` would coerce (a bool as an int,
NaN), ``settings`` (the decorator that declares a core settings class and names the class and
field in its errors), ``to_struct`` (a settings object copied onto a C++ Config struct bound field
by field, by name) and ``describe_errors`` (pydantic's errors as ``key.path: message``).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from typing import Any, Dict, Iterable, List, Optional

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from typing_extensions import Annotated


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode takes True as 1 and "8" as 8; a bool or a string given for a number is a
    # mistake here (the hand-written checks these declarations replaced refused both).
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"must be a number, not {value!r}")
    return value


def _finite(value: Any) -> Any:
    # Before the bounds: NaN fails every comparison, and "finite" says why.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return _not_bool(value)


Int = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_finite)]


def ints(**bounds: Any) -> Any:
    """Int with bounds, for a tuple's item or an Optional: the bounds go inside the validator, where
    pydantic writes them as JSON Schema's minimum/maximum (outside it writes its own ge/le keys)."""
    return Annotated[int, Field(**bounds), BeforeValidator(_not_bool)]


def numbers(**bounds: Any) -> Any:
    """Number with bounds (as ``ints``)."""
    return Annotated[float, Field(**bounds), BeforeValidator(_finite)]

# Errors of a wrong kind of object (not a wrong value) stay TypeErrors, as before the declarations.
# So are a call's unknown or missing keywords, as Python says them for any function.
_TYPE_ERRORS = {"is_instance_of", "dataclass_exact_type", "dataclass_type", "model_type",
                "unexpected_keyword_argument", "unexpected_positional_argument", "missing_argument"}


def settings(cls=None, *, arbitrary_types: bool = False):
    """Declare a frozen settings dataclass (pydantic-validated, unknown keywords refused). Its
    errors are ValueErrors (TypeErrors for an object of the wrong class) naming ``Class.field``."""

    def wrap(cls):
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=arbitrary_types, validate_default=False)
        declared = pydantic_dataclass(frozen=True, config=config)(cls)
        init = declared.__init__

        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                # A keyword missing from the call (not an item missing from a pair) is a TypeError too.
                wrong = [e for e in exc.errors() if e["type"] in _TYPE_ERRORS or (e["type"] == "missing"
                                                                                and len(e["loc"]) == 1)]
                kind = TypeError if wrong else ValueError
                raise kind(describe_errors(exc, prefix=f"{cls.__name__}.")) from None

        declared.__init__ = checked_init
        return declared

    return wrap if cls is None else wrap(cls)


def fields_of(cls) -> Dict[str, Any]:
    """Field name -> pydantic FieldInfo of a settings dataclass or BaseModel."""
    return dict(getattr(cls, "model_fields", None) or cls.__pydantic_fields__)


def json_schema(cls) -> Dict[str, Any]:
    return TypeAdapter(cls).json_schema()


def _declared(kind: Any) -> bool:
    return isinstance(kind, type) and (hasattr(kind, "model_fields") or hasattr(kind, "__pydantic_fields__"))


def _model_in(annotation: Any) -> Any:
    """The settings class an annotation holds (through Optional, List, Annotated...), or None."""
    if _declared(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _class_at(model: Any, loc: tuple) -> Any:
    """The settings class of the object at ``loc`` of ``model`` (None where no class declares it)."""
    kind = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = fields_of(kind) if _declared(kind) else {}
        if part not in fields:
            return None
        kind = _model_in(fields[part].annotation)
    return kind if _declared(kind) else None


def known_keys(model: Any, loc: tuple) -> Optional[List[str]]:
    """The keys the object at ``loc`` of ``model`` takes (for an unknown key's message)."""
    kind = _class_at(model, loc)
    return list(fields_of(kind)) if kind is not None else None


def _declared_by(model: Any, loc: tuple) -> str:
    """`` (TrackerConfig.max_age)`` where a core settings class nested in a file's model declares
    the key at ``loc``: the message says where to read about it."""
    keys = [part for part in loc if isinstance(part, str)]
    owner = _class_at(model, loc[:-1]) if keys and loc[-1] == keys[-1] and len(loc) > 1 else None
    if owner is None or hasattr(owner, "model_fields") or keys[-1] not in fields_of(owner):
        return ""   # a file's own sections (BaseModels) are named by their key path alone
    return f" ({owner.__name__}.{keys[-1]})"


def describe_errors(exc: ValidationError, prefix: str = "", secret_keys: Iterable[str] = (),
                    model: Any = None) -> str:
    """pydantic's errors as ``key.path: message (got value)``, joined by "; ". Unknown keys are
    gathered per object (``unknown key(s) [...]; known keys are [...]``, the keys ``model``
    declares there); secrets are never echoed."""
    parts, unknown = [], {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        path = _path(loc)   # empty: a check of the whole object (PostprocessConfig: ...)
        where = (prefix + path if path else prefix.rstrip(".") or "config") + (
            _declared_by(model, loc) if model is not None else "")
        message = error["msg"].removeprefix("Value error, ")
        secret = any(str(part) in secret_keys for part in loc)
        if error["type"] in ("missing", "value_error", "assertion_error") or secret:
            parts.append(f"{where}: {message}")
        else:
            parts.append(f"{where}: {message} (got {error['input']!r})")
    for loc, names in unknown.items():
        place = f"{prefix}{_path(loc)}: " if loc else (f"{prefix.rstrip('.')}: " if prefix else "")
        keys = known_keys(model, loc) if model is not None else None
        parts.insert(0, f"{place}unknown key(s) {sorted(names)}" + (f"; known keys are {sorted(keys)}" if keys else ""))
    return "; ".join(parts)


def _path(loc: tuple) -> str:
    # List items as pydantic spells them (api_keys.0): serve's messages read so before this module.
    out = []
    for part in loc:
        if not isinstance(part, int) and ("[" in str(part) or "function-" in str(part)):
            continue   # a union/validator branch, not a key
        out.append(str(part))
    return ".".join(out)


def struct_fields(struct: Any) -> List[str]:
    """The fields a pybind11 class binds (def_readwrite / def_property)."""
    cls = struct if isinstance(struct, type) else type(struct)
    return sorted(name for name, value in vars(cls).items() if isinstance(value, property))


def to_struct(values: Dict[str, Any], struct: Any) -> Any:
    """Copy ``values`` onto the C++ Config ``struct`` (a bound instance) by name: every bound field
    must be given and nothing else, so a field added on one side and not the other fails at once."""
    names = set(struct_fields(struct))
    missing, extra = sorted(names - set(values)), sorted(set(values) - names)
    if missing or extra:
        raise AssertionError(f"{type(struct).__name__}: C++ fields without a value {missing}, values without a "
                             f"C++ field {extra}")
    for name, value in values.items():
        setattr(struct, name, value.value if isinstance(value, enum.Enum) else value)
    return struct


def cpp_values(config: Any, derived: Dict[str, Any], **context: Any) -> Dict[str, Any]:
    """A settings object's values for its C++ struct: the fields of the same name, then those
    ``derived`` from fields spelled otherwise in C++ (the class's ``CPP_SPELLED``: Python field ->
    the C++ fields it sets, e.g. a (H, W) pair as mask_h and mask_w), then ``context`` (what the
    caller knows that is not a setting, e.g. the number of classes)."""
    spelled = type(config).CPP_SPELLED
    stray = sorted(set(derived) - {name for names in spelled.values() for name in names})
    if stray:
        raise AssertionError(f"{type(config).__name__}: {stray} are not in CPP_SPELLED")
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in spelled}
    values.update(derived)
    values.update(context)
    return values
