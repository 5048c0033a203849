"""Keyset pagination, the one way every list is paged.

A list is ordered by its rows' ids (newest first, or oldest first); a page holds at most
``limit`` rows, and its ``next_cursor`` is the id of its last row: the next page starts
after it. The query asks for :func:`fetch_limit` rows, one more than the page holds, so
that whether another page follows is known without a second query or a count; then
:func:`page_of` cuts the page and names the cursor. No cursor (None) on the last page.

Cursors are opaque to clients but are ids written in ASCII digits; :func:`decode_cursor`
reads one back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Generic, TypeVar

import attrs

from daemon.shared.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

T = TypeVar("T")

MAX_ID = 2**63 - 1  # ids are bigints
_DIGITS = re.compile(r"[0-9]{1,19}")  # with fullmatch: a "$" would allow a final newline


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """One page of a list: its rows, and the cursor to the next page (None: the last)."""

    items: list[T]
    next_cursor: str | None


def fetch_limit(limit: int) -> int:
    """How many rows to ask for a page of ``limit``: one more, to see past its end."""
    return limit + 1


def page_of(rows: Sequence[T], limit: int, *, key: Callable[[T], int]) -> Page[T]:
    """The page of ``rows`` (fetched with :func:`fetch_limit`): at most ``limit`` of them,
    and the cursor after the last one when more rows followed."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return Page(items=items, next_cursor=str(key(items[-1])) if more and items else None)


def is_id(text: str) -> bool:
    """Whether ``text`` is an id as written in a URL or a cursor: 1 to 19 ASCII digits
    of a value that fits a bigint (``int()`` would also take other Unicode digits, signs,
    spaces and underscores)."""
    return _DIGITS.fullmatch(text) is not None and int(text) <= MAX_ID


def decode_cursor(cursor: str | None, *, field: str = "cursor") -> int | None:
    """The id a cursor names (None: the first page).

    Raises:
        ValidationFailed: (``field``) not ASCII digits of a bigint.
    """
    if cursor is None:
        return None
    if not is_id(cursor):
        raise ValidationFailed([{"field": field, "message": "not a cursor of this list"}])
    return int(cursor)
