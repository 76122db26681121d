"""Every option of every command says what it does and what it defaults to (`segpost CMD --help`)."""
import argparse
import subprocess
import sys

import pytest

from segpost.cli import build_parser


def _commands():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices


def _options(command):
    return [a for a in command._actions if not isinstance(a, argparse._HelpAction)]


def test_the_commands_are_all_walked():
    assert set(_commands()) == {"demo", "run", "fleet", "serve", "inspect", "config"}


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_has_help(name):
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in _options(_commands()[name])
               if not (a.help or "").strip() or a.help == argparse.SUPPRESS]
    assert not missing, f"segpost {name}: options without help: {missing}"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_default(name):
    """A default worth showing (not None, not a flag's False) is in the option's help line, as
    --help prints it, unless the help says the default in words."""
    command = _commands()[name]
    formatter = command._get_formatter()
    for action in _options(command):
        if action.default in (None, False) or "default" in (action.help or ""):
            continue
        line = formatter._expand_help(action)
        assert f"(default: {action.default})" in line, f"segpost {name} {action.option_strings or action.dest}: {line!r}"


def test_the_installed_command_prints_defaults():
    done = subprocess.run([sys.executable, "-m", "segpost", "run", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "(default: rle)" in done.stdout and "--max-rounds" in done.stdout
