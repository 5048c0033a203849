"""Ingestion: a document's way from bytes to analysable text (DESIGN.md section 3).

Public face (pipeline handlers import from here only)::

    from daemon.modules.ingestion import extract_text, normalize, Extracted, Normalized

So far the pure steps: ``extracted`` (:mod:`.extraction`) and ``normalized``
(:mod:`.normalize`, :mod:`.language`). Failures are the permanent ``IngestionError``
branch of :mod:`daemon.shared.errors`.
"""

from __future__ import annotations

from daemon.modules.ingestion.extraction import (
    DEFAULT_MAX_CHARS,
    DETECTED_MEDIA_TYPES,
    SUPPORTED_MEDIA_TYPES,
    Extracted,
    canonical_media_type,
    extract_text,
    is_supported_media_type,
)
from daemon.modules.ingestion.language import LANGUAGES, UNDETERMINED, guess_language
from daemon.modules.ingestion.normalize import (
    DEFAULT_CHUNK_CHARS,
    DEFAULT_MAX_CHUNKS,
    Normalized,
    chunk_text,
    clean_text,
    normalize,
)

__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_CHUNKS",
    "DETECTED_MEDIA_TYPES",
    "LANGUAGES",
    "SUPPORTED_MEDIA_TYPES",
    "UNDETERMINED",
    "Extracted",
    "Normalized",
    "canonical_media_type",
    "chunk_text",
    "clean_text",
    "extract_text",
    "guess_language",
    "is_supported_media_type",
    "normalize",
]
