"""tests/conftest.py under SEGPOST_EXPECT_SERVICES=1 (CI): every skip fails, whatever its wording and
whether a test or a whole module (at import) skips, so that CI cannot turn green without something
it installs; only GPU tests without a GPU, tests/conftest.py's SKIPS_CI_CANNOT_RUN and xfails stay."""
import json
import os
import shutil
import subprocess
import sys

from cuda_env import CUDA_SKIP_REASON

HERE = os.path.dirname(os.path.abspath(__file__))

# Each test's outcome as the terminal reports it (after conftest.py's hooks), written to outcomes.json.
OUTCOMES_PLUGIN = '''
import json

SEEN = {}


def pytest_collectreport(report):
    if not report.passed:
        SEEN[report.nodeid] = "error" if report.failed else "skipped"


def pytest_runtest_logreport(report):
    if hasattr(report, "wasxfail"):
        SEEN[report.nodeid] = "xfailed"
    elif report.failed or report.skipped:
        SEEN[report.nodeid] = report.outcome
    elif report.when == "call":
        SEEN.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session):
    with open("outcomes.json", "w") as f:
        json.dump(SEEN, f)
'''

ALLOWED = ("Sam3ImageProcessor cannot be built here (torchvision missing or unusable): Sam3ImageProcessor requires "
           "the Torchvision library but it was not found in your environment.")

TESTS = f'''import pytest


def test_skips_for_a_service():
    pytest.skip("no broker (.ci/run does)")


def test_skips_in_other_words():
    pytest.skip("not a service")


@pytest.mark.skipif(True, reason="scoring needs TrackEval: pip install '.[track-eval]'")
def test_skipif_marker():
    pass


@pytest.mark.gpu
def test_gpu():
    pass


def test_what_ci_cannot_run():
    pytest.skip({ALLOWED!r})


@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False
'''


def run_pytest(folder, expect_services):
    env = {k: v for k, v in os.environ.items() if k != "SEGPOST_EXPECT_SERVICES"}
    if expect_services:
        env["SEGPOST_EXPECT_SERVICES"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "outcomes",
                           str(folder)], capture_output=True, text=True, env=env, cwd=folder)
    with open(folder / "outcomes.json") as f:
        return done.returncode, done.stdout + done.stderr, json.load(f)


def test_under_expect_services_every_skip_fails_but_gpu_tests_and_the_list(tmp_path):
    for name in ("conftest.py", "cuda_env.py"):
        shutil.copy(os.path.join(HERE, name), tmp_path / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = gpu: needs a CUDA device\n")
    (tmp_path / "outcomes.py").write_text(OUTCOMES_PLUGIN)
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("segpost_no_such_service", reason="needs it (.ci/run does)")\n\n\n'
        "def test_never_runs():\n    pass\n")
    # As pytest.importorskip("cv2") did: no reason given, pytest's own "could not import" says why.
    (tmp_path / "test_module_plain_skip.py").write_text(
        'import pytest\npytest.importorskip("segpost_no_such_module")\n\n\ndef test_never_runs():\n    pass\n')
    (tmp_path / "test_skips.py").write_text(TESTS)
    gpu = "skipped" if CUDA_SKIP_REASON is not None else "passed"
    tests = {f"test_skips.py::{name}": "skipped" for name in
             ("test_skips_for_a_service", "test_skips_in_other_words", "test_skipif_marker", "test_what_ci_cannot_run")}
    tests.update({"test_skips.py::test_gpu": gpu, "test_skips.py::test_expected_to_fail": "xfailed"})

    status, output, seen = run_pytest(tmp_path, expect_services=False)
    assert status == 0, output
    assert seen == {**tests, "test_module_skip.py": "skipped", "test_module_plain_skip.py": "skipped"}, output

    status, output, seen = run_pytest(tmp_path, expect_services=True)
    assert status != 0, output
    assert seen == {**tests, "test_module_skip.py": "error", "test_module_plain_skip.py": "error",
                    "test_skips.py::test_skips_for_a_service": "failed",
                    "test_skips.py::test_skips_in_other_words": "failed",
                    "test_skips.py::test_skipif_marker": "failed"}, output
    assert output.count("SEGPOST_EXPECT_SERVICES=1 but") >= 5, output
