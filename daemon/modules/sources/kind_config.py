"""Per-kind source configuration, validated per kind (pure: no I/O but name-free checks).

A source is written as ``{name, kind, config, schedule, enabled, metadata,
title_template, limits}``. :func:`check_source_input` turns that into a
:class:`CheckedSource`: the kind's configuration split into its public part (stored in
``sources.config``, returned by the API) and its secrets (``sources.secrets``: write-only,
never returned, never logged), a schedule (required for pull kinds, refused for push
kinds) and limits. Every refusal is a :class:`~daemon.shared.errors.ValidationFailed`
naming the field (``config.url``, ``schedule.cron``, ...): the API answers 422 with it.

Secrets on update: a secret field absent from a new configuration keeps its stored value
(an admin changes a feed's path or options without sending its auth header again);
``null`` clears it. An ``http``/``feed`` auth header is kept only while ``config.url``
keeps its origin (scheme, host, port): a URL pointing at another origin must come with the
auth header again (or ``null``), else 422 naming ``config.auth_header`` — otherwise
whoever can edit the source could send the stored secret to a server of their own.
(Webhook secrets only verify what arrives; nothing is sent with them.)
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from datetime import datetime  # noqa: TC003 (pydantic reads annotations at run time)
from pathlib import PurePosixPath
from typing import Any, Literal

import attrs
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from daemon.modules.ingestion import AddressPolicy, EgressPolicy, FetchRefused, checked_url
from daemon.queue import InvalidSchedule, check_cron, parse_timezone
from daemon.shared.errors import ValidationFailed

KINDS = ("upload", "webhook", "http", "feed", "directory")
PULL_KINDS = frozenset({"http", "feed", "directory"})
PUSH_KINDS = frozenset({"upload", "webhook"})
MIN_INTERVAL_SECONDS = 1.0
_LOCAL_NAMES = re.compile(r"(?:^|\.)(?:localhost|localdomain|local|internal)\.?$", re.I)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UploadConfig(_Model):
    """Manual uploads: nothing to configure."""


class HttpConfig(_Model):
    """GET ``url`` on the schedule (conditional requests; the content hash decides)."""

    url: str = Field(min_length=1, max_length=4000)
    auth_header_name: str = Field(
        default="Authorization", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$"
    )
    auth_header: str | None = Field(default=None, max_length=4000)  # secret
    max_redirects: int = Field(default=5, ge=0, le=10)


class FeedConfig(HttpConfig):
    """An RSS 2.0, RSS 1.0 or Atom feed; ``fetch_linked_page``: each entry's document is
    its link (fetched by the pipeline) instead of its content or summary."""

    fetch_linked_page: bool = False


class DirectoryConfig(_Model):
    """A directory under an allowed root (``TRIAGED_SOURCE_DIRECTORY_ROOTS``)."""

    path: str = Field(min_length=1, max_length=4000)
    include: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    exclude: list[str] = Field(default_factory=list, max_length=50)
    settle_seconds: float = Field(default=5.0, ge=0, le=3600)
    after: Literal["move", "remember"] = "move"


class WebhookConfig(_Model):
    """HMAC-SHA256 signed pushes; ``previous_secret`` stays valid until
    ``previous_secret_expires_at`` (rotation overlap)."""

    secret: str | None = Field(default=None, min_length=16, max_length=500)  # secret
    previous_secret: str | None = Field(default=None, min_length=16, max_length=500)  # secret
    previous_secret_expires_at: datetime | None = None
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)


CONFIG_MODELS: dict[str, type[_Model]] = {
    "upload": UploadConfig,
    "webhook": WebhookConfig,
    "http": HttpConfig,
    "feed": FeedConfig,
    "directory": DirectoryConfig,
}
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "http": frozenset({"auth_header"}),
    "feed": frozenset({"auth_header"}),
    "webhook": frozenset({"secret", "previous_secret"}),
}


@attrs.frozen(kw_only=True)
class SourcePolicy:
    """What configuration may point at: the fetch address rules (loopback, private and
    link-local addresses refused unless allowed), the egress allowlist, and the
    directory roots. Built by whoever wires the process."""

    address: AddressPolicy = attrs.field(factory=AddressPolicy)
    egress: EgressPolicy | None = None
    directory_roots: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Timing:
    """A pull source's schedule: an interval or a cron expression in an IANA zone."""

    interval_seconds: float | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def as_json(self) -> dict[str, Any]:
        if self.interval_seconds is not None:
            return {"interval_seconds": self.interval_seconds, "timezone": self.timezone}
        return {"cron": self.cron, "timezone": self.timezone}


