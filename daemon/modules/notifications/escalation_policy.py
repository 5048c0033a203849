"""The escalation policy: what happens to an open case after its SLA deadline.

A pure rule, tested without a database. Per severity, a ladder of levels; level ``k``
(1-based) fires ``after`` the previous one, level 1 ``after`` the SLA deadline. Each
level names the channels to notify and may reassign the case (``assign_to``).

The check (:mod:`daemon.modules.notifications.escalation_check`) keeps, per case, the
level reached and ``escalation_due_at``: while the level is 0 that is the SLA deadline,
after that the time the next level fires. :func:`next_step` says, from these and the
clock, which level the case should be at now and when the following one is due. A case
that came due while the service was down jumps to the level it should have reached: the
step carries that one level's channels and assignee, never one notification per skipped
level.

Text form (``TRIAGED_ESCALATION_POLICY``, one line of JSON)::

    {"high": {"levels": [{"after": "0s", "channels": ["ops-webhook"]},
                         {"after": "1h", "channels": ["ops-webhook", "lead-email"],
                          "assign_to": "lead@example.com"}]}}
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_LEVELS = 20
MAX_DELAY = timedelta(days=365)
SEVERITIES = ("low", "medium", "high", "critical")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_DURATION = re.compile(r"(\d+(\.\d+)?[wdhms])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


@attrs.frozen(kw_only=True)
class Level:
    """One rung of a ladder: fired ``after`` the previous one (the first: after the SLA
    deadline); notifies ``channels`` by name; reassigns to ``assign_to`` if set."""

    after: timedelta
    channels: tuple[str, ...]
    assign_to: str | None = None


@attrs.frozen(kw_only=True)
class EscalationPolicy:
    """Severity -> ladder. A severity without a ladder never escalates."""

    ladders: Mapping[str, tuple[Level, ...]] = attrs.field(factory=dict)

    def ladder(self, severity: str) -> tuple[Level, ...]:
        return self.ladders.get(severity, ())

    def channel_names(self) -> frozenset[str]:
        return frozenset(
            name for ladder in self.ladders.values() for lv in ladder for name in lv.channels
        )

    def describe(self) -> dict[str, object]:
        """A JSON-able view (for ``triaged config check``)."""
        return {
            severity: {
                "levels": [
                    {
                        "after": f"{level.after.total_seconds():g}s",
                        "channels": list(level.channels),
                        **({"assign_to": level.assign_to} if level.assign_to else {}),
                    }
                    for level in ladder
                ]
            }
            for severity, ladder in self.ladders.items()
        }


@attrs.frozen(kw_only=True)
class Step:
    """What the check does to one due case.

    ``level``: the level the case should be at now (equal to the current one: nothing
    fires, only ``next_due_at`` moves). ``fired``: the one level reached by this step
    (None when nothing fires), whose channels are notified and whose ``assign_to``
    applies. ``next_due_at``: when the following level is due (None at the top).
    """

    level: int
    fired: Level | None
    next_due_at: datetime | None


def next_step(
    policy: EscalationPolicy, severity: str, level: int, due_at: datetime, now: datetime
) -> Step:
    """The level an open, unacknowledged case should be at ``now``.

    ``level`` is the case's current level, ``due_at`` its ``escalation_due_at`` (the SLA
    deadline at level 0, else when level ``level + 1`` fires). Pure and total: a level
    above the ladder's top (the policy shrank) stays where it is, with no next due time.
    """
    ladder = policy.ladder(severity)
    if level >= len(ladder) or level < 0:
        return Step(level=level, fired=None, next_due_at=None)
    fire_at = due_at + (ladder[0].after if level == 0 else timedelta(0))
    reached = level
    while reached < len(ladder) and fire_at <= now:
        reached += 1
        if reached < len(ladder):
            fire_at += ladder[reached].after
    next_due = fire_at if reached < len(ladder) else None
    if reached == level:
        # Nothing due yet (level 0 with a first delay): wait for the first level.
        return Step(level=level, fired=None, next_due_at=next_due)
    return Step(level=reached, fired=ladder[reached - 1], next_due_at=next_due)


def parse_duration(value: object) -> timedelta:
    """Zero or more seconds, at most a year: a number or ``"1h30m"`` (units w d h m s).

    Raises:
        ValueError: naming the value.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip().lower()):
        parts = _DURATION_PART.findall(value.strip().lower())
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not seconds or like '0s', '90m', '4h'")
    if not 0 <= seconds <= MAX_DELAY.total_seconds():
        raise ValueError(f"duration {value!r} must be at least 0 and at most 365 days")
    return timedelta(seconds=seconds)


def parse_policy(text: str) -> EscalationPolicy:
    """The policy from its JSON text.

    Raises:
        ValueError: one message naming what is wrong (severity, level index, field).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected an object of severities, got {type(data).__name__}")
    ladders: dict[str, tuple[Level, ...]] = {}
    for severity, body in data.items():
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r} (one of {', '.join(SEVERITIES)})")
        if not isinstance(body, dict) or set(body) != {"levels"}:
            raise ValueError(f'{severity}: expected {{"levels": [...]}}')
        levels = body["levels"]
        if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
            raise ValueError(f"{severity}.levels: expected a list of 1 to {MAX_LEVELS} levels")
        ladders[severity] = tuple(
            _level(f"{severity}.levels[{i}]", item) for i, item in enumerate(levels)
        )
    return EscalationPolicy(ladders=ladders)


def _level(where: str, item: object) -> Level:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = set(item) - {"after", "channels", "assign_to"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if "after" not in item:
        raise ValueError(f"{where}.after: required")
    try:
        after = parse_duration(item["after"])
    except ValueError as exc:
        raise ValueError(f"{where}.after: {exc}") from None
    channels = item.get("channels", [])
    if not isinstance(channels, list) or not all(
        isinstance(name, str) and _NAME.fullmatch(name) for name in channels
    ):
        raise ValueError(
            f"{where}.channels: expected a list of channel names (lower case letters, "
            "digits, '.', '_', '-')"
        )
    assign_to = item.get("assign_to")
    if assign_to is not None and (
        not isinstance(assign_to, str) or "@" not in assign_to or len(assign_to) > 254
    ):
        raise ValueError(f"{where}.assign_to: expected a user's email address")
    return Level(after=after, channels=tuple(dict.fromkeys(channels)), assign_to=assign_to)
