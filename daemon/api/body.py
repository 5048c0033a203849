"""Reading request bodies into validated models, with the right error for each fault."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import trio
from pydantic import BaseModel, ValidationError
from quart import request

from daemon.api.json_input import json_text, parse_json
from daemon.shared.errors import BodyTooLarge, UnsupportedMediaType, ValidationFailed

ModelT = TypeVar("ModelT", bound=BaseModel)


DEFAULT_MAX_JSON_BYTES = 1024 * 1024


async def json_body(model: type[ModelT], *, max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> ModelT:
    """The request's JSON body validated as ``model``.

    Bodies over ``max_bytes`` are refused before they are read (a declared length) or
    as soon as they pass it: a login must not make the server parse megabytes.

    Raises:
        UnsupportedMediaType: the body is not declared as JSON.
        BodyTooLarge: the body is larger than ``max_bytes``.
        MalformedInput: the body is not valid JSON, or is nested deeper than
            :data:`~daemon.api.json_input.MAX_JSON_DEPTH` levels.
        ValidationFailed: the JSON does not fit ``model``, holds a number out of range
            (see :mod:`daemon.api.json_input`), or a string holds a NUL
            character (PostgreSQL text cannot) or a lone surrogate (UTF-8 cannot);
            ``errors`` names each field.
    """
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.mimetype or 'none'}"
        )
    if (request.content_length or 0) > max_bytes:
        raise BodyTooLarge(f"this body may have at most {max_bytes} bytes")
    raw = bytearray()  # one buffer, grown in place, dropped once decoded
    async for chunk in request.body:
        if len(raw) + len(chunk) > max_bytes:
            raise BodyTooLarge(f"this body may have at most {max_bytes} bytes")
        raw += chunk
    text = json_text(raw)
    del raw
    return await _validated(text, model)


async def json_model(raw: bytes, model: type[ModelT]) -> ModelT:
    """``raw`` (a body already read, e.g. to check its signature first) as JSON validated
    as ``model``, with the faults of :func:`json_body` (but no media type check).

    Raises:
        MalformedInput, ValidationFailed: as :func:`json_body`.
    """
    return await _validated(json_text(raw), model)


async def _validated(text: str, model: type[ModelT]) -> ModelT:
    data: Any = await _parsed(text)
    bad = _unstorable_path(data, ())
    if bad is not None:
        raise ValidationFailed(
            [
                {
                    "field": bad or "(body)",
                    "message": "contains a NUL character or a lone surrogate (not valid Unicode)",
                }
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, whole="(body)")
        raise ValidationFailed(errors, f"{len(errors)} invalid field(s)") from None


# Larger bodies are parsed in a worker thread: the event loop keeps serving meanwhile.
_PARSE_IN_THREAD_BYTES = 256 * 1024


async def _parsed(text: str) -> Any:
    if len(text) < _PARSE_IN_THREAD_BYTES:
        return parse_json(text)
    return await trio.to_thread.run_sync(parse_json, text)


def field_errors(exc: ValidationError, *, whole: str) -> list[dict[str, str]]:
    """pydantic's errors as ``{field, message}`` (``whole`` names an error of the whole
    input)."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or whole, "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


# What PostgreSQL text cannot hold (NUL), or UTF-8 cannot encode (a lone surrogate, from
# a "\ud800" escape): refused here with a 422, not by the database with a 500.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable_path(value: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the first string (or key) holding a NUL character or a lone
    surrogate, if any."""
    if isinstance(value, str):
        return ".".join(path) if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _UNSTORABLE.search(key):
                return ".".join((*path, _UNSTORABLE.sub("?", key)))
            found = _unstorable_path(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None
