"""Moved to ``segpost.serve.client`` (serve is its own package now); this name stays for old imports."""
import warnings

from ..serve.client import SegpostClient, SegpostError  # noqa: F401

warnings.warn("segpost.fleet.client moved to segpost.serve.client", DeprecationWarning, stacklevel=2)
