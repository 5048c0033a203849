"""The response checker: every response the suite's own API client receives is checked
against ``/openapi.json`` (status, content type, required headers, body schema).

:class:`ContractChecker` is hooked into :meth:`ApiServer.client` (``api_server.py``):
a response that does not match the document fails the request's test on the spot, with
the route and the mismatch named. Each checked (route, method, status) is recorded in
:data:`CHECKED`, each mismatch in :data:`VIOLATIONS`; ``test_api_contract.py`` fails
when a route of the route table was never checked or any response did not match.
Cheap: the document is built in process (no request), each schema compiled once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from werkzeug.exceptions import HTTPException

from daemon.api.openapi import build_document

_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")

# (path template, method, status) of every response checked in this session.
CHECKED: set[tuple[str, str, int]] = set()
# Every mismatch of this session, also when the test that met it swallowed the error.
VIOLATIONS: list[str] = []


class ContractViolation(AssertionError):
    """A response the document does not describe."""


@dataclass
class ContractChecker:
    app: Any
    settings: Any
    document: dict[str, Any] = field(init=False)
    _validators: dict[str, Draft202012Validator] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.document = build_document(self.app, self.settings)

    async def __call__(self, response: httpx.Response) -> None:
        """The httpx ``response`` event hook."""
        await response.aread()
        try:
            self.check(response.request.method, response.request.url.path, response)
        except ContractViolation as exc:
            VIOLATIONS.append(str(exc))
            raise

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        """Check ``response`` to ``method path``; raise :class:`ContractViolation`.

        Requests the route table does not match (404 and 405 of routing) and HEAD or
        OPTIONS requests are not any operation's: not checked.
        """
        if method in ("HEAD", "OPTIONS"):
            return
        try:
            rule, _ = self.app.url_map.bind("localhost").match(
                path, method=method, return_rule=True
            )
        except HTTPException:
            return
        template = _CONVERTER.sub(r"{\1}", rule.rule)
        where = f"{method} {template} -> {response.status_code}"
        operation = self.document["paths"][template][method.lower()]
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            raise ContractViolation(
                f"{where}: status not documented (documented: "
                f"{sorted(operation['responses'])}); body: {response.text[:500]}"
            )
        for name, header in documented.get("headers", {}).items():
            if header.get("required") and name not in response.headers:
                raise ContractViolation(f"{where}: required header {name} missing")
        content = documented.get("content")
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content:
            if response.content:
                raise ContractViolation(f"{where}: documented without a body, got one")
            CHECKED.add((template, method, response.status_code))
            return
        if media_type not in content:
            raise ContractViolation(
                f"{where}: content type {media_type!r}, documented {sorted(content)}"
            )
        if media_type.endswith("json"):
            try:
                body = json.loads(response.content)
            except ValueError as exc:
                raise ContractViolation(f"{where}: not JSON: {exc}") from None
            key = f"{template} {method} {response.status_code} {media_type}"
            validator = self._validators.get(key)
            if validator is None:
                schema = content[media_type]["schema"] | {"components": self.document["components"]}
                validator = Draft202012Validator(schema, format_checker=FormatChecker())
                self._validators[key] = validator
            errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
            if errors:
                listed = "; ".join(
                    f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:300]}"
                    for e in errors[:5]
                )
                raise ContractViolation(f"{where}: body does not match its schema: {listed}")
        CHECKED.add((template, method, response.status_code))


def route_table(app: Any) -> set[tuple[str, str]]:
    """(path template, method) of every route of ``app``."""
    return {
        (_CONVERTER.sub(r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
