"""Sources: where documents come from (issue 13). Push kinds receive (``upload``, the
built-in source of manual uploads; ``webhook``); pull kinds are polled on a schedule
(``http``, ``feed``, ``directory``).

Public face::

    from daemon.modules.sources import Source, create_source, run_poll, POLLERS, ...

* :mod:`.kind_config`: per-kind configuration models and validation (pure);
* :mod:`.store`: the sources table, their queue schedules, the polls' records;
* :mod:`.polling`: the poll contract every pull kind implements, and the core that
  commits what a poll finds exactly once (read its docstring before adding a kind);
* :mod:`.kinds`: the pull kinds' pollers (:mod:`.http_poller`, :mod:`.feed_poller`);
* :mod:`.metrics`: per-source metrics.
"""

from __future__ import annotations

from daemon.modules.sources import kinds as _kinds  # noqa: F401 (registers the pollers)
from daemon.modules.sources.directory_poller import check_directory_config
from daemon.modules.sources.errors import (
    DeliveryConflict,
    DirectoryRefused,
    DuplicateSourceName,
    SourceDisabled,
    SourceError,
    SourceNotFound,
    SourceNotPollable,
    WebhookRefused,
)
from daemon.modules.sources.kind_config import (
    CONFIG_MODELS,
    KINDS,
    PULL_KINDS,
    PUSH_KINDS,
    SECRET_FIELDS,
    CheckedSource,
    DirectoryConfig,
    FeedConfig,
    HttpConfig,
    Limits,
    SourcePolicy,
    Timing,
    WebhookConfig,
    check_url,
    render_title,
)
from daemon.modules.sources.metrics import SourceMetrics
from daemon.modules.sources.polling import (
    POLLERS,
    BatchOutcome,
    PollContext,
    PolledItem,
    Poller,
    PollResult,
    SourcesConfig,
    run_poll,
)
from daemon.modules.sources.store import (
    POLL_QUEUE,
    PollRecord,
    Source,
    check_source_input,
    check_upload_source,
    create_source,
    delete_source,
    get_source,
    list_polls,
    list_sources,
    request_poll,
    schedule_name,
    set_source_enabled,
    update_source,
)
from daemon.modules.sources.webhook import (
    AuthenticatedDelivery,
    DeliveryReceipt,
    authenticate_delivery,
    receive_delivery,
)

__all__ = [
    "CONFIG_MODELS",
    "KINDS",
    "POLLERS",
    "POLL_QUEUE",
    "PULL_KINDS",
    "PUSH_KINDS",
    "SECRET_FIELDS",
    "AuthenticatedDelivery",
    "BatchOutcome",
    "CheckedSource",
    "DeliveryConflict",
    "DeliveryReceipt",
    "DirectoryConfig",
    "DirectoryRefused",
    "DuplicateSourceName",
    "FeedConfig",
    "HttpConfig",
    "Limits",
    "PollContext",
    "PollRecord",
    "PollResult",
    "PolledItem",
    "Poller",
    "Source",
    "SourceDisabled",
    "SourceError",
    "SourceMetrics",
    "SourceNotFound",
    "SourceNotPollable",
    "SourcePolicy",
    "SourcesConfig",
    "Timing",
    "WebhookConfig",
    "WebhookRefused",
    "authenticate_delivery",
    "check_directory_config",
    "check_source_input",
    "check_upload_source",
    "check_url",
    "create_source",
    "delete_source",
    "get_source",
    "list_polls",
    "list_sources",
    "receive_delivery",
    "render_title",
    "request_poll",
    "run_poll",
    "schedule_name",
    "set_source_enabled",
    "update_source",
]
