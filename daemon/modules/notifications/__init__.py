"""Notifications and escalation: the escalation policy and check, notification channels
(webhook, email) and their deliveries as jobs.

Public face::

    from daemon.modules.notifications import EscalationPolicy, parse_policy, next_step
"""

from __future__ import annotations

from daemon.modules.notifications.escalation_policy import (
    EscalationPolicy,
    Level,
    Step,
    next_step,
    parse_policy,
)

__all__ = [
    "EscalationPolicy",
    "Level",
    "Step",
    "next_step",
    "parse_policy",
]
