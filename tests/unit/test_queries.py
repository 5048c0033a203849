from __future__ import annotations

import pytest

from daemon.shared.db.queries import load_queries, parse_queries


def test_named_queries_are_split_at_their_headers():
    queries = parse_queries("-- name: one\nSELECT 1\n\n-- name: two\nSELECT %(x)s\n  FROM t\n")
    assert queries == {"one": "SELECT 1", "two": "SELECT %(x)s\n  FROM t"}


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


def test_a_file_without_headers_is_refused():
    with pytest.raises(ValueError, match="no '-- name"):
        parse_queries("SELECT 1")


def test_shipped_migration_queries_load():
    queries = load_queries("daemon.shared.db", "migrate.sql")
    assert {"lock", "unlock", "applied", "record"} <= queries.keys()
