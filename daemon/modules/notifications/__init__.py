"""Notifications and escalation: the escalation policy and its check, notification
channels (webhook, email) and their deliveries, one job each.

Public face::

    from daemon.modules.notifications import parse_policy, next_step, run_escalation_check
    from daemon.modules.notifications import create_channel, deliver, DeliveryOptions, ...

Events reach channels through a trigger on ``case_events`` (migration 0012): this module
imports :mod:`daemon.modules.cases`, never the other way round.
"""

from __future__ import annotations

from daemon.modules.notifications.channel_probe import send_test_message
from daemon.modules.notifications.channel_rules import EVENTS, KINDS
from daemon.modules.notifications.channels import (
    Channel,
    create_channel,
    delete_channel,
    get_channel,
    list_channels,
    update_channel,
)
from daemon.modules.notifications.deliveries import QUEUE as DELIVER_QUEUE
from daemon.modules.notifications.deliveries import Outcome, deliver
from daemon.modules.notifications.errors import (
    ChannelNotFound,
    DeliveryFailed,
    DuplicateChannel,
    NotificationError,
)
from daemon.modules.notifications.escalation_check import CheckReport, run_escalation_check
from daemon.modules.notifications.escalation_policy import (
    EscalationPolicy,
    Level,
    Step,
    next_step,
    parse_policy,
)
from daemon.modules.notifications.metrics import notification_counts
from daemon.modules.notifications.schedules import (
    ESCALATION_CHECK_QUEUE,
    SCHEDULES,
    escalation_schedules,
)
from daemon.modules.notifications.sending import DeliveryOptions
from daemon.modules.notifications.signing import signature, signed_headers, verify

__all__ = [
    "DELIVER_QUEUE",
    "ESCALATION_CHECK_QUEUE",
    "EVENTS",
    "KINDS",
    "SCHEDULES",
    "Channel",
    "ChannelNotFound",
    "CheckReport",
    "DeliveryFailed",
    "DeliveryOptions",
    "DuplicateChannel",
    "EscalationPolicy",
    "Level",
    "NotificationError",
    "Outcome",
    "Step",
    "create_channel",
    "delete_channel",
    "deliver",
    "escalation_schedules",
    "get_channel",
    "list_channels",
    "next_step",
    "notification_counts",
    "parse_policy",
    "run_escalation_check",
    "send_test_message",
    "signature",
    "signed_headers",
    "update_channel",
    "verify",
]
