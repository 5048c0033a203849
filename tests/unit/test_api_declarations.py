"""The access declarations say what a route answers; the OpenAPI document derives the
error statuses that follow from them (daemon/api/access.py, daemon/api/openapi.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from daemon.api.access import Reply, access_of, public, requires
from daemon.api.openapi import error_statuses
from daemon.modules.auth import Role


class Body(BaseModel):
    name: str


def declared(decorator):
    async def view(): ...

    return access_of(decorator(view))


def test_a_public_route_without_database_answers_only_the_edge_413():
    access = declared(public(replies={200: Body}, database=False))
    assert error_statuses(access, public=True, path_params=False) == {413}
    assert access.replies[200] == Reply(model=Body)


def test_a_protected_route_answers_401_and_503_and_403_above_viewer():
    viewer = declared(requires(Role.VIEWER, replies={200: Body}))
    assert error_statuses(viewer, public=False, path_params=False) == {401, 413, 503}
    admin = declared(requires(Role.ADMIN, replies={204: None}))
    assert error_statuses(admin, public=False, path_params=True) == {401, 403, 404, 413, 503}
    users_only = declared(requires(Role.VIEWER, users_only=True, replies={204: None}))
    assert 403 in error_statuses(users_only, public=False, path_params=False)


def test_a_body_brings_400_415_422_and_a_route_adds_its_own():
    access = declared(requires(Role.ANALYST, body=Body, replies={201: Body}, errors=(409,)))
    statuses = error_statuses(access, public=False, path_params=False)
    assert {400, 409, 415, 422} <= statuses


def test_a_204_has_no_body_and_a_reply_is_required():
    access = declared(requires(Role.ADMIN, replies={204: None}))
    assert access.replies[204].media_type == ""
    with pytest.raises(ValueError, match="declare its replies"):
        public(replies={})
    with pytest.raises(ValueError, match="not an HTTP status"):
        requires(Role.ADMIN, replies={2000: None})
