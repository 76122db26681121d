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


# CI installs everything the tests need (the test, export and fleet extras; ffmpeg, mosquitto, the
# GStreamer RTSP server, nginx): with SEGPOST_EXPECT_SERVICES=1 (.ci/run's CUDA-build run) every
# skip fails instead, whatever its wording, so that nothing CI installs can go missing and pass as a
# green run. That holds for a whole module skipped at import (pytest.importorskip,
# allow_module_level) as for a single test. Still skips: the GPU tests on a machine without one
# (the `gpu` marker, above) and what no machine CI runs on can run, listed here by the start of the
# skip's reason.
SKIPS_CI_CANNOT_RUN = (
    # tests/test_preprocess.py: transformers' Sam3ImageProcessor needs torchvision, which has no
    # build for the CPU torch CI installs (transformers' own words: any other reason still fails).
    "Sam3ImageProcessor cannot be built here (torchvision missing or unusable): Sam3ImageProcessor requires the "
    "Torchvision library",
    # tests/test_errors.py: checks the no-GPU message, so it skips where a GPU is.
    "a CUDA device is present",
)


def _skip_reason(report) -> str:
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _expected_service_missing(report, item=None) -> str:
    if not report.skipped or os.environ.get("SEGPOST_EXPECT_SERVICES") != "1" or hasattr(report, "wasxfail"):
        return ""
    if item is not None and CUDA_SKIP_REASON is not None and item.get_closest_marker("gpu") is not None:
        return ""   # a GPU test on a machine without one: pytest_collection_modifyitems' skip
    reason = _skip_reason(report)
    if reason.startswith(SKIPS_CI_CANNOT_RUN):
        return ""
    return (f"SEGPOST_EXPECT_SERVICES=1 but: {reason} (CI installs what the tests need; only GPU tests and "
            "tests/conftest.py's SKIPS_CI_CANNOT_RUN may skip)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    failure = _expected_service_missing(report, item)
    if failure:
        report.outcome, report.longrepr = "failed", failure


def pytest_configure(config):
    if os.environ.get("SEGPOST_EXPECT_SERVICES") == "1":   # a module failed for a skip at import: run the rest
        config.option.continue_on_collection_errors = True


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    failure = _expected_service_missing(report)
    if failure:
        report.outcome, report.longrepr, report.result = "failed", failure, []


# The tiny SAM3 exported once per session for the export tests (export_cases.py): its
# contract-named graphs, and the same weights written as other exporters do (users_engines.py).
@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    from export_cases import export_contract

    return export_contract(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def users_exported(tmp_path_factory):
    import users_engines

    return users_engines.export(str(tmp_path_factory.mktemp("users")))
