import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import segpost  # noqa: E402


def pytest_collection_modifyitems(config, items):
    reason = None
    if not segpost.cuda_available():
        reason = "benchmarks need a CUDA device and a CUDA build of segpost"
    else:
        try:
            import cupy  # noqa: F401
        except ImportError:
            reason = "benchmarks need CuPy"
    if reason:
        here = os.path.dirname(os.path.abspath(__file__))
        for item in items:
            if str(item.path).startswith(here):
                item.add_marker(pytest.mark.skip(reason=reason))
