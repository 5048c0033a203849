"""Settings: the one typed, frozen configuration object of triaged, and what systemd
tells the process through its environment.

Public face::

    from daemon.shared.config import Settings, load_settings, read_systemd_environment

The composition root (:mod:`daemon.composition`) turns the settings into each module's
own typed configuration; nothing under ``daemon/modules`` or ``daemon/queue`` imports
this package.
"""

from __future__ import annotations

from daemon.shared.config.settings import SECRET_FIELDS, Settings, load_settings, mask_url
from daemon.shared.config.systemd import SystemdEnvironment, read_systemd_environment
from daemon.shared.config.values import (
    DEFAULT_HTTP_GRACE_SECONDS,
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_JOB_GRACE_SECONDS,
    DEFAULT_KEEP_ALIVE_SECONDS,
    DEFAULT_MAX_DOCUMENT_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PRE_STOP_DELAY_SECONDS,
    DEFAULT_WORKER_CONCURRENCY,
    ENV_FILE_VARIABLE,
    ENV_PREFIX,
    INGEST_STEPS,
    AnalyzerName,
    CommaList,
    LogFormat,
    LogLevel,
    Seconds,
)

__all__ = [
    "DEFAULT_HTTP_GRACE_SECONDS",
    "DEFAULT_HTTP_HOST",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_JOB_GRACE_SECONDS",
    "DEFAULT_KEEP_ALIVE_SECONDS",
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PRE_STOP_DELAY_SECONDS",
    "DEFAULT_WORKER_CONCURRENCY",
    "ENV_FILE_VARIABLE",
    "ENV_PREFIX",
    "INGEST_STEPS",
    "SECRET_FIELDS",
    "AnalyzerName",
    "CommaList",
    "LogFormat",
    "LogLevel",
    "Seconds",
    "Settings",
    "SystemdEnvironment",
    "load_settings",
    "mask_url",
    "read_systemd_environment",
]
