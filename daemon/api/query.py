"""Query strings into validated models, with field-level errors like JSON bodies.

Numbers in a query string are held to one pattern, whatever a route's model declares:
every integer parameter and every ``cursor`` (all listings page by a bigint id) must be
1 to 19 ASCII digits with a value that fits a PostgreSQL bigint. Python's ``int()`` and
pydantic's lax parsing would otherwise take Unicode digits (``"٣"``), signs, spaces,
underscores and ``"1.0"``, and ``"²"`` made ``int()`` raise.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Final, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import request

from daemon.api.body import field_errors
from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import MAX_ID as MAX_BIGINT
from daemon.shared.pagination import is_id as is_bigint_id

QueryT = TypeVar("QueryT", bound="QueryModel")

ID_PATTERN: Final = r"^[0-9]{1,19}$"
"""What an id or cursor looks like in a URL: ASCII digits (at most :data:`MAX_BIGINT`;
the rule itself is :func:`daemon.shared.pagination.is_id`)."""

Cursor = Annotated[str, Field(pattern=ID_PATTERN, description="next_cursor of the last page")]
"""The type to declare a listing's ``cursor`` with (checked here in any case)."""


class QueryModel(BaseModel):
    """Base of query-string models: unknown parameters are refused, not ignored (a typo
    in a filter must not silently list everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def query_params(model: type[QueryT]) -> QueryT:
    """The request's query string validated as ``model``.

    A parameter given twice is refused. Raises ValidationFailed naming each field.
    """
    data: dict[str, str] = {}
    errors = []
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            errors.append({"field": name, "message": "given more than once"})
        elif "\x00" in values[0]:
            errors.append({"field": name, "message": "contains a NUL character"})
        elif name in _numeric_fields(model) and not is_bigint_id(values[0]):
            errors.append({"field": name, "message": f"must be ASCII digits, at most {MAX_BIGINT}"})
        data[name] = values[0]
    if not errors:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = field_errors(exc, whole="(query)")
    raise ValidationFailed(errors, f"{len(errors)} invalid query parameter(s)")


@cache
def _numeric_fields(model: type[QueryModel]) -> frozenset[str]:
    """The parameters of ``model`` held to :func:`is_bigint_id`: ``cursor`` and every
    integer field (``int`` or ``int | None``)."""
    names = {"cursor"}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
        if annotation is int:
            names.add(info.alias or name)
    return frozenset(names)
