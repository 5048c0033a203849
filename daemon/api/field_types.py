"""Field types of request models that take values as the OpenAPI document describes
them, without pydantic's guesses.

pydantic's lax mode would take ``0`` or ``"yes"`` for a boolean and a number or a bare
date for a date-time: the document says ``boolean`` and an RFC 3339 ``date-time``, and
the server must refuse what the document refuses (422), not guess.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Strict

# RFC 3339's date-time (JSON Schema's format), ASCII digits only.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone")
    return value


def _true_or_false(value: Any) -> Any:
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


JsonBool = Annotated[bool, Strict()]
"""A JSON body's ``true`` or ``false``, nothing else."""

JsonInt = Annotated[int, Strict()]
"""A JSON body's integer: not ``true`` (which lax validation reads as 1), not ``"3"``."""

JsonNumber = Annotated[float, Strict()]
"""A JSON body's number (an integer or a fraction): not ``true``, not ``"3"``."""

DateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""An RFC 3339 date-time with a time zone (``2026-01-31T12:00:00Z``), in a JSON body or
a query: no Unix time, no bare date."""

QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]
"""A query parameter's ``true`` or ``false`` (OpenAPI's form of a boolean), nothing
else."""
