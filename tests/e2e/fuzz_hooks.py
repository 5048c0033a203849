"""Schemathesis hooks of the generated-input run (``test_api_fuzz.py``), loaded through
``SCHEMATHESIS_HOOKS``.

- Keep the run from locking itself out: the run's own accounts (ids in
  ``FUZZ_KEEP_USERS``) are never disabled, demoted, reset or deleted by a generated
  request; an admin run that disabled its own user would spend the rest of its budget
  on 401s. Everything else (other users, keys, documents) is fair game.
- ``DELETE /api/v1/api-keys/{key_id}`` revokes: the key stays visible, with its
  ``revoked_at``, so an audit can tell who held it (documented on the route). The
  "deleted resource still available" check does not apply to it, and only to it.
"""

from __future__ import annotations

import os

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


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    revoked_key = "DELETE /api/v1/api-keys/" in str(getattr(failure, "free", ""))
    return not ("use_after_free" in failure.checks and revoked_key)
