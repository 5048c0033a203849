"""Extractive summaries: the leading sentences of a text, bounded. Pure.

A leading salutation line ("Hi team," "Dear Support,") is skipped. Paragraph breaks
(blank lines) end a sentence (a full stop is added when joining one without end
punctuation, such as a heading); single line breaks are spaces. A full stop after a
common abbreviation ("e.g.", "a.m.", "Mr.", "approx.") or an initial ("J.") does not
end one. The
first sentence is always used, cut at a word boundary with "…" if it alone is too long;
further sentences are added while they fit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from daemon.modules.analysis.schema import SUMMARY_MAX_CHARS

if TYPE_CHECKING:
    from collections.abc import Iterator

SUMMARY_TARGET_CHARS = 300
SUMMARY_MAX_SENTENCES = 3
ELLIPSIS = "…"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"')\]]))\s+")
_SALUTATION = re.compile(
    r"(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening)|"
    r"to whom it may concern)\b[^.!?\n]{0,60}[,:!]?",
    re.IGNORECASE,
)
_TERMINAL = frozenset(".!?…:;\"')]")
# Words with an inner dot ("e.g.", "a.m.", "U.S.") count as abbreviations too.
_ABBREVIATIONS = frozenset((
    "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "approx", "nr",
    "inc", "ltd", "corp", "jr", "sr", "fig", "cf",
))  # fmt: skip


def summarize(
    text: str,
    *,
    max_chars: int = SUMMARY_TARGET_CHARS,
    max_sentences: int = SUMMARY_MAX_SENTENCES,
) -> str:
    """The leading sentences of ``text`` within ``max_chars`` (at most
    ``SUMMARY_MAX_CHARS``); ``""`` when there is no text."""
    max_chars = min(max_chars, SUMMARY_MAX_CHARS)
    chosen: list[str] = []
    length = 0
    for sentence in _sentences(_drop_salutation(text)):
        if not chosen:
            if len(sentence) > max_chars:
                return _cut(sentence, max_chars)
        elif len(chosen) >= max_sentences or length + 1 + len(sentence) > max_chars:
            break
        if chosen and chosen[-1][-1] not in _TERMINAL:
            chosen[-1] += "."
        chosen.append(sentence)
        length = len(" ".join(chosen))
    return " ".join(chosen)


def _drop_salutation(text: str) -> str:
    stripped = text.lstrip()
    first_line, _, rest = stripped.partition("\n")
    if _SALUTATION.fullmatch(first_line.strip()):
        return rest
    return stripped


def _sentences(text: str) -> Iterator[str]:
    """The sentences of ``text`` in order, found as they are asked for (a summary needs
    only the first few of a long text)."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        pending = ""
        for piece in _split_lazily(_SENTENCE_END, flat):
            pending = f"{pending} {piece}" if pending else piece
            if not _ends_with_abbreviation(pending):
                yield pending
                pending = ""
        if pending:
            yield pending


def _split_lazily(pattern: re.Pattern[str], text: str) -> Iterator[str]:
    """``pattern.split(text)`` (for a pattern without groups), piece by piece."""
    start = 0
    for match in pattern.finditer(text):
        yield text[start : match.start()]
        start = match.end()
    yield text[start:]


def _ends_with_abbreviation(sentence: str) -> bool:
    if not sentence.endswith("."):
        return False
    last_word = sentence.rsplit(" ", 1)[-1].rstrip(".").lstrip("([{\"'").lower()
    return (
        last_word in _ABBREVIATIONS
        or "." in last_word
        or (len(last_word) == 1 and last_word.isalpha())
    )


def _cut(sentence: str, max_chars: int) -> str:
    head = sentence[: max_chars - len(ELLIPSIS)]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:-") + ELLIPSIS
