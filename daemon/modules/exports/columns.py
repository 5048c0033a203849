"""What a CSV export holds: the stable column set of each kind, the ``?columns=`` rule,
the formula neutralisation and the time format, all decided in SQL.

Pure: nothing here touches a database. :func:`select_columns` checks a ``columns``
parameter; :func:`columns_sql` turns the chosen columns into the SELECT list that the
export's COPY runs, so PostgreSQL formats every cell and Python only moves bytes.

Cells:

* **Text a user or a model wrote** (``Treatment.TEXT``) is neutralised as OWASP
  recommends against CSV injection: a cell starting with ``=``, ``+``, ``-``, ``@``, a
  tab or a carriage return gets a single quote ``'`` in front, so that a spreadsheet
  shows it as text instead of running it as a formula. Nothing else in the cell changes.
* **Times** (``Treatment.TIME``) are ISO 8601 in UTC: ``2026-12-06T03:59:27.123456Z``
  (the fraction is left out when it is zero).
* **Numbers, ids, states and hashes** (``Treatment.PLAIN``) are written as they are;
  none of them can start with a formula character (ids and sizes are never negative).
* NULL is an empty cell; an empty string is ``""``. JSON values (metadata, details,
  tags) are their JSON text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, LiteralString

import attrs
from psycopg import sql

from daemon.shared.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import date

NEUTRALISING_PREFIX = "'"
"""Put in front of a text cell that a spreadsheet would run as a formula."""

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP)."""

# The SQL of the two treatments, around a column's expression ({x}). ascii() is the code
# point of the first character (0 for '', NULL for NULL: then the cell stays NULL).
_NEUTRALISED: LiteralString = (
    "CASE WHEN ascii({x}) IN (61, 43, 45, 64, 9, 13) THEN '''' || {x} ELSE {x} END"
)
_UTC_ISO_8601: LiteralString = "replace(({x} AT TIME ZONE 'UTC')::text, ' ', 'T') || 'Z'"


class ExportKind(StrEnum):
    DOCUMENTS = "documents"
    CASES = "cases"
    AUDIT = "audit"


class Treatment(StrEnum):
    TEXT = "text"  # neutralised
    TIME = "time"  # ISO 8601 UTC
    PLAIN = "plain"  # as is


@attrs.frozen
class Column:
    name: str
    expression: LiteralString  # SQL over the kind's FROM clause (queries.sql)
    treatment: Treatment


def _catalog(*columns: Column) -> dict[str, Column]:
    return {column.name: column for column in columns}


T, Z, P = Treatment.TEXT, Treatment.TIME, Treatment.PLAIN

