"""The pure rules of CSV exports: the column sets, ``?columns=``, the neutralisation
rule and the file name (the SQL that applies them is tested on PostgreSQL in
tests/integration/test_exports.py)."""

from __future__ import annotations

from datetime import date

import pytest
from psycopg import sql

from daemon.modules.exports import (
    COLUMNS,
    FORMULA_TRIGGERS,
    ExportKind,
    Treatment,
    file_name,
    neutralise,
    select_columns,
)
from daemon.modules.exports.columns import column_sql
from daemon.shared.errors import ValidationFailed

# The documented column sets: changing one breaks every consumer's spreadsheet.
DOCUMENTED = {
    ExportKind.DOCUMENTS: "id,title,state,source_id,external_id,url,filename,media_type,"
    "size_bytes,sha256,failed_step,error,duplicate_of,language,category,severity,"
    "analysis_id,created_by,metadata,created_at,updated_at,completed_at,retain_until,"
    "finished_at",
    ExportKind.CASES: "id,document_id,document_title,analysis_id,status,severity,sla_due_at,"
    "assignee,tags,reason,created_at,updated_at,category,assignee_user_id,version,resolution,"
    "resolution_note,acknowledged_at,resolved_at,escalation_level,escalation_due_at",
    ExportKind.AUDIT: "id,at,actor_type,actor_id,action,target_type,target_id,client_addr,"
    "request_id,details",
}


@pytest.mark.parametrize("kind", list(ExportKind))
def test_the_column_sets_are_the_documented_ones(kind):
    assert ",".join(COLUMNS[kind]) == DOCUMENTED[kind]
    assert [c.name for c in select_columns(kind, None)] == DOCUMENTED[kind].split(",")


def test_columns_select_and_order_a_subset():
    chosen = select_columns(ExportKind.DOCUMENTS, " title , id,created_at")
    assert [c.name for c in chosen] == ["title", "id", "created_at"]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("id,nope", "'nope'"),
        ("ID", "'ID'"),  # names are exact
        ("id,id", "given more than once: id"),
        (",", "names no column"),
    ],
)
def test_bad_columns_are_refused_on_the_columns_field(given, named):
    with pytest.raises(ValidationFailed) as refused:
        select_columns(ExportKind.CASES, given)
    [error] = refused.value.errors
    assert error["field"] == "columns" and named in error["message"]


def test_only_written_text_is_neutralised_and_times_are_utc():
    treatments = {c.name: c.treatment for c in COLUMNS[ExportKind.DOCUMENTS].values()}
    assert treatments["title"] is Treatment.TEXT and treatments["url"] is Treatment.TEXT
    assert treatments["created_at"] is Treatment.TIME and treatments["id"] is Treatment.PLAIN
    rendered = column_sql(COLUMNS[ExportKind.DOCUMENTS]["title"]).as_string(None)
    assert "ascii(d.title) IN (61, 43, 45, 64, 9, 13)" in rendered
    assert [ord(c) for c in FORMULA_TRIGGERS] == [61, 43, 45, 64, 9, 13]
    assert rendered.endswith('AS "title"')
    assert "AT TIME ZONE 'UTC'" in column_sql(COLUMNS[ExportKind.AUDIT]["at"]).as_string(None)
    assert isinstance(column_sql(COLUMNS[ExportKind.AUDIT]["id"]), sql.Composed)


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ("", ""),
        ("日本", "日本"),
    ],
)
def test_neutralise(cell, written):
    assert neutralise(cell) == written


def test_file_name_is_dated():
    assert file_name(ExportKind.DOCUMENTS, date(2026, 12, 6)) == "documents-2026-12-06.csv"
    assert file_name(ExportKind.AUDIT, date(2027, 1, 2)) == "audit-2027-01-02.csv"
