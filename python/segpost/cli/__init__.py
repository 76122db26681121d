"""The ``segpost`` command. One module per subcommand (demo, run, inspect_engines, ...), each
with ``add_parser`` registering its arguments and a handler; common.py holds what they share."""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional, Sequence

from ..engines.base import EngineError
from . import config_schema, demo, fleet, inspect_engines, run, serve
from .common import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per module, each showing its defaults in --help."""
    parser = argparse.ArgumentParser(prog="segpost", description="GPU post-processing for SAM3-style engines")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=functools.partial(argparse.ArgumentParser,
                                                                    formatter_class=HelpFormatter))
    for command in (demo, run, fleet, serve, inspect_engines, config_schema):
        command.add_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (EngineError, ValueError) as exc:
        print(f"segpost {args.command}: error: {exc}", file=sys.stderr)
        return 2
