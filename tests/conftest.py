import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cuda_env import CUDA_SKIP_REASON  # noqa: E402


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
