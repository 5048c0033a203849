"""What extraction returns, and the character budget every extractor writes into."""

from __future__ import annotations

import attrs

DEFAULT_MAX_CHARS = 1_000_000
"""Extracted text is cut after this many characters unless the caller says otherwise."""


@attrs.frozen(kw_only=True)
class Extracted:
    """The text of a document, as extraction found it (not yet normalised).

    ``media_type`` is the canonical type that was extracted: the declared one, or the one
    detected from the content when none (or ``application/octet-stream``) was declared.
    ``charset`` is the codec the text was decoded with (``None`` for PDF); ``pages`` the
    page count of a PDF (``None`` otherwise). ``truncated`` is true when the text was cut
    at the character budget. ``warnings`` are human-readable notes on anything that was
    guessed, repaired or skipped; they never mean the text is unusable.
    """

    text: str
    media_type: str
    charset: str | None = None
    pages: int | None = None
    truncated: bool = False
    warnings: tuple[str, ...] = ()


class TextBuffer:
    """Collects text up to a budget of ``max_chars``, so extractors can stop early.

    Text is taken until the buffer holds more than ``max_chars`` characters; after that,
    writes are refused, and refusing any non-blank text sets :attr:`dropped`. Extractors
    write as they go and stop once ``dropped`` is true, then pass it to :func:`finish`:
    text was lost even if, after tidying, what is left fits the budget.
    """

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.dropped = False
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        if self._size > self.max_chars:
            self.dropped = self.dropped or bool(text.strip())
            return
        if text:
            self._parts.append(text)
            self._size += len(text)

    def getvalue(self) -> str:
        return "".join(self._parts)


def finish(
    text: str,
    *,
    media_type: str,
    max_chars: int,
    charset: str | None = None,
    pages: int | None = None,
    warnings: list[str] | tuple[str, ...] = (),
    dropped: bool = False,
) -> Extracted:
    """The :class:`Extracted` for ``text``, cut to ``max_chars`` if longer; truncated (with
    a warning) if it was cut or the extractor ``dropped`` text beyond the budget."""
    notes = list(warnings)
    truncated = dropped or len(text) > max_chars
    if truncated:
        text = text[:max_chars]
        notes.append(f"text cut at {max_chars} characters")
    return Extracted(
        text=text,
        media_type=media_type,
        charset=charset,
        pages=pages,
        truncated=truncated,
        warnings=tuple(notes),
    )
