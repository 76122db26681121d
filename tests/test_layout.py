"""The package's layers: what each part may import (README, Layout)."""
import ast
import os
import subprocess
import sys

import segpost

PACKAGE = os.path.dirname(segpost.__file__)
CORE = ("_arrays", "_common", "_settings", "postprocess", "postprocess_config", "preprocess", "encodings", "results", "pipeline", "pipeline_config",
        "pipeline_results", "engines", "track", "zones", "gate", "schedule")
APPLICATION = ("io", "service", "cli", "fleet", "serve", "config", "synthetic", "ui")
OPTIONAL = ("ray", "prometheus_client", "paho", "PyNvVideoCodec", "fastapi", "grpc", "starlette", "uvicorn")
# Who may import what, besides the core (and besides optional libraries, imported lazily where used).
ALLOWED = {
    "synthetic": {"synthetic"},
    "io": {"io"},
    "config": {"synthetic", "io"},
    "service": {"io"},
    "cli": {"cli", "io", "service", "config", "synthetic", "fleet", "serve", "ui"},
    "fleet": {"fleet", "io", "service", "config", "synthetic", "ui"},   # ui: frames for the fleet's page
    "serve": {"serve", "io", "service", "config"},   # serve and the fleet never import each other
    "ui": {"ui"},   # the live page reads the runner's records through its observer, nothing below
}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                yield parts, path


def _imports(parts, path):
    """segpost-relative top-level parts and outside top-level modules imported anywhere in the file."""
    tree = ast.parse(open(path).read())
    inside, outside = set(), set()
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                (inside.add(top[1]) if top[0] == "segpost" and len(top) > 1 else outside.add(top[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = (node.module or "").split(".")
                if top[0] == "segpost":
                    inside.update([top[1]] if len(top) > 1 else [a.name for a in node.names])
                else:
                    outside.add(top[0])
            else:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
                inside.update([target[0]] if target else [a.name for a in node.names])
    return inside, outside


def test_core_never_imports_the_application_or_optional_services():
    checked = 0
    for parts, path in _modules():
        role = parts[0] if len(parts) > 1 else parts[0]
        inside, outside = _imports(parts, path)
        if role in CORE:
            checked += 1
            assert not inside & set(APPLICATION), f"{path} (core) imports {sorted(inside & set(APPLICATION))}"
        elif role in ALLOWED:
            bad = inside & set(APPLICATION) - ALLOWED[role] - {role}
            if parts == ["fleet", "client"]:
                bad -= {"serve"}   # the deprecated name segpost.fleet.client re-exports serve's client
            assert not bad, f"{path} ({role}) imports {sorted(bad)}"
        if role not in ("fleet", "serve", "io", "service", "cli", "ui"):
            assert not outside & set(OPTIONAL), f"{path} imports optional {sorted(outside & set(OPTIONAL))}"
    assert checked >= 10


def test_importing_segpost_loads_no_optional_service():
    code = ("import sys, segpost, segpost.pipeline, segpost.engines; "
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
