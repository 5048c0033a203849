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
  number by the generator arrives as the string ``true`` or ``12``, one made an array is
  sent as repeated fields (an empty one as no field at all), and so on: what reaches the
  server is valid. The "schema-violating request accepted" check of a ``type`` change
  of a string field in a multipart body is dropped; every other violation of a multipart
  body (length, pattern, a required field missing) still counts.
"""

from __future__ import annotations

import os
import re

import schemathesis

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


_STRING_RETYPED = re.compile(r"violates `type` at \S+ \(was string, became [a-z]+\)")


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
    # Dropped only when every mutation is a string field retyped (text on the wire anyway).
    return not (violations and all(_STRING_RETYPED.search(v) for v in violations))
