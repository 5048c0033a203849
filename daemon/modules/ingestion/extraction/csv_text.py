"""text/csv: the first row is the header; each further row becomes one line of
``column: value`` pairs::

    name;city          ->   columns: name; city
    Alice;Berlin            name: Alice; city: Berlin

The delimiter is an Excel ``sep=`` first line if present, else what ``csv.Sniffer``
finds in the first 8 KiB among ``, ; TAB |``, else the one of those most frequent in the
first line, else a comma. Empty cells are left out; cells beyond the header are named
``column N``; blank rows are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from typing import TYPE_CHECKING

from daemon.modules.ingestion.errors import CorruptContent
from daemon.modules.ingestion.extraction.charset import decode_text
from daemon.modules.ingestion.extraction.media import CSV
from daemon.modules.ingestion.extraction.result import TextBuffer, finish

if TYPE_CHECKING:
    from daemon.modules.ingestion.extraction.result import Extracted

_DELIMITERS = ",;\t|"
_SNIFF_SAMPLE = 8192
_EXCEL_SEP = re.compile(r"\A\ufeff?sep=(.)\r?\n")


def extract(data: bytes, *, charset: str | None, max_chars: int) -> Extracted:
    """The table as readable lines.

    Raises:
        CorruptContent: not text, or the CSV cannot be parsed (e.g. a cell beyond the
            csv module's field size limit).
    """
    decoded = decode_text(data, declared=charset, what="text/csv document")
    text = decoded.text
    excel = _EXCEL_SEP.match(text)
    if excel:
        delimiter, text = excel.group(1), text[excel.end() :]
    else:
        delimiter = sniff_delimiter(text)
    out = TextBuffer(max_chars)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if header is None:
                header = cells
                out.write("columns: " + "; ".join(h for h in header if h) + "\n")
            else:
                out.write(_row_line(header, cells) + "\n")
            if out.dropped:
                break
    except csv.Error as exc:
        raise CorruptContent(f"invalid CSV at line {reader.line_num}: {exc}") from None
    return finish(
        out.getvalue().rstrip("\n"),
        media_type=CSV,
        charset=decoded.charset,
        max_chars=max_chars,
        warnings=decoded.warnings,
        dropped=out.dropped,
    )


def sniff_delimiter(text: str) -> str:
    """The delimiter ``csv.Sniffer`` finds in the first complete lines of ``text`` (up to
    8 KiB). When it cannot tell (rows of uneven length, say), the candidate that occurs
    most often in the first line; when none does (a single column), a comma."""
    sample = text[:_SNIFF_SAMPLE]
    if len(text) > _SNIFF_SAMPLE and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    first = sample.lstrip("\r\n").split("\n", 1)[0]
    counts = {delimiter: first.count(delimiter) for delimiter in _DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])  # ties: the earlier one
    return best if counts[best] else ","


def _row_line(header: list[str], cells: list[str]) -> str:
    pairs = []
    for i, cell in enumerate(cells):
        if cell:
            name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
            pairs.append(f"{name}: {cell}")
    return "; ".join(pairs)
