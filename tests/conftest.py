import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import segpost  # noqa: E402
from segpost import _ext  # noqa: E402


def _cuda_skip_reason():
    if not _ext.built_with_cuda():
        return "segpost was built without CUDA (no nvcc at install time)"
    if _ext.cuda_device_count() == 0:
        return "no CUDA device visible (no driver or no GPU on this machine)"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install segpost[cuda13] or [cuda12])"
    return None


CUDA_SKIP_REASON = _cuda_skip_reason()


def pytest_collection_modifyitems(config, items):
    if CUDA_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"GPU test skipped: {CUDA_SKIP_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cp():
    import cupy
    return cupy
