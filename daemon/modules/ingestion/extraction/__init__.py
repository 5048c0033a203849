"""Extraction: the text of a document from its bytes and media type (pipeline step
``extracted``).

Public face::

    from daemon.modules.ingestion.extraction import extract_text, Extracted, ...

Supported: text/plain, text/html, application/json, text/csv, application/pdf, each in
its own module; an undeclared type is detected from the content. Pure, synchronous and
CPU-bound: call it through ``trio.to_thread`` (see :mod:`.dispatch`). Failures are the
permanent ``IngestionError`` branch of :mod:`daemon.shared.errors`.
"""

from __future__ import annotations

from daemon.modules.ingestion.extraction.dispatch import extract_text
from daemon.modules.ingestion.extraction.media import (
    DETECTED_MEDIA_TYPES,
    SUPPORTED_MEDIA_TYPES,
    canonical_media_type,
    is_supported_media_type,
)
from daemon.modules.ingestion.extraction.result import DEFAULT_MAX_CHARS, Extracted

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DETECTED_MEDIA_TYPES",
    "SUPPORTED_MEDIA_TYPES",
    "Extracted",
    "canonical_media_type",
    "extract_text",
    "is_supported_media_type",
]
