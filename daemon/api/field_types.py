"""Field types of request models that take values as the OpenAPI document describes
them, without pydantic's guesses.

pydantic's lax mode would take ``0`` or ``"yes"`` for a boolean and a number (a Unix
time) for a date: the document says ``boolean`` and ``string`` (date-time), and the
server must refuse what the document refuses (422), not guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Strict


def _date_time_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    return value


def _true_or_false(value: Any) -> Any:
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


JsonBool = Annotated[bool, Strict()]
"""A JSON body's ``true`` or ``false``, nothing else."""

JsonDateTime = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
"""A JSON body's RFC 3339 date-time string with a time zone; no number."""

QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]
"""A query parameter's ``true`` or ``false`` (OpenAPI's form of a boolean), nothing
else."""
