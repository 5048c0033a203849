"""application/pdf: the text of every page, with ``pypdf`` (pure Python).

Pages are separated by a blank line. An encrypted PDF is read if it opens with the empty
password (owner-restricted PDFs), else refused. A file that ``pypdf`` cannot open is
refused as not a PDF (no ``%PDF-`` signature), truncated (no ``%%EOF`` marker near its
end) or corrupt. A page whose text cannot be extracted is skipped with a warning; if no
page can be, the file is corrupt. What ``pypdf`` repairs on the way (it logs it) becomes
a warning too.

Bounded: pages are read until the character budget is reached, and at most
:data:`MAX_PAGES` of them; ``pypdf`` itself caps decompressed stream sizes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from typing import TYPE_CHECKING

from daemon.modules.ingestion.errors import CorruptContent, EncryptedContent, UnsupportedContent
from daemon.modules.ingestion.extraction.media import PDF
from daemon.modules.ingestion.extraction.result import TextBuffer, finish

if TYPE_CHECKING:
    from collections.abc import Iterator

    from daemon.modules.ingestion.extraction.result import Extracted

MAX_PAGES = 5000
_SIGNATURE = b"%PDF-"
_SIGNATURE_WITHIN = 1024
_EOF_MARKER = b"%%EOF"
_EOF_WITHIN = 2048
_MAX_NOTES = 10


def extract(data: bytes, *, max_chars: int) -> Extracted:
    """The text of the pages.

    Raises:
        EncryptedContent: the PDF needs a password.
        UnsupportedContent: it is encrypted with AES and the optional ``cryptography``
            package (which ``pypdf`` needs for AES) is not installed.
        CorruptContent: it is truncated or corrupt, or no page's text can be extracted.
    """
    # Imported on first use (in the extraction thread): pypdf costs ~17 MB of memory that a
    # process which never reads a PDF (an api process) should not carry.
    import pypdf
    from pypdf import PasswordType
    from pypdf.errors import DependencyError

    notes: list[str] = []
    out = TextBuffer(max_chars)
    with _pypdf_warnings(notes):
        # pypdf is not exception-tight on hostile input (KeyError, TypeError, ...): at
        # this edge any failure to open the file is the file's fault.
        try:
            reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
            locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
            pages = 0 if locked else len(reader.pages)
        except DependencyError:
            raise UnsupportedContent(
                "the PDF is encrypted with AES, which needs the optional 'cryptography'"
                " package to read"
            ) from None
        except Exception as exc:
            raise CorruptContent(_unreadable(data, exc)) from None
        if locked:
            raise EncryptedContent("the PDF is protected by a password; it cannot be read")
        failures: list[str] = []
        read = min(pages, MAX_PAGES)
        for number in range(read):
            try:
                text = reader.pages[number].extract_text()
            except Exception as exc:
                failures.append(f"page {number + 1}: text could not be extracted ({_reason(exc)})")
                continue
            out.write(text.strip() + "\n\n")
            if out.dropped:  # one page past the budget, to know that text was left out
                break
        if read and len(failures) == read:
            raise CorruptContent(f"corrupt PDF: no page's text can be extracted ({failures[0]})")
        notes.extend(failures)
    if pages > MAX_PAGES:
        notes.append(f"only the first {MAX_PAGES} of {pages} pages were read")
    return finish(
        out.getvalue().strip(),
        media_type=PDF,
        pages=pages,
        max_chars=max_chars,
        warnings=_dedupe(notes),
        dropped=out.dropped,
    )


def _unreadable(data: bytes, exc: Exception) -> str:
    if _SIGNATURE not in data[:_SIGNATURE_WITHIN]:
        return "not a PDF: the %PDF- signature is missing"
    if _EOF_MARKER not in data[-_EOF_WITHIN:]:
        return f"truncated PDF: no %%EOF end marker, the file is incomplete ({_reason(exc)})"
    from pypdf.errors import PdfReadError

    if isinstance(exc, PdfReadError | ValueError):
        return f"corrupt PDF: {_reason(exc)}"
    return f"corrupt PDF: cannot be parsed ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _dedupe(notes: list[str]) -> list[str]:
    unique = list(dict.fromkeys(notes))
    if len(unique) > _MAX_NOTES:
        unique = [*unique[:_MAX_NOTES], f"... and {len(unique) - _MAX_NOTES} more warnings"]
    return unique


class _ThreadNotes(logging.Handler):
    """Collects the warning messages logged in one thread (pypdf logs what it repairs)."""

    def __init__(self, notes: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._notes = notes
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self._notes.append(f"PDF: {record.getMessage()}")


@contextlib.contextmanager
def _pypdf_warnings(notes: list[str]) -> Iterator[None]:
    """Copy what pypdf logs from this thread into ``notes`` while the block runs.

    The handler filters by thread, so parallel extractions in threads do not see each
    other's warnings. In the CPU worker processes (where the pipeline extracts) the
    records go no further: the document's extraction notes are where they are kept.
    """
    logger = logging.getLogger("pypdf")
    handler = _ThreadNotes(notes)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