@attrs.frozen(kw_only=True)
class Limits:
    items_per_poll: int = 100
    bytes_per_item: int = 10 << 20
    timeout_seconds: float = 30.0


@attrs.frozen(kw_only=True)
class CheckedSource:
    """A source definition as it will be stored."""

    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, Any]
    schedule: Timing | None
    enabled: bool
    metadata: dict[str, Any]
    title_template: str
    limits: Limits


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"field": field, "message": message}])


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise _fail("kind", f"must be one of {', '.join(KINDS)}")
    return str(kind)


def check_config(
    kind: str,
    raw: object,
    policy: SourcePolicy,
    *,
    stored_secrets: dict[str, Any] | None = None,
    stored_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``raw`` validated for ``kind``: (public configuration, secrets). ``stored_*``: the
    source's current configuration on update (see the module docstring for secrets).

    Raises:
        ValidationFailed: naming ``config.<field>``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail("config", "must be an object")
    secret_names = SECRET_FIELDS.get(kind, frozenset())
    merged = dict(raw)
    for name in secret_names:  # absent: keep the stored value; null: clear it
        if name not in merged and stored_secrets and stored_secrets.get(name) is not None:
            url = merged.get("url")  # absent: refused below as config.url
            if (
                name == "auth_header"
                and url is not None
                and not same_origin(url, (stored_config or {}).get("url"))
            ):
                raise _fail(
                    "config.auth_header",
                    "config.url points at another origin: send the auth header again "
                    "(or null to clear it)",
                )
            merged[name] = stored_secrets[name]
    try:
        model = CONFIG_MODELS[kind].model_validate(merged)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            [
                {
                    "field": ".".join(["config", *(str(p) for p in error["loc"])]),
                    "message": error["msg"],
                }
                for error in exc.errors()
            ]
        ) from None
    values = model.model_dump(mode="json")
    if isinstance(model, HttpConfig):
        check_url(model.url, policy, field="config.url")
    if isinstance(model, DirectoryConfig):
        values["path"] = check_directory(model.path, policy, field="config.path")
    if isinstance(model, WebhookConfig) and model.secret is None:
        raise _fail("config.secret", "a webhook source needs a secret")
    secrets = {name: values.pop(name) for name in secret_names if values.get(name) is not None}
    for name in secret_names:
        values.pop(name, None)
    return values, secrets


def same_origin(url: object, other: object) -> bool:
    """Whether two URLs have the same origin (scheme, host, port; default ports filled in).
    Anything unparsable is a different origin."""
    if not isinstance(url, str) or not isinstance(other, str):
        return False
    try:
        first, second = urllib.parse.urlsplit(url), urllib.parse.urlsplit(other)
        origins = [
            (p.scheme.lower(), (p.hostname or "").lower(),
             p.port or {"http": 80, "https": 443}.get(p.scheme.lower()))
            for p in (first, second)
        ]  # fmt: skip
    except ValueError:
        return False
    return bool(origins[0][1]) and origins[0] == origins[1]


def check_url(url: str, policy: SourcePolicy, *, field: str) -> str:
    """Refuse at configuration time what the guarded transport would refuse at fetch time
    without DNS: bad scheme, userinfo, a literal address of a refused class, a host
    outside the egress allowlist, and names that mean this host or its network
    (``localhost``, ``*.local``, ``*.internal``) unless private addresses are allowed.
    Every fetch checks again, after DNS, through the guarded transport."""
    try:
        parsed = checked_url(url, policy.address, egress=policy.egress)
    except FetchRefused as exc:
        raise _fail(field, str(exc)) from None
    host = parsed.host
    if _LOCAL_NAMES.search(host) and not policy.address.allow_private:
        loopback = ipaddress.ip_address("127.0.0.1")
        if not policy.address.is_allowed_network(loopback):
            raise _fail(field, f"refused: {host!r} names a local or private host")
    return url


