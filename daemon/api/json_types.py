"""Field types of JSON request bodies that take JSON's types as they are.

pydantic's lax mode would take ``0`` or ``"yes"`` for a boolean and a number (a Unix
time) for a date: the OpenAPI document says ``boolean`` and ``string`` (date-time), and
the server must refuse what the document refuses (422), not guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Strict


def _date_time_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    return value


JsonBool = Annotated[bool, Strict()]
"""``true`` or ``false``, nothing else."""

JsonDateTime = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]
"""An RFC 3339 date-time string with a time zone; no number."""
