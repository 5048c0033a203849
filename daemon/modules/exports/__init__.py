"""CSV exports: documents, cases and the audit log streamed from PostgreSQL as CSV.

Public face::

    from daemon.modules.exports import ExportKind, select_columns, ExportRequest, ...

The column sets, the neutralisation and the time format: :mod:`.columns`; the stream,
its slots and its audit event: :mod:`.stream`. The filters are the lists' own (each
module's ``*_filter_sql()``), passed in by the caller.
"""

from __future__ import annotations

from daemon.modules.exports.columns import (
    COLUMNS,
    FORMULA_TRIGGERS,
    NEUTRALISING_PREFIX,
    Column,
    ExportKind,
    Treatment,
    file_name,
    neutralise,
    select_columns,
)
from daemon.modules.exports.errors import ExportsBusy
from daemon.modules.exports.stream import BOM, ExportRequest, ExportSlots, ExportStream

__all__ = [
    "BOM",
    "COLUMNS",
    "FORMULA_TRIGGERS",
    "NEUTRALISING_PREFIX",
    "Column",
    "ExportKind",
    "ExportRequest",
    "ExportSlots",
    "ExportStream",
    "ExportsBusy",
    "Treatment",
    "file_name",
    "neutralise",
    "select_columns",
]
