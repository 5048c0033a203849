"""The ``<int:...>`` converter of every route: ids in a path as ASCII digits only.

Werkzeug's own converter matches ``\\d+``, which in Python means any Unicode decimal
digit: ``/users/%EF%BC%91`` (a fullwidth one) was user 1, and a number past a bigint
reached PostgreSQL. This one matches exactly 1 to 19 ASCII digits of a value up to
:data:`~daemon.shared.pagination.MAX_ID`, in its regular expression (a converter refusing a
value later makes werkzeug answer 405 instead of 404); anything else is not a route
(404), the same answer as an id that does not exist.
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

from daemon.shared.pagination import MAX_ID as MAX_BIGINT


def digits_at_most(limit: int) -> str:
    """A regular expression matching the decimal numbers ``0..limit`` (ASCII digits,
    leading zeros allowed up to ``limit``'s length)."""
    top = str(limit)
    width = len(top)
    choices = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
    for index, digit in enumerate(top):
        if digit != "0":
            rest = width - index - 1
            choices.append(top[:index] + f"[0-{int(digit) - 1}]" + f"[0-9]{{{rest}}}")
    choices.append(top)
    return "(?:" + "|".join(choices) + ")"


class BigintIdConverter(IntegerConverter):
    """``<int:name>``: 1 to 19 ASCII digits, at most :data:`MAX_BIGINT`."""

    regex = digits_at_most(MAX_BIGINT)
