"""Authentication and authorization of each request, from the route's declaration.

Runs before every view (``before_request``): a public route is served as is; any other
needs ``Authorization: Bearer <session token or API key>`` whose principal satisfies
the declared role. The principal is then available to the view through
:func:`current_principal`, and :func:`audit_context` tells the modules who acts, from
where, under which request id.

Failures raise from the error tree and become responses in :mod:`daemon.api.errors`:
no or bad credentials -> ``Unauthenticated`` (401 with ``WWW-Authenticate``), a role
too low or an API key on a users-only route -> ``PermissionDenied`` (403), database
unreachable -> ``DatabaseError`` (503). Unmatched paths pass through untouched so that
routing answers 404 or 405.
"""

from __future__ import annotations

from quart import Response, current_app, g, request

from daemon.api.access import access_of
from daemon.api.context import current_context
from daemon.modules.audit import Actor, AuditContext
from daemon.modules.auth import (
    PermissionDenied,
    Principal,
    PrincipalKind,
    Unauthenticated,
    authenticate,
)
from daemon.shared.errors import DatabaseError
from daemon.shared.logs import request_id_var

_PRINCIPAL = "principal"


class UndeclaredRoute(RuntimeError):
    """A route without an access declaration was called (a bug: see ``access.py``)."""


async def authorize_request() -> None:
    """The ``before_request`` hook; see the module docstring."""
    if request.endpoint is None:
        return
    access = access_of(current_app.view_functions.get(request.endpoint))
    if access is None:
        raise UndeclaredRoute(f"route {request.endpoint!r} has no access declaration")
    context = current_context()
    if access.is_public(context.settings):
        return
    token = bearer_token(request.headers.get("Authorization"))
    if context.pool is None:
        raise DatabaseError("no database to check credentials against")
    principal = await authenticate(context.pool, token, cache=context.credentials)
    assert access.role is not None
    if access.users_only and principal.kind is not PrincipalKind.USER:
        raise PermissionDenied("this needs a user's login session; API keys cannot use it")
    principal.require(access.role)
    setattr(g, _PRINCIPAL, principal)


_CREDENTIAL_BLUEPRINTS = frozenset({"auth", "users", "api_keys"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def forget_changed_credentials(response: Response) -> Response:
    """The ``after_request`` hook: an authenticated request that may have changed
    credentials (any unsafe method on the auth, users or API-key routes, whatever its
    outcome) empties this process's credential cache before its answer leaves, so that
    the next request here sees the change without waiting for the change's notification
    (which other processes get; see :mod:`daemon.modules.auth.credential_cache`). An
    anonymous one (a login, a refused request) narrows nothing: it must not be a way to
    empty the cache at will (a login's password-hash upgrade notifies like any change)."""
    if (
        request.method not in _SAFE_METHODS
        and request.blueprint in _CREDENTIAL_BLUEPRINTS
        and getattr(g, _PRINCIPAL, None) is not None
    ):
        cache = current_context().credentials
        if cache is not None:
            cache.invalidate()
    return response


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises:
        Unauthenticated: no header, another scheme, or no token.
    """
    if not header:
        raise Unauthenticated("this needs credentials: send Authorization: Bearer <token>")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("the Authorization header must use the Bearer scheme")
    token = token.strip()
    if not token or " " in token:
        raise Unauthenticated("the Authorization header carries no valid bearer token")
    return token


def current_principal() -> Principal:
    """Who is calling: set for every route that is not public."""
    principal: Principal | None = getattr(g, _PRINCIPAL, None)
    if principal is None:
        raise RuntimeError("current_principal() called on a public route")
    return principal


def audit_context() -> AuditContext:
    """The audit context of this request: actor (anonymous on public routes), client
    address, request id."""
    principal: Principal | None = getattr(g, _PRINCIPAL, None)
    return AuditContext(
        actor=principal.actor if principal else Actor.anonymous(),
        client_addr=request.remote_addr,
        request_id=request_id_var.get(),
    )
