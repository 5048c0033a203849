"""The audit log: append-only security and administrative events.

Public face::

    from daemon.modules.audit import record, list_events, AuditContext, Actor, ...

See :mod:`daemon.modules.audit.log` for the contract.
"""

from __future__ import annotations

from daemon.modules.audit.chain import (
    CheckpointKey,
    Verification,
    checkpoint_key,
    checkpoint_key_warning,
    checkpoint_mac,
    count_below,
    purge_batch,
    purge_bound,
    verify,
)
from daemon.modules.audit.log import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    Actor,
    ActorType,
    AuditContext,
    AuditEvent,
    AuditFilter,
    AuditPage,
    NewEvent,
    audit_filter_sql,
    list_events,
    record,
    record_many,
)

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "Actor",
    "ActorType",
    "AuditContext",
    "AuditEvent",
    "AuditFilter",
    "AuditPage",
    "CheckpointKey",
    "NewEvent",
    "Verification",
    "audit_filter_sql",
    "checkpoint_key",
    "checkpoint_key_warning",
    "checkpoint_mac",
    "count_below",
    "list_events",
    "purge_batch",
    "purge_bound",
    "record",
    "record_many",
    "verify",
]
