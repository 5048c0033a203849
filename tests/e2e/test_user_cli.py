"""``triaged user …`` as subprocesses against a fresh (unmigrated) database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio

from daemon.modules.auth import AuthPolicy, InvalidCredentials, Unauthenticated, authenticate, login
from daemon.shared.db import open_pool
from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.e2e

PASSWORD = "a long cli passphrase"
FAST = {
    "TRIAGED_AUTH_HASH_TIME_COST": "1",
    "TRIAGED_AUTH_HASH_MEMORY_KIB": "8192",
    "TRIAGED_AUTH_HASH_PARALLELISM": "1",
}
POLICY = AuthPolicy(hash_time_cost=1, hash_memory_kib=8192, hash_parallelism=1)


@pytest.fixture
def user_cli(database_url, tmp_path):
    env = base_env(
        TRIAGED_DATABASE_URL=database_url,
        TRIAGED_DATA_DIR=str(tmp_path),
        **FAST,
    )

    async def run(
        *args: str, stdin: str | None = None, log_level: str = "WARNING"
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(60):
            return await trio.run_process(
                [sys.executable, "-m", "daemon", "user", *args],
                env={**env, "TRIAGED_LOG_LEVEL": log_level},
                cwd=ROOT,
                stdin=None if stdin is None else stdin.encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    return run


def text(result) -> str:
    return (result.stdout + result.stderr).decode()


async def test_user_cli(user_cli, database_url):
    created = await user_cli(
        "create", "--email", "Root@Example.org", "--role", "admin", "--name", "Root",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, text(created)
    assert created.stdout.decode().startswith("user Root@Example.org created (id ")
    second = await user_cli(
        "create", "--email", "ana@example.org", "--role", "analyst", "--password-stdin",
        stdin=PASSWORD,
    )  # fmt: skip
    assert second.returncode == 0, text(second)

    listed = await user_cli("list", "--json")
    assert listed.returncode == 0, text(listed)
    users = json.loads(listed.stdout)
    assert [(u["email"], u["role"], u["active"], u["display_name"]) for u in users] == [
        ("Root@Example.org", "admin", True, "Root"),
        ("ana@example.org", "analyst", True, ""),
    ]
    table = (await user_cli("list")).stdout.decode().splitlines()
    assert table[0].split() == ["ID", "EMAIL", "ROLE", "ACTIVE", "NAME"] and len(table) == 3

    # Refusals: exit 1 with one line.
    for args, stdin, fragment in [
        (("create", "--email", "ROOT@example.org", "--role", "viewer", "--password-stdin"),
         PASSWORD, "already exists"),
        (("create", "--email", "v@example.org", "--role", "viewer", "--password-stdin"),
         "short", "at least 12"),
        (("disable", "--email", "root@example.org"), None, "last active admin"),
        (("disable", "--email", "nobody@example.org"), None, "no user"),
    ]:  # fmt: skip
        result = await user_cli(*args, stdin=stdin)
        assert result.returncode == 1, text(result)
        assert result.stdout == b"" and len(result.stderr.decode().strip().splitlines()) == 1
        assert fragment in result.stderr.decode()

    # Bad input: exit 2.
    for args, stdin, fragment in [
        (("create", "--email", "not-an-email", "--role", "viewer", "--password-stdin"),
         PASSWORD, "not a valid email"),
        (("create", "--email", "v@example.org", "--role", "root", "--password-stdin"),
         PASSWORD, "invalid choice"),
        (("create", "--email", "v@example.org", "--role", "viewer", "--password-stdin"),
         "", "no password on stdin"),
        (("create", "--email", "v@example.org", "--role", "viewer"),
         PASSWORD, "pass --password-stdin"),
        (("set-password", "--email", "ana@example.org"), PASSWORD, "--password-stdin"),
    ]:  # fmt: skip
        result = await user_cli(*args, stdin=stdin)
        assert result.returncode == 2, text(result)
        assert fragment in result.stderr.decode().strip().splitlines()[-1]

    async with open_pool(database_url, max_size=2) as pool:
        session = await login(
            pool, "ana@example.org", PASSWORD, policy=POLICY, client_addr=None, request_id=None
        )
        changed = await user_cli(
            "set-password", "--email", "ANA@example.org", "--password-stdin",
            stdin="another long passphrase\n",
        )  # fmt: skip
        assert changed.returncode == 0, text(changed)
        assert "1 session(s) revoked" in changed.stdout.decode()
        with pytest.raises(Unauthenticated):
            await authenticate(pool, session.token)
        with pytest.raises(InvalidCredentials):
            await login(
                pool, "ana@example.org", PASSWORD, policy=POLICY, client_addr=None, request_id=None
            )
        session = await login(
            pool, "ana@example.org", "another long passphrase", policy=POLICY, client_addr=None,
            request_id=None,
        )  # fmt: skip
        disabled = await user_cli("disable", "--email", "ana@example.org")
        assert disabled.returncode == 0 and "disabled" in disabled.stdout.decode(), text(disabled)
        with pytest.raises(Unauthenticated):
            await authenticate(pool, session.token)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT action, actor_type::text, request_id FROM audit_events"
                    " WHERE action LIKE 'user.%%' ORDER BY id"
                )
            ).fetchall()
    assert rows == [
        ("user.created", "system", "cli"),
        ("user.created", "system", "cli"),
        ("user.password_changed", "system", "cli"),
        ("user.disabled", "system", "cli"),
    ]


async def test_the_password_never_appears_in_output(user_cli):
    secret = "never show this passphrase"
    for args in (
        ("create", "--email", "s@example.org", "--role", "viewer", "--password-stdin"),
        ("create", "--email", "s@example.org", "--role", "viewer", "--password-stdin"),
        ("set-password", "--email", "s@example.org", "--password-stdin"),
    ):
        # Even debug logging must not show the password.
        result = await user_cli(*args, stdin=secret + "\n", log_level="DEBUG")
        assert "database pool" in text(result)  # the log was captured
        assert secret not in text(result)
