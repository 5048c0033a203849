"""Who may call each route, declared where the route is declared.

Every view function carries exactly one declaration, the decorator right under the
route's own::

    @blueprint.get("/api/v1/users")
    @requires(Role.ADMIN)
    async def list_users() -> Response: ...

    @blueprint.get("/livez")
    @public
    async def livez() -> Response: ...

:func:`check_declarations` lists the routes of an app without one; ``create_app``
refuses to build an app that has any, so a forgotten declaration fails every test (and
the authorization matrix test names it) long before it could reach production. At run
time :mod:`daemon.api.authn` enforces the declaration before the view runs; a route
without one is refused, never served open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from pydantic import BaseModel
    from quart import Quart

    from daemon.modules.auth import Role
    from daemon.shared.config import Settings

View = TypeVar("View", bound=Callable[..., Awaitable[Any]])

_ATTRIBUTE = "__triaged_access__"


@attrs.frozen(kw_only=True)
class Access:
    """A route's declaration.

    ``role`` None means public (no credentials looked at). ``users_only`` routes refuse
    API keys (403): they act on the caller's own login or password. ``public_when``
    makes a role-protected route public when the settings say so (``/metrics``).
    ``body`` and ``query`` are the models the route reads its JSON body and query
    string with, for the OpenAPI document.
    """

    role: Role | None
    users_only: bool = False
    public_when: Callable[[Settings], bool] | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None

    def is_public(self, settings: Settings) -> bool:
        if self.role is None:
            return True
        return self.public_when is not None and self.public_when(settings)


def requires(
    role: Role,
    *,
    users_only: bool = False,
    public_when: Callable[[Settings], bool] | None = None,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
) -> Callable[[View], View]:
    """Declare that the route needs a principal whose role satisfies ``role``."""
    return _declare(
        Access(role=role, users_only=users_only, public_when=public_when, body=body, query=query)
    )


def public(view: View) -> View:
    """Declare that the route answers anyone, without credentials."""
    return _declare(Access(role=None))(view)


def public_with_body(body: type[BaseModel]) -> Callable[[View], View]:
    """:func:`public`, for a route reading a JSON ``body`` (login)."""
    return _declare(Access(role=None, body=body))


def _declare(access: Access) -> Callable[[View], View]:
    def mark(view: View) -> View:
        if hasattr(view, _ATTRIBUTE):
            raise TypeError(f"{view.__qualname__} declares its access twice")
        setattr(view, _ATTRIBUTE, access)
        return view

    return mark


def access_of(view: Callable[..., Any] | None) -> Access | None:
    """The declaration of a view function (None: undeclared)."""
    return getattr(view, _ATTRIBUTE, None)


def check_declarations(app: Quart) -> list[str]:
    """The routes of ``app`` whose view has no access declaration, as ``METHODS path``."""
    missing = []
    for rule in app.url_map.iter_rules():
        if access_of(app.view_functions.get(rule.endpoint)) is None:
            methods = ",".join(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
            missing.append(f"{methods} {rule.rule}")
    return sorted(missing)
