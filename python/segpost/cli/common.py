"""What every command shares: the device choice, a progress line, the process's memory."""
from __future__ import annotations

import argparse
import os
import sys
import time


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every command's --help shows each option's default, except where there is none to show
    (None, a flag's False) or its help says it in words."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def choose_device(choice: str) -> str:
    """``--device auto|cuda|cpu`` -> "cuda" or "cpu" (ValueError when cuda is asked for and absent)."""
    from .._common import cuda_available

    if choice == "auto":
        return "cuda" if cuda_available() else "cpu"
    if choice == "cuda" and not cuda_available():
        raise ValueError("--device cuda: no usable CUDA device (or segpost was built without CUDA)")
    return choice


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or forced)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()

    @classmethod
    def on_stderr(cls, total: int) -> "Progress":
        return cls(total, sys.stderr.isatty() or os.environ.get("SEGPOST_PROGRESS") == "1")

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(self.total, 1))
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} frames {rate:7.1f} fps {note}")
        sys.stderr.flush()
        if done >= self.total:
            sys.stderr.write("\n")


def rss_bytes() -> int:
    """Resident host memory of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def check_output_file(flag: str, path: str) -> None:
    """An output file's mistakes said with its flag, before any work: a folder given, or a folder
    that does not exist (open() would give a bare errno at the end of a run)."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: a folder; name a file in it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path}: the folder {parent} is not writable")
