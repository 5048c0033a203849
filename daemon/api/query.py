"""Query strings into validated models, with field-level errors like JSON bodies."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from quart import request

from daemon.api.body import field_errors
from daemon.shared.errors import ValidationFailed

QueryT = TypeVar("QueryT", bound="QueryModel")


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
        data[name] = values[0]
    if not errors:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = field_errors(exc, whole="(query)")
    raise ValidationFailed(errors, f"{len(errors)} invalid query parameter(s)")