COLUMNS: Mapping[ExportKind, Mapping[str, Column]] = {
    ExportKind.DOCUMENTS: _catalog(
        Column("id", "d.id", P),
        Column("title", "d.title", T),
        Column("state", "d.state::text", P),
        Column("source_id", "d.source_id", P),
        Column("external_id", "d.external_id", T),
        Column("url", "d.url", T),
        Column("filename", "d.filename", T),
        Column("media_type", "d.media_type", T),
        Column("size_bytes", "d.size_bytes", P),
        Column("sha256", "encode(d.sha256, 'hex')", P),
        Column("failed_step", "d.failed_step", T),
        Column("error", "d.error", T),
        Column("duplicate_of", "d.duplicate_of", P),
        Column("language", "d.language", T),
        Column("category", "d.category", T),
        Column("severity", "d.severity", T),
        Column("analysis_id", "d.analysis_id", P),
        Column("created_by", "d.created_by", T),
        Column("metadata", "d.metadata::text", T),
        Column("created_at", "d.created_at", Z),
        Column("updated_at", "d.updated_at", Z),
        Column("completed_at", "d.completed_at", Z),
        Column("retain_until", "d.retain_until", Z),  # informational: see docs/retention.md
        Column("finished_at", "d.finished_at", Z),  # what the retention periods count from
    ),
    ExportKind.CASES: _catalog(
        Column("id", "c.id", P),
        Column("document_id", "c.document_id", P),
        Column("document_title", "d.title", T),
        Column("analysis_id", "c.analysis_id", P),
        Column("status", "c.status::text", P),
        Column("severity", "c.severity", T),
        Column("sla_due_at", "c.sla_due_at", Z),
        Column("assignee", "c.assignee", T),
        Column("tags", "to_jsonb(c.tags)::text", T),
        Column("reason", "c.reason", T),
        Column("created_at", "c.created_at", Z),
        Column("updated_at", "c.updated_at", Z),
        Column("category", "c.category", T),
        Column("assignee_user_id", "c.assignee_user_id", P),
        Column("version", "c.version", P),
        Column("resolution", "c.resolution", T),
        Column("resolution_note", "c.resolution_note", T),
        Column("acknowledged_at", "c.acknowledged_at", Z),
        Column("resolved_at", "c.resolved_at", Z),
        Column("escalation_level", "c.escalation_level", P),
        Column("escalation_due_at", "c.escalation_due_at", Z),
    ),
    ExportKind.AUDIT: _catalog(
        Column("id", "id", P),
        Column("at", "at", Z),
        Column("actor_type", "actor_type::text", P),
        Column("actor_id", "actor_id", P),
        Column("action", "action", T),
        Column("target_type", "target_type", T),
        Column("target_id", "target_id", T),
        Column("client_addr", "client_addr", T),
        Column("request_id", "request_id", T),
        Column("details", "details::text", T),
    ),
}
"""Every kind's columns, in their default order. Stable: columns are only ever added at
the end, never renamed or removed."""

MAX_COLUMNS_PARAMETER = 2000


def select_columns(kind: ExportKind, requested: str | None) -> tuple[Column, ...]:
    """The columns of an export: all of the kind's, or those ``requested`` names (a
    comma-separated list) in the order given.

    Raises:
        ValidationFailed: on field ``columns``: an unknown name (named), a name given
            twice, or no name at all.
    """
    catalog = COLUMNS[kind]
    if requested is None:
        return tuple(catalog.values())
    names = [name.strip() for name in requested[:MAX_COLUMNS_PARAMETER].split(",")]
    names = [name for name in names if name]
    if not names:
        raise ValidationFailed([{"field": "columns", "message": "names no column"}])
    unknown = [name for name in names if name not in catalog]
    if unknown:
        shown = ", ".join(repr(name[:100]) for name in unknown[:10])
        raise ValidationFailed(
            [
                {
                    "field": "columns",
                    "message": f"unknown column {shown}; the {kind.value} columns are "
                    + ", ".join(catalog),
                }
            ]
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValidationFailed(
            [{"field": "columns", "message": "given more than once: " + ", ".join(twice)}]
        )
    return tuple(catalog[name] for name in names)


def column_sql(column: Column) -> sql.Composed:
    """One SELECT item: the column's expression, treated, named as the column."""
    expression = sql.SQL(column.expression)
    if column.treatment is Treatment.TEXT:
        expression = sql.SQL(_NEUTRALISED).format(x=expression)
    elif column.treatment is Treatment.TIME:
        expression = sql.SQL(_UTC_ISO_8601).format(x=expression)
    return sql.SQL("{} AS {}").format(expression, sql.Identifier(column.name))


def columns_sql(columns: tuple[Column, ...]) -> sql.Composed:
    """The SELECT list of an export."""
    return sql.SQL(", ").join(column_sql(column) for column in columns)


def neutralise(text: str) -> str:
    """What the export's SQL does to a text cell, in Python (for tests and docs)."""
    return NEUTRALISING_PREFIX + text if text.startswith(FORMULA_TRIGGERS) else text


def file_name(kind: ExportKind, day: date) -> str:
    """The file name offered to the client: ``documents-2026-12-06.csv``."""
    return f"{kind.value}-{day.isoformat()}.csv"
