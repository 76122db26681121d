"""The ``segpost`` command. One module per subcommand (demo, run, inspect_engines, ...), each
with ``add_parser`` registering its arguments and a handler; common.py holds what they share."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..engines.base import EngineError
from . import demo, fleet, inspect_engines, run, serve


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="segpost", description="GPU post-processing for SAM3-style engines")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (demo, run, fleet, serve, inspect_engines):
        command.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (EngineError, ValueError) as exc:
        print(f"segpost {args.command}: error: {exc}", file=sys.stderr)
        return 2
