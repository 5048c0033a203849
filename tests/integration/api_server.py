"""The real HTTP stack (edge + app + hypercorn) served in the test's own nursery, on
loopback, against a real database; clients talk to it over real HTTP with httpx."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from daemon.api import ApiContext, create_app, create_asgi
from daemon.api.server import HttpService
from daemon.modules.audit import AuditContext
from daemon.modules.auth import (
    AuthPolicy,
    Role,
    create_api_key,
    create_user,
    login,
)
from daemon.modules.ingestion import IntakeWriter
from daemon.shared.config import Settings
from daemon.shared.db import migrate
from daemon.shared.health import HealthState
from tests.integration.contract import ContractChecker

# Cheap argon2 parameters: the tests log in hundreds of times.
FAST_HASHING = {"auth_hash_time_cost": 1, "auth_hash_memory_kib": 8192, "auth_hash_parallelism": 1}
PASSWORD = "correct horse battery staple"
SYSTEM = AuditContext.system()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    url: str
    pool: object
    settings: Settings
    policy: AuthPolicy
    app: object
    _users: int = field(default=0)

    _checker: ContractChecker | None = field(default=None)

    def client(self, *, check_contract: bool = True, **kwargs: object) -> httpx.AsyncClient:
        """An HTTP client on this server; each response it receives is checked against
        the OpenAPI document (``contract.py``) unless ``check_contract`` is False (for a
        test that sends what no client of the contract would, on purpose)."""
        if check_contract:
            if self._checker is None:
                self._checker = ContractChecker(self.app, self.settings)
            hooks = dict(kwargs.pop("event_hooks", None) or {})  # type: ignore[call-overload]
            hooks["response"] = [*hooks.get("response", []), self._checker]
            kwargs["event_hooks"] = hooks
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)

    async def user(self, role: Role = Role.ANALYST, *, email: str | None = None):
        self._users += 1
        return await create_user(
            self.pool,
            email=email or f"user{self._users}-{role.value}@example.org",
            password=PASSWORD,
            role=role,
            policy=self.policy,
            context=SYSTEM,
        )

    async def session(self, user) -> str:
        """A fresh session token of ``user`` (through the module: no HTTP, no audit noise
        beyond the login event)."""
        result = await login(
            self.pool, user.email, PASSWORD, policy=self.policy, client_addr=None, request_id=None
        )
        return result.token

    async def token(self, role: Role = Role.ANALYST) -> str:
        return await self.session(await self.user(role))

    async def api_key(self, role: Role = Role.ANALYST, **kwargs: object) -> str:
        created = await create_api_key(
            self.pool, name=f"key-{role.value}", role=role, context=SYSTEM, **kwargs
        )
        return created.secret


def api_stack(pool, **overrides: object) -> tuple[Settings, ApiContext, Any, Any]:
    """The settings, context, Quart app and ASGI app (edge around it) of a test server
    on ``pool``, on a free loopback port, not yet served."""
    settings = Settings(
        http_host="127.0.0.1", http_port=free_port(), **{**FAST_HASHING, **overrides}
    )
    health = HealthState(expected_schema_version=migrate.latest_version(), started=True)
    context = ApiContext(
        settings=settings, health=health, pool=pool, intake_writer=IntakeWriter(pool)
    )
    app = create_app(context)
    return settings, context, app, create_asgi(app, context)


@asynccontextmanager
async def serve_api(pool, **overrides: object):
    settings, context, app, asgi = api_stack(pool, **overrides)
    service = HttpService(asgi, settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        try:
            yield ApiServer(
                url=f"http://127.0.0.1:{settings.http_port}",
                pool=pool,
                settings=settings,
                policy=context.auth_policy,
                app=app,
            )
        finally:
            service.request_stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
