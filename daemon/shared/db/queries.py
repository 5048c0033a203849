"""Named SQL queries loaded from ``.sql`` files shipped in the package.

A file holds one or more queries, each introduced by a header line
``-- name: claim_jobs``; the text up to the next header is the query. Python code refers
to queries by name only, and every query is parameterized (``%(name)s`` or ``%s``).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Split ``text`` into its named queries.

    Raises:
        ValueError: a query name appears twice, or the file has no named query.
    """
    matches = list(_HEADER.finditer(text))
    if not matches:
        raise ValueError("no '-- name: ...' header found")
    queries: dict[str, LiteralString] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match["name"]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        # The text comes from a file inside the package, never from user input.
        queries[name] = cast("LiteralString", text[match.end() : end].strip())
    return queries


def load_queries(package: str, filename: str) -> dict[str, LiteralString]:
    """Load the named queries of ``filename`` inside ``package`` (once, at import time)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text)
