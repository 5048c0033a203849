"""``If-Match`` and ``ETag`` of versioned resources (cases): the ETag is the version in
quotes, ``"7"``; a change must name it in ``If-Match``.

If-Match is required on case changes: without it the answer is 428 (RFC 6585), so a
client cannot overwrite a change it has not seen by forgetting the header. ``*`` opts
out (any version). A value that names no version (a weak tag, a list, junk) never
matches: 412, as a stale version.
"""

from __future__ import annotations

import re

from quart import request

from daemon.modules.cases import CaseVersionRequired

_STRONG = re.compile(r'"([0-9]{1,9})"')
NO_MATCH = -1  # a version no case has: the change answers 412


def etag(version: int) -> str:
    return f'"{version}"'


def required_version() -> int | None:
    """The version ``If-Match`` names (None: ``*``, any; :data:`NO_MATCH`: none).

    Raises:
        CaseVersionRequired: no If-Match header.
    """
    value = request.headers.get("If-Match")
    if value is None:
        raise CaseVersionRequired
    value = value.strip()
    if value == "*":
        return None
    match = _STRONG.fullmatch(value)
    return int(match.group(1)) if match else NO_MATCH
