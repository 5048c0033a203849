"""Case work: how analysts close cases.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from daemon.shared.config.values import CommaList  # noqa: TC001 (pydantic reads it at run time)

_RESOLUTION = re.compile(r"[a-z][a-z0-9_]{0,39}")
DEFAULT_CASE_RESOLUTIONS = ("fixed", "false_positive", "duplicate", "wont_fix")


class CaseWorkSettings(BaseModel):
    """Case work: how analysts close cases."""

    case_resolutions: CommaList = Field(
        default=DEFAULT_CASE_RESOLUTIONS,
        description="The resolutions a case may be resolved with, comma-separated "
        "(lowercase letters, digits, _).",
    )

    @field_validator("case_resolutions", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("case_resolutions")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one resolution")
        for name in value:
            if not _RESOLUTION.fullmatch(name):
                raise ValueError(
                    f"resolution {name!r}: lowercase letters, digits and _, at most 40"
                )
        return tuple(dict.fromkeys(value))
