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


# CI installs the real servers and programs the service tests need (ffmpeg, mosquitto, the
# GStreamer RTSP server, Ray); with SEGPOST_EXPECT_SERVICES=1 a test that would skip for lack of
# one of them fails instead, so a broken install cannot pass as a green run. That holds for a
# whole module skipped at import (pytest.importorskip, allow_module_level) as for a single test.
def _expected_service_missing(report) -> str:
    if (report.skipped and os.environ.get("SEGPOST_EXPECT_SERVICES") == "1" and isinstance(report.longrepr, tuple)
            and ".ci/run does" in str(report.longrepr[2])):
        return f"SEGPOST_EXPECT_SERVICES=1 but: {report.longrepr[2]}"
    return ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    failure = _expected_service_missing(report)
    if failure:
        report.outcome, report.longrepr = "failed", failure


def pytest_configure(config):
    if os.environ.get("SEGPOST_EXPECT_SERVICES") == "1":   # a module failed for a missing service: run the rest
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
