"""Ingestion: a document's way from intake to triage (DESIGN.md section 3).

Public face (the API and the worker import from here only)::

    from daemon.modules.ingestion import receive_document, Pipeline, list_documents, ...

* :mod:`.states`: the pure transition table of the eight steps;
* :mod:`.intake`: new documents (idempotent with a key) through the process's
  :class:`IntakeWriter`; :mod:`.documents`: reading and operator actions;
* :mod:`.runner`: runs a step's job over a batch of documents (:class:`Pipeline`);
  :mod:`.steps`: one file per step, all of one shape; :mod:`.store`: the module's SQL,
  the history, the advance, the duplicate claim; :mod:`.config`: :class:`PipelineConfig`;
* pure steps: :mod:`.extraction`, :mod:`.normalize`, :mod:`.language`, and
  :mod:`.fetch` (SSRF-safe URL fetching).

Content failures are the permanent ``IngestionError`` branch of
:mod:`daemon.shared.errors`.
"""

from __future__ import annotations

from daemon.modules.ingestion.address_policy import AddressClass, AddressPolicy, classify_address
from daemon.modules.ingestion.config import PipelineConfig
from daemon.modules.ingestion.documents import (
    AnalysisRecord,
    Document,
    DocumentDetails,
    DocumentFilter,
    DocumentPage,
    HistoryEvent,
    delete_document,
    document_counts,
    document_details,
    document_filter_sql,
    get_document,
    list_document_views,
    list_documents,
    reanalyze_document,
    requeue_stranded,
    retry_document,
)
from daemon.modules.ingestion.egress_policy import EgressPolicy, egress_policy
from daemon.modules.ingestion.errors import (
    ContentTooLarge,
    CorruptContent,
    DocumentNotFound,
    DocumentTooLarge,
    EmptyContent,
    EncryptedContent,
    FetchRefused,
    FetchRejected,
    FetchUnavailable,
    IdempotencyConflict,
    IngestionError,
    InvalidTransition,
    UnsupportedContent,
)
from daemon.modules.ingestion.extraction import (
    DEFAULT_MAX_CHARS,
    DETECTED_MEDIA_TYPES,
    SUPPORTED_MEDIA_TYPES,
    Extracted,
    canonical_media_type,
    extract_text,
    is_supported_media_type,
)
from daemon.modules.ingestion.fetch import Fetched, FetchPolicy, checked_url, fetch_url
from daemon.modules.ingestion.guarded_network import note_configured_url
from daemon.modules.ingestion.guarded_post import check_outbound_url, post_guarded
from daemon.modules.ingestion.intake import (
    IntakeWriter,
    NewDocument,
    Receipt,
    prune_idempotency_keys,
    receive_document,
    write_documents,
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
from daemon.modules.ingestion.runner import Pipeline
from daemon.modules.ingestion.schedules import (
    PRUNE_IDEMPOTENCY_KEYS_QUEUE,
    REQUEUE_STRANDED_QUEUE,
    SCHEDULES,
)
from daemon.modules.ingestion.states import DEAD_LETTER_QUEUE, STEPS, DocumentState, Step
from daemon.modules.ingestion.steps.contract import StepResult

__all__ = [
    "DEAD_LETTER_QUEUE",
    "DEFAULT_CHUNK_CHARS",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_CHUNKS",
    "DETECTED_MEDIA_TYPES",
    "LANGUAGES",
    "PRUNE_IDEMPOTENCY_KEYS_QUEUE",
    "REQUEUE_STRANDED_QUEUE",
    "SCHEDULES",
    "STEPS",
    "SUPPORTED_MEDIA_TYPES",
    "UNDETERMINED",
    "AddressClass",
    "AddressPolicy",
    "AnalysisRecord",
    "ContentTooLarge",
    "CorruptContent",
    "Document",
    "DocumentDetails",
    "DocumentFilter",
    "DocumentNotFound",
    "DocumentPage",
    "DocumentState",
    "DocumentTooLarge",
    "EgressPolicy",
    "EmptyContent",
    "EncryptedContent",
    "Extracted",
    "FetchPolicy",
    "FetchRefused",
    "FetchRejected",
    "FetchUnavailable",
    "Fetched",
    "HistoryEvent",
    "IdempotencyConflict",
    "IngestionError",
    "IntakeWriter",
    "InvalidTransition",
    "NewDocument",
    "Normalized",
    "Pipeline",
    "PipelineConfig",
    "Receipt",
    "Step",
    "StepResult",
    "UnsupportedContent",
    "canonical_media_type",
    "check_outbound_url",
    "checked_url",
    "chunk_text",
    "classify_address",
    "clean_text",
    "delete_document",
    "document_counts",
    "document_details",
    "document_filter_sql",
    "egress_policy",
    "extract_text",
    "fetch_url",
    "get_document",
    "guess_language",
    "is_supported_media_type",
    "list_document_views",
    "list_documents",
    "normalize",
    "note_configured_url",
    "post_guarded",
    "prune_idempotency_keys",
    "reanalyze_document",
    "receive_document",
    "requeue_stranded",
    "retry_document",
    "write_documents",
]
