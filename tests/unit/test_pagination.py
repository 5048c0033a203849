"""Keyset pagination: the limit+1 rule, the cursor, and what a cursor may be."""

from __future__ import annotations

import pytest

from daemon.shared.errors import ValidationFailed
from daemon.shared.pagination import Page, decode_cursor, fetch_limit, page_of


def test_a_page_with_more_rows_after_it_names_its_last_id():
    rows = [30, 20, 10, 5]  # fetched with fetch_limit(3)
    assert fetch_limit(3) == 4
    assert page_of(rows, 3, key=int) == Page(items=[30, 20, 10], next_cursor="10")


@pytest.mark.parametrize("rows", [[30, 20, 10], [30], []])
def test_the_last_page_has_no_cursor(rows):
    assert page_of(rows, 3, key=int) == Page(items=rows, next_cursor=None)


@pytest.mark.parametrize("cursor", ["0", "42", str(2**63 - 1)])
def test_cursors_are_ascii_digits_of_a_bigint(cursor):
    assert decode_cursor(cursor) == int(cursor)
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "cursor", ["", "-1", "+1", " 1", "1.0", "1_0", "\u00b2", "\u0661", "\uff11", str(2**63)]
)
def test_anything_else_is_refused_naming_the_field(cursor):
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, field="before")
    assert caught.value.errors[0]["field"] == "before"
