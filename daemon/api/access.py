"""Who may call each route and what it reads and answers, declared where the route is
declared.

Every view function carries exactly one declaration, the decorator right under the
route's own::

    @blueprint.get("/api/v1/users")
    @requires(Role.ADMIN, query=UserListQuery, replies={200: page_of(UserView)})
    async def list_users() -> Response: ...

    @blueprint.get("/livez")
    @public(replies={200: Liveness}, database=False)
    async def livez() -> Response: ...

The same declaration says what the route reads (body, query, form) and answers (its
replies by status, and the error statuses particular to it): the OpenAPI document is
generated from it (:mod:`daemon.api.openapi`).

:func:`check_declarations` lists the routes of an app without one; ``create_app``
refuses to build an app that has any, so a forgotten declaration fails every test (and
the authorization matrix test names it) long before it could reach production. At run
time :mod:`daemon.api.authn` enforces the declaration before the view runs; a route
without one is refused, never served open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

if TYPE_CHECKING:
    from pydantic import BaseModel
    from quart import Quart

    from daemon.modules.auth import Role
    from daemon.shared.config import Settings

View = TypeVar("View", bound=Callable[..., Awaitable[Any]])

_ATTRIBUTE = "__triaged_access__"


@attrs.frozen(kw_only=True)
class Reply:
    """One answer a route gives when it does its job (``/readyz`` also when it cannot).

    ``model`` is the schema of its ``media_type`` body (None: a body the document does
    not describe further, as the HTML of ``/docs``); an empty ``media_type`` means no
    body at all (a 204). ``headers`` are the response headers it always sets.
    """

    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    description: str = "Success"
    headers: tuple[str, ...] = ()


ReplyDeclaration = Reply | type["BaseModel"] | None
"""What a declaration's ``replies`` maps a status to: a :class:`Reply`, or just the JSON
body's model (``None``: no body)."""


def _replies(declared: Mapping[int, ReplyDeclaration]) -> dict[int, Reply]:
    replies: dict[int, Reply] = {}
    for status, reply in declared.items():
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        if isinstance(reply, Reply):
            replies[status] = reply
        elif reply is None:
            replies[status] = Reply(media_type="", description="No content")
        else:
            replies[status] = Reply(model=reply)
    if not replies:
        raise ValueError("a route answers something: declare its replies")
    return replies


@attrs.frozen(kw_only=True)
class Access:
    """A route's declaration: who may call it, what it reads and what it answers.

    ``role`` None means public (no credentials looked at). ``users_only`` routes refuse
    API keys (403): they act on the caller's own login or password. ``public_when``
    makes a role-protected route public when the settings say so (``/metrics``).
    ``body`` and ``query`` are the models the route reads its JSON body and query
    string with; ``body_required`` False for a body that may be left out (reanalyze);
    ``form`` the model of the form fields beside a multipart ``file`` part, for a route
    that also takes uploads. ``replies`` are its answers when it does its job, by status;
    ``errors`` the error statuses it answers besides those every route of its kind
    answers (see :func:`daemon.api.openapi.error_statuses`); ``database`` False for a
    route that never fails for want of the database (no problem 503).

    The OpenAPI document is generated from these declarations, and the contract tests
    check every response against it: a status a route answers without declaring it
    fails the build.
    """

    role: Role | None
    users_only: bool = False
    public_when: Callable[[Settings], bool] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    form: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    replies: Mapping[int, Reply] = attrs.field(factory=lambda: {200: Reply()})
    errors: frozenset[int] = frozenset()
    database: bool = True
    # Request headers the route requires, name -> description (If-Match of case work).
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def is_public(self, settings: Settings) -> bool:
        if self.role is None:
            return True
        return self.public_when is not None and self.public_when(settings)


def requires(
    role: Role,
    *,
    replies: Mapping[int, ReplyDeclaration] | None = None,
    errors: Iterable[int] = (),
    users_only: bool = False,
    public_when: Callable[[Settings], bool] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    form: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[View], View]:
    """Declare that the route needs a principal whose role satisfies ``role``, and what
    it reads and answers (see :class:`Access`); ``headers``: the request headers it
    requires (name -> description), for the OpenAPI document.

    Without ``replies`` the route is declared to answer a 200 with an undescribed body:
    for test apps only; the app's own routes declare theirs (a contract test checks).
    """
    return _declare(
        Access(
            role=role,
            users_only=users_only,
            public_when=public_when,
            body=body,
            body_required=body_required,
            form=form,
            query=query,
            replies=_replies({200: Reply()} if replies is None else replies),
            errors=frozenset(errors),
            headers=dict(headers or {}),
        )
    )


@overload
def public(view: View, /) -> View: ...
@overload
def public(
    *,
    replies: Mapping[int, ReplyDeclaration],
    errors: Iterable[int] = (),
    body: type[BaseModel] | None = None,
    database: bool = True,
) -> Callable[[View], View]: ...
def public(
    view: View | None = None,
    /,
    *,
    replies: Mapping[int, ReplyDeclaration] | None = None,
    errors: Iterable[int] = (),
    body: type[BaseModel] | None = None,
    database: bool = True,
) -> View | Callable[[View], View]:
    """Declare that the route answers anyone, without credentials.

    Bare (``@public``) it declares a 200 with an undescribed body: for test apps only;
    the app's own routes declare their ``replies`` (a contract test checks).
    """
    if view is not None:
        return _declare(Access(role=None))(view)
    return _declare(
        Access(
            role=None,
            body=body,
            replies=_replies({200: Reply()} if replies is None else replies),
            errors=frozenset(errors),
            database=database,
        )
    )


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
