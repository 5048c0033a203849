"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Literal

from daemon.api.schemas.base import ResponseModel


class Liveness(ResponseModel):
    status: Literal["ok"]


class Readiness(ResponseModel):
    """``ready`` (200) or ``unavailable`` (503) with each check's state."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