def check_directory(path: str, policy: SourcePolicy, *, field: str) -> str:
    """An absolute, normalized path inside one of the allowed roots (lexically: the
    poller refuses symlinks that leave the root when it reads)."""
    pure = PurePosixPath(path)
    if not pure.is_absolute():
        raise _fail(field, "must be an absolute path")
    if ".." in pure.parts:
        raise _fail(field, "must not contain '..'")
    for root in policy.directory_roots:
        if pure == PurePosixPath(root) or PurePosixPath(root) in pure.parents:
            return str(pure)
    raise _fail(field, "is outside the allowed directory roots (TRIAGED_SOURCE_DIRECTORY_ROOTS)")


def check_schedule(kind: str, raw: object) -> Timing | None:
    """The schedule of a ``kind`` source: required for pull kinds, absent for push kinds.

    Raises:
        ValidationFailed: naming ``schedule`` or ``schedule.<field>``.
    """
    if kind in PUSH_KINDS:
        if raw is not None:
            raise _fail("schedule", f"a {kind} source has no schedule (it receives documents)")
        return None
    if not isinstance(raw, dict):
        raise _fail(
            "schedule", 'give {"interval_seconds": N} or {"cron": "...", "timezone": "..."}'
        )
    unknown = set(raw) - {"interval_seconds", "cron", "timezone"}
    if unknown:
        raise _fail(f"schedule.{sorted(unknown)[0]}", "unknown field")
    timezone = raw.get("timezone", "UTC")
    if not isinstance(timezone, str):
        raise _fail("schedule.timezone", "must be a string")
    try:
        parse_timezone(timezone)
    except InvalidSchedule as exc:
        raise _fail("schedule.timezone", exc.message) from None
    interval, cron = raw.get("interval_seconds"), raw.get("cron")
    if (interval is None) == (cron is None):
        raise _fail("schedule", "give exactly one of interval_seconds and cron")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise _fail("schedule.interval_seconds", "must be a number")
        if not MIN_INTERVAL_SECONDS <= interval <= 366 * 86400:
            raise _fail("schedule.interval_seconds", "must be between 1 and 31622400")
        return Timing(interval_seconds=float(interval), timezone=timezone)
    if not isinstance(cron, str) or len(cron) > 200:
        raise _fail("schedule.cron", "must be a cron expression")
    try:
        check_cron(" ".join(cron.split()))
    except InvalidSchedule as exc:
        raise _fail("schedule.cron", exc.message) from None
    return Timing(cron=" ".join(cron.split()), timezone=timezone)


def check_limits(raw: object, current: Limits | None = None) -> Limits:
    """Limits given (each optional; absent: the current or default value).

    Raises:
        ValidationFailed: naming ``limits.<field>``.
    """
    limits = current or Limits()
    if raw is None:
        return limits
    if not isinstance(raw, dict):
        raise _fail("limits", "must be an object")
    bounds = {
        "items_per_poll": (1, 10_000),
        "bytes_per_item": (1, 1 << 30),
        "timeout_seconds": (1, 3600),
    }
    values = attrs.asdict(limits)
    for key, value in raw.items():
        if key not in bounds:
            raise _fail(f"limits.{key}", "unknown field")
        low, high = bounds[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(f"limits.{key}", "must be a number")
        if not low <= value <= high:
            raise _fail(f"limits.{key}", f"must be between {low} and {high}")
        values[key] = float(value) if key == "timeout_seconds" else int(value)
    return Limits(**values)


def check_name(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise _fail("name", "must be 1 to 200 characters")
    if any(ord(c) < 32 for c in raw):
        raise _fail("name", "must not contain control characters")
    return raw.strip()


def check_title_template(raw: object) -> str:
    if raw is None:
        return "{title}"
    if not isinstance(raw, str) or len(raw) > 500:
        raise _fail("title_template", "must be a string of at most 500 characters")
    return raw


def check_metadata(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("metadata", "must be an object")
    return dict(raw)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render_title(template: str, values: dict[str, str]) -> str:
    """``{name}`` placeholders replaced by ``values`` (unknown ones by nothing); no
    attribute or index access (not ``str.format``), at most 1000 characters."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)[:1000]
