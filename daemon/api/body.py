"""Reading request bodies into validated models, with the right error for each fault."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request

from daemon.shared.errors import MalformedInput, UnsupportedMediaType, ValidationFailed

ModelT = TypeVar("ModelT", bound=BaseModel)


async def json_body(model: type[ModelT]) -> ModelT:
    """The request's JSON body validated as ``model``.

    Raises:
        UnsupportedMediaType: the body is not declared as JSON.
        MalformedInput: the body is not valid JSON.
        ValidationFailed: the JSON does not fit ``model``; ``errors`` names each field.
    """
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.mimetype or 'none'}"
        )
    raw = await request.get_data(as_text=False)
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedInput(f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ValidationFailed(errors, f"{len(errors)} invalid field(s)") from None
