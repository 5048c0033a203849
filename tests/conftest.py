"""Shared fixtures: a real PostgreSQL for every test that needs one.

``TRIAGED_TEST_DATABASE_URL`` (a URL to any database on a server where the user may
create databases) selects an external server; without it the tests start an embedded
PostgreSQL once per session, exactly as ``triaged`` does on a fresh machine. Each test
that asks for ``database_url`` gets a new, empty database, dropped afterwards.

Under ``CI=true`` a skipped test fails the run unless it is marked
``@pytest.mark.expected_skip(reason)``: a security test that silently skips because a
tool is missing (openssl, systemd-analyze) proves nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from daemon.shared.db import embedded


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on which the tests may CREATE and DROP databases.

    The embedded cluster lives in a directory of its own, not under pytest's basetemp:
    pytest deletes all but the newest three basetemps, so a second pytest session
    started meanwhile (another terminal, a helper) would delete a running cluster.
    """
    external = os.environ.get("TRIAGED_TEST_DATABASE_URL")
    if external:
        _check_server(external, "external")
        yield external
        return
    directory = Path(tempfile.mkdtemp(prefix="triaged-test-pg-"))
    server = embedded.start(directory)
    try:
        _check_server(server.admin_url(), "embedded")
        yield server.admin_url()
    finally:
        embedded.stop(server)
        shutil.rmtree(directory, ignore_errors=True)


_SERVERS_USED: list[str] = []


def _check_server(url: str, kind: str) -> None:
    """Record the server's version for the summary; with ``TRIAGED_TEST_EXPECT_PG_MAJOR``
    set (CI), fail the session at once on any other major version."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    version = str(row[0]) if row else "?"
    _SERVERS_USED.append(f"PostgreSQL {version} ({kind})")
    expected = os.environ.get("TRIAGED_TEST_EXPECT_PG_MAJOR")
    if expected and version.split(".")[0] != expected:
        pytest.exit(f"expected PostgreSQL {expected}, the {kind} server is {version}", returncode=3)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SERVERS_USED:
        terminalreporter.write_line(f"database server used: {line}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI, turn a skip the test does not declare (``expected_skip``) into a failure."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and _in_ci()
        and item.get_closest_marker("expected_skip") is None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true, which allows no unexpected skip: {reason}\n"
            "Install what the test needs in .ci/run, or mark it "
            "@pytest.mark.expected_skip(reason) if skipping is its intent."
        )
    return report


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at another database of the same server."""
    return make_conninfo(**{**conninfo_to_dict(url), "dbname": dbname})


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh empty database for one test."""
    name = f"triaged_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
