"""The audit log: append-only security and administrative events.

Public face::

    from daemon.modules.audit import record, list_events, AuditContext, Actor, ...

See :mod:`daemon.modules.audit.log` for the contract.
"""

from __future__ import annotations

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
    "NewEvent",
    "audit_filter_sql",
    "list_events",
    "record",
    "record_many",
]
