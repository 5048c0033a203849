"""Generated-input contract test: Schemathesis against the real ``triaged serve``.

Requests generated from ``/openapi.json`` (valid and invalid data, stateful sequences
that follow the Location links), with a session of each role
(viewer, analyst, admin: users created through the API), with egress confined to
loopback so that nothing a generated document URL names is ever fetched from outside
this machine. The run fails on any 5xx, any response whose status, content type,
headers or body the document does not describe, any invalid data the server accepts,
any route served without the credentials it declares, and any unresolvable reference.

Bounded in time: ``TRIAGED_TEST_FUZZ_SECONDS`` (default 150) is the budget of the
whole run, shared by the three roles; ``make fuzz-api`` runs a long one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

pytestmark = pytest.mark.e2e

BUDGET_SECONDS = float(os.environ.get("TRIAGED_TEST_FUZZ_SECONDS", "150"))
HOOKS = Path(__file__).with_name("fuzz_hooks.py")
PASSWORD = "correct horse battery staple"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "unsupported_method",
        "allow_header_conformance",
        "use_after_free",
        "ensure_resource_availability",
    ]
)
# The daemon under test: cheap password hashing (the run logs in), throttling left
# on (its 429s are part of the contract), egress confined to loopback and private
# addresses refused (so nothing at all is fetched).
DAEMON_ENV = {
    "TRIAGED_AUTH_HASH_TIME_COST": "1",
    "TRIAGED_AUTH_HASH_MEMORY_KIB": "8192",
    "TRIAGED_AUTH_HASH_PARALLELISM": "1",
    "TRIAGED_FETCH_ALLOW_PRIVATE": "false",
    "TRIAGED_FETCH_EGRESS_NETWORKS": "127.0.0.0/8",
}


async def sessions(url: str, admin_password: str) -> tuple[dict[str, str], list[int]]:
    """A session token per role (users created through the API by the first admin),
    and the ids of the users behind them."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def login(email: str, password: str) -> dict:
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
            assert response.status_code == 200, response.text
            return response.json()

        first = await login("admin@triaged.localhost", admin_password)
        admin = {"Authorization": f"Bearer {first['token']}"}
        tokens: dict[str, str] = {}
        ids = [first["user"]["id"]]
        for role in ("viewer", "analyst", "admin"):
            email = f"fuzz-{role}@example.org"
            created = await client.post(
                "/api/v1/users",
                json={"email": email, "password": PASSWORD, "role": role},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            tokens[role] = (await login(email, PASSWORD))["token"]
        return tokens, ids


async def schemathesis(url: str, tmp_path: Path, name: str, seconds: float, token: str,
                       keep_users: list[int]) -> tuple[int, str]:  # fmt: skip
    """Run Schemathesis with ``token`` for about ``seconds``; (exit code, output). A run
    still going well past its budget is killed and fails the test."""
    argv = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-time", str(max(1, int(seconds))),
        "--workers", "1",  # hypothesis is not thread-safe everywhere (AST races)
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
        "--report", "junit",
        "--report-dir", str(tmp_path / f"schemathesis-{name}"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIAGED_", "FUZZ_"))}
    env |= {"SCHEMATHESIS_HOOKS": str(HOOKS), "FUZZ_KEEP_USERS": ",".join(map(str, keep_users))}
    # Logging out would end the run's own session: the other tests reach that route.
    argv += ["--header", f"Authorization: Bearer {token}"]
    argv += ["--exclude-path", "/api/v1/auth/logout"]
    with trio.fail_after(seconds + 300):
        result = await trio.run_process(
            argv, cwd=tmp_path, env=env, capture_stdout=True, stderr=subprocess.STDOUT,
            check=False,
        )  # fmt: skip
    output = result.stdout.decode(errors="replace")
    (tmp_path / f"schemathesis-{name}.txt").write_text(output)
    return result.returncode, output


def served(proc) -> int:
    """Requests the daemon answered, from its access log."""
    return sum(1 for r in proc.log_records() if r.get("action") == "http.request")


async def test_generated_requests_get_documented_answers(start_triaged, tmp_path):
    data_dir = tmp_path / "data"
    proc = start_triaged(
        "serve",
        TRIAGED_INITIAL_ADMIN_PASSWORD_FILE=str(data_dir / "initial-admin-password"),
        **DAEMON_ENV,
    )
    await proc.wait_ready()
    password = (data_dir / "initial-admin-password").read_text().strip()
    tokens, keep = await sessions(proc.url, password)
    before = served(proc)
    # Admin last: what an admin run deletes, the others have used. No run without
    # credentials: each run's ignored_auth check sends requests without them (and
    # Schemathesis 4.32 crashes in its sign-up detection when given none).
    runs = [(role, tokens[role]) for role in ("viewer", "analyst", "admin")]
    failures = []
    for name, token in runs:
        code, output = await schemathesis(
            proc.url, tmp_path, name, BUDGET_SECONDS / len(runs), token, keep
        )
        print(f"== schemathesis as {name}: exit {code}\n{output[-3000:]}")
        if code != 0:
            failures.append(f"as {name} (exit {code}):\n{output[-20000:]}")
    requests = served(proc) - before
    print(f"== {requests} requests served to schemathesis")
    (tmp_path / "fuzz-summary.json").write_text(json.dumps({"requests": requests}))
    assert proc.proc.poll() is None, f"triaged exited:\n{proc.output()[-5000:]}"
    assert not failures, "\n\n".join(failures)
    crashes = [r for r in proc.log_records() if r.get("action") == "http.crash"]
    assert not crashes, crashes[:3]
    assert requests > 100 * len(runs) * min(1.0, BUDGET_SECONDS / 150), requests
