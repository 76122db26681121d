"""tests/conftest.py under SEGPOST_EXPECT_SERVICES=1: a skip for a missing service fails, whether a
test or a whole module (at import) skips, so that CI cannot turn green without Ray or a broker."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_pytest(folder, expect_services):
    env = {k: v for k, v in os.environ.items() if k != "SEGPOST_EXPECT_SERVICES"}
    if expect_services:
        env["SEGPOST_EXPECT_SERVICES"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder)
    return done.returncode, done.stdout + done.stderr


def test_module_and_test_skips_for_a_missing_service_fail_when_services_are_expected(tmp_path):
    for name in ("conftest.py", "cuda_env.py"):
        shutil.copy(os.path.join(HERE, name), tmp_path / name)
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("segpost_no_such_service", reason="needs it (.ci/run does)")\n\n\n'
        "def test_never_runs():\n    pass\n")
    (tmp_path / "test_one_skip.py").write_text(
        'import pytest\n\n\ndef test_skips():\n    pytest.skip("no broker (.ci/run does)")\n\n\n'
        'def test_other_skips_stay_skips():\n    pytest.skip("not a service")\n')
    status, output = run_pytest(tmp_path, expect_services=False)
    assert status == 0 and "3 skipped" in output, output
    status, output = run_pytest(tmp_path, expect_services=True)
    assert status != 0 and "1 failed" in output and "1 skipped" in output and "1 error" in output, output
    assert output.count("SEGPOST_EXPECT_SERVICES=1 but") >= 2, output
