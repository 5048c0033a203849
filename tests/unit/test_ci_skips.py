"""Under ``CI=true`` only skips marked ``expected_skip`` pass (tests/conftest.py's hook),
checked on a throwaway suite run by a real pytest in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import pytest

def test_skips_at_run_time():
    pytest.skip("a tool is missing")

@pytest.mark.skipif(True, reason="decided at collection")
def test_skipped_by_a_mark():
    pass

@pytest.fixture
def tool():
    pytest.skip("no openssl")

def test_skipped_by_its_fixture(tool):
    pass

@pytest.mark.expected_skip("only on the embedded path")
def test_expected_to_skip():
    pytest.skip("not the embedded path")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    assert False

def test_passes():
    pass
"""


def run_suite(tmp_path: Path, ci: str | None) -> tuple[int, str, dict[str, str]]:
    """Exit status, output, and the outcome of each test (skips: by their reason)."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"
    )
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "-W", "ignore::pytest.PytestUnknownMarkWarning", "--rootdir", str(tmp_path),
         "-c", os.devnull, str(tmp_path / "test_suite.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outcomes = {}
    for outcome, name in re.findall(r"^([A-Z]+) test_suite\.py::(\w+)", result.stdout, re.M):
        outcomes[name] = outcome
    for reason in re.findall(r"^SKIPPED \[\d+\] test_suite\.py:\d+: (.*)$", result.stdout, re.M):
        outcomes[reason] = "SKIPPED"
    return result.returncode, result.stdout, outcomes


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_an_unexpected_skip_fails(tmp_path, ci):
    returncode, output, outcomes = run_suite(tmp_path, ci)
    assert returncode == 1, output
    assert outcomes == {
        "test_skips_at_run_time": "FAILED",
        "test_skipped_by_a_mark": "ERROR",  # at setup, where skipif acts
        "test_skipped_by_its_fixture": "ERROR",
        "not the embedded path": "SKIPPED",  # marked expected_skip
        "test_expected_to_fail": "XFAIL",
        "test_passes": "PASSED",
    }, output
    assert "which allows no unexpected skip: a tool is missing" in output


def test_outside_ci_skips_stay_skips(tmp_path):
    returncode, output, outcomes = run_suite(tmp_path, None)
    assert returncode == 0, output
    assert sorted(outcomes.values()) == ["PASSED", *["SKIPPED"] * 4, "XFAIL"], output
