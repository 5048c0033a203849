"""Sources: polling of pull sources (HTTP, feeds, directories) and their failures.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

import os.path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from daemon.shared.config.values import CommaList  # noqa: TC001 (pydantic reads it)


class SourcesSettings(BaseModel):
    """Sources: polling of pull sources and their failures."""

    source_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed polls after which a source is disabled (an admin "
        "enables it again).",
    )
    source_backoff_base_seconds: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description="After a failed poll, scheduled polls pause this long, doubling with "
        "each further failure.",
    )
    source_backoff_max_seconds: float = Field(
        default=3600.0, ge=0, le=7 * 86400, description="Longest pause after failed polls."
    )
    source_poll_concurrency: int = Field(
        default=4, ge=1, le=100, description="Polls this process runs at once."
    )
    source_directory_roots: CommaList = Field(
        default=(),
        description="Absolute directories under which directory sources may watch, "
        "comma-separated (none: no directory source can be configured). A source's path "
        "outside them is refused with 422; symlinks leaving them are not followed.",
    )

    @field_validator("source_directory_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("source_directory_roots")
    @classmethod
    def _absolute_roots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for root in value:
            if not os.path.isabs(root) or "\0" in root:
                raise ValueError(f"not an absolute path: {root!r}")
        return tuple(os.path.normpath(root) for root in value)
