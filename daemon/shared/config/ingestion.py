"""Ingestion: document sizes, the pipeline steps, fetching document URLs, retention.

A group of fields of :class:`daemon.shared.config.Settings` (field ``x`` is read from
``TRIAGED_X``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from daemon.shared.config.values import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    INGEST_STEPS,
    CommaList,
)

# An egress allowlist host name: IDNA-encoded labels, the last not a number (127.1 is an
# address in a legacy spelling, not a name).
_EGRESS_HOST = re.compile(r"(?:[a-z0-9_-]+\.)*(?![0-9]+$|0x[0-9a-f]*$)[a-z0-9_-]+")


class IngestionSettings(BaseModel):
    """Ingestion: document sizes, the pipeline steps, fetching document URLs, retention."""

    max_document_bytes: int = Field(
        default=DEFAULT_MAX_DOCUMENT_BYTES,
        ge=1,
        description="Largest document accepted (upload, posted content, fetched URL); larger "
        "ones get 413 (or fail, when fetched).",
    )
    ingest_concurrency: Annotated[dict[str, int], NoDecode] = Field(
        default={},
        description="Jobs of each pipeline step this process runs at once, as "
        "step=n pairs (fetch, hash, extract, normalize, analyze, route, complete); "
        "steps not named: twice ingest_batch_size (worker_concurrency for an analysis "
        "by a model server, whose documents run alone).",
    )
    ingest_batch_size: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Most jobs of a pipeline step run together, in one transaction "
        "for all their documents (1: each document alone).",
    )
    ingest_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts of a pipeline step on transient errors before the document fails.",
    )
    fetch_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Total time a document URL fetch may take."
    )
    fetch_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=600, description="Time to connect to a document URL's server."
    )
    fetch_max_redirects: int = Field(
        default=3, ge=0, le=20, description="Redirects followed when fetching a document URL."
    )
    fetch_allow_private: bool = Field(
        default=False,
        description="Allow fetching document URLs on loopback, link-local and private "
        "addresses (SSRF protection off).",
    )
    fetch_allowed_networks: CommaList = Field(
        default=(),
        description="Networks document URLs may be fetched from even though private "
        "(comma-separated CIDRs).",
    )
    fetch_egress_networks: CommaList = Field(
        default=(),
        description="Egress allowlist: when set, outbound requests for documents go only to "
        "these networks (CIDRs) and host names (comma-separated); any other host is refused "
        "before a DNS query or connection. Narrows the SSRF guard, never widens it. Empty: "
        "no allowlist.",
    )
    document_retention_days: float = Field(
        default=365.0,
        gt=0,
        le=36_500,
        description="Completed documents are kept this long (retain_until).",
    )

    @field_validator("fetch_egress_networks")
    @classmethod
    def _egress_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The rule of EgressPolicy.parse (a test keeps the two equal): a CIDR, an IP
        # address (IPv6 may be in brackets) or a host name that does not end in a number.
        for item in value:
            text = item.strip().lower()
            text = text[1:-1] if text[:1] == "[" and text[-1:] == "]" else text.removesuffix(".")
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                if len(text) > 253 or not _EGRESS_HOST.fullmatch(text):
                    raise ValueError(
                        f"not a CIDR, an IP address or a host name (ASCII, IDNA-encoded): {item!r}"
                    ) from None
        return value

    @field_validator("ingest_concurrency", mode="before")
    @classmethod
    def _step_numbers(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, Any] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            step, sep, number = item.partition("=")
            if not sep:
                raise ValueError(f"expected step=n pairs, got {item!r}")
            pairs[step.strip()] = number.strip()
        return pairs

    @field_validator("ingest_concurrency")
    @classmethod
    def _known_steps(cls, value: dict[str, int]) -> dict[str, int]:
        for step, number in value.items():
            if step not in INGEST_STEPS:
                raise ValueError(f"unknown step {step!r} (steps: {', '.join(INGEST_STEPS)})")
            if not 1 <= number <= 1000:
                raise ValueError(f"{step}: must be between 1 and 1000")
        return value
