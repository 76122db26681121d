"""``segpost config schema [run|fleet|serve] [--json]``: every key of a config file, with its type,
default, bounds and description, read from the declarations (segpost/_settings.py says where)."""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Tuple


def _models() -> Dict[str, Tuple[str, Any]]:
    from ..config import RunConfig
    from ..fleet.config import FleetFile
    from ..serve.config import ServeConfig

    return {"run": ("`segpost run` config (also a fleet or serve config's \"pipeline\")", RunConfig),
            "fleet": ("`segpost fleet` config", FleetFile), "serve": ("`segpost serve` config", ServeConfig)}


def add_parser(commands) -> None:
    config = commands.add_parser("config", help="about the config files: `segpost config schema run` prints "
                                                "every key of a run config")
    config.add_argument("action", choices=("schema",), help="schema: every key with its type, default, bounds "
                                                            "and description")
    config.add_argument("file", nargs="?", choices=("run", "fleet", "serve"), default="run",
                        help="which config file")
    config.add_argument("--json", action="store_true", help="the JSON Schema instead of text")
    config.set_defaults(handler=_main)


def _main(args) -> int:
    what, model = _models()[args.file]
    if args.json:
        print(json.dumps(model.model_json_schema(), indent=1))
        return 0
    print(f"The {what}: every key (JSON; \"${{NAME}}\" values come from the environment)")
    for line in describe(model):
        print(line)
    return 0


def describe(model: Any) -> List[str]:
    """One line per key, nested keys as ``parent.key``: ``key  type  default ...  bounds  description``."""
    schema = model.model_json_schema()
    return [f"  {key:<28} {kind:<22} default {default:<14} {bounds}{' ' if bounds else ''}{text}".rstrip()
            for key, kind, default, bounds, text in _rows(schema, schema.get("properties", {}), "", schema)]


def _resolve(node: Dict[str, Any], root: Dict[str, Any]) -> Dict[str, Any]:
    ref = node.get("$ref")
    return root["$defs"][ref.split("/")[-1]] if ref else node


def _rows(node: Dict[str, Any], properties: Dict[str, Any], prefix: str, root: Dict[str, Any]) -> Iterator[tuple]:
    required = set(node.get("required", ()))
    for name, prop in properties.items():
        key = prefix + name
        options = [_resolve(o, root) for o in prop.get("anyOf", [prop])]
        kind = " | ".join(_kind(o, root) for o in options)
        default = "(required)" if name in required else json.dumps(prop.get("default"))
        bounds = " ".join(_bounds(o) for o in options if _bounds(o))
        text = prop.get("description") or next((o.get("description", "") for o in options if o.get("description")), "")
        yield key, kind, default, bounds, text.split("\n")[0]
        for option in options:
            if option.get("properties"):
                yield from _rows(option, option["properties"], key + ".", root)
            items = _resolve(option.get("items", {}), root)
            if items.get("properties"):
                yield from _rows(items, items["properties"], key + "[].", root)


def _kind(node: Dict[str, Any], root: Dict[str, Any]) -> str:
    node = _resolve(node, root)
    if "enum" in node or "const" in node:
        return "|".join(json.dumps(v) for v in node.get("enum", [node.get("const")]))
    kind = node.get("type", "any")
    if kind == "array" and "prefixItems" in node:
        return "[" + ", ".join(_kind(i, root) for i in node["prefixItems"]) + "]"
    if kind == "array":
        return f"list of {_kind(node.get('items', {}), root)}"
    if kind == "object" and node.get("title") and node.get("properties"):
        return "object"
    return {"integer": "int", "number": "number", "boolean": "bool", "string": "string", "null": "null",
            "object": "object"}.get(kind, kind)


def _bounds(node: Dict[str, Any]) -> str:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
                      ("minItems", "items >="), ("minLength", "length >=")):
        if key in node and not (key == "minItems" and "prefixItems" in node):   # a pair's length is its type
            parts.append(f"{sign} {node[key]}")
    for item in node.get("prefixItems", []):
        inner = _bounds(item)
        if inner:
            parts.append(f"each {inner[1:-1]}")
            break
    return "[" + ", ".join(parts) + "]" if parts else ""
