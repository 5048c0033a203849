"""Schemathesis hooks of the generated-input run (``test_api_fuzz.py``), loaded through
``SCHEMATHESIS_HOOKS``.

- Keep the run from locking itself out: the run's own accounts (ids in
  ``FUZZ_KEEP_USERS``) are never disabled, demoted, reset or deleted by a generated
  request; an admin run that disabled its own user would spend the rest of its budget
  on 401s. Everything else (other users, keys, documents) is fair game.
- ``DELETE /api/v1/api-keys/{key_id}`` revokes: the key stays visible, with its
  ``revoked_at``, so an audit can tell who held it (documented on the route). The
  "deleted resource still available" check does not apply to it, and only to it.
  Likewise ``DELETE /api/v1/holds/{hold_id}`` releases a legal hold: the hold stays
  visible with its ``released_at`` and reason (issue 15).
- A multipart form carries every field as text: a string field "made" a boolean or a
  number by the generator arrives as the string ``true`` or ``12``; a field made an array
  is sent as repeated fields, an empty one as no field at all; an integer made the number
  ``5.0`` or the string ``"5"`` arrives as ``5.0`` or ``5``. The "schema-violating request
  accepted" check reads the schema's types, not the wire: a ``type`` violation of a
  multipart field is dropped when what goes on the wire for it is valid against the
  field's declared schema (no part, for a field not required; one part whose text, read
  as the declared type, passes the field's whole schema: bounds, length, pattern). Two
  parts, text of another type or out of bounds, and every other violation still count.
"""

from __future__ import annotations

import json
import math
import os
import re

import schemathesis
from jsonschema import Draft202012Validator

_KEEP_USERS = {int(i) for i in os.environ.get("FUZZ_KEEP_USERS", "").split(",") if i}


@schemathesis.hook
def filter_case(context, case) -> bool:
    if case.operation.path == "/api/v1/users/{user_id}" and case.method.upper() in (
        "PATCH",
        "DELETE",
    ):
        user_id = (case.path_parameters or {}).get("user_id")
        return not (isinstance(user_id, int) and user_id in _KEEP_USERS)
    return True


_RETYPED = re.compile(r"violates `type` at /properties/(\w+) \(was [a-z]+, became [a-z]+\)")


def _as_sent(text: str, schema: dict) -> object:
    """The value a form field's text stands for under its declared schema: the text
    itself for a string field, else its JSON reading (``ValueError`` if it has none)."""
    kinds = schema.get("type")
    if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
        return text
    value = json.loads(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(text)  # NaN, Infinity: no JSON Schema number
    return value


def _valid_on_the_wire(case, violation: str) -> bool:
    """Whether a ``type`` violation of a multipart field is gone once the field is text:
    its parts as Schemathesis sends them (a list as repeated parts, non-strings in their
    JSON spelling) are no part of an optional field, or one part whose value is valid
    against the field's whole declared schema (type, bounds, length, pattern)."""
    match = _RETYPED.search(violation)
    body = case.body if isinstance(case.body, dict) else None
    if match is None or body is None or match[1] not in body:
        return False
    name = match[1]
    schema, required = _field(case, name)
    if schema is None or "$ref" in json.dumps(schema):
        return False  # nothing to check it against here: it counts
    values = body[name] if isinstance(body[name], list) else [body[name]]
    parts = [v if isinstance(v, str) else json.dumps(v) for v in values]
    if not parts:
        return not required
    if len(parts) != 1:
        return False
    try:
        value = _as_sent(parts[0], schema)
    except ValueError:
        return False
    return Draft202012Validator(schema).is_valid(value)


def _field(case, name: str) -> tuple[dict | None, bool]:
    """The declared schema of a multipart body's field, and whether it is required."""
    for body in case.operation.body:
        if body.media_type == case.media_type:
            resolved = body.resolved_schema or {}
            return resolved.get("properties", {}).get(name), name in resolved.get("required", [])
    return None, False


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    revoked_key = "DELETE /api/v1/api-keys/" in str(getattr(failure, "free", ""))
    if "use_after_free" in failure.checks and revoked_key:
        return False
    released_hold = "DELETE /api/v1/holds/" in str(getattr(failure, "free", ""))
    if "use_after_free" in failure.checks and released_hold:
        return False
    if "negative_data_rejection" not in failure.checks:
        return True
    if not (case.media_type or "").startswith("multipart/form-data"):
        return True
    violations = [
        line for line in str(getattr(failure, "message", "")).splitlines() if "violates" in line
    ]
    # Dropped only when every mutation is gone on the wire.
    return not (violations and all(_valid_on_the_wire(case, v) for v in violations))
