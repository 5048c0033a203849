"""Normalization (pipeline step ``normalized``): clean text, a language guess, and chunks
that fit the analyzer's size budget.

Cleaning, in order:

1. Line breaks unified: CRLF, CR, VT, NEL, LINE SEPARATOR become ``\\n``; FORM FEED (a
   page break) and PARAGRAPH SEPARATOR become a blank line.
2. Removed: control characters other than ``\\n`` and ``\\t``, lone surrogates (left by
   lenient decoders; PostgreSQL refuses them), and invisible format characters that break
   words apart: soft hyphen, zero-width space, word joiner, BOM, bidi overrides.
3. Unicode NFC, so the same word is the same code points whatever produced it.
4. Whitespace: Unicode spaces (NBSP, thin space, ...) become a plain space; runs of spaces
   collapse to one; spaces and tabs at line ends and spaces at line starts go; runs of
   blank lines collapse to one blank line (a paragraph break); the text is stripped.

Chunking splits the cleaned text into pieces of at most ``chunk_chars`` characters,
cutting at paragraph breaks if it can, else at line breaks, else after sentences, else
between words, else anywhere; neighbouring pieces are packed together up to the budget.
Only the first ``max_chunks`` chunks are kept: ``truncated`` says the analyzer sees less
than the whole text. All functions are pure and deterministic.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from typing import TYPE_CHECKING

import attrs

from daemon.modules.ingestion.language import guess_language

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_CHUNK_CHARS = 8000
DEFAULT_MAX_CHUNKS = 32

_PARAGRAPH_BREAKS = re.compile("[\x0c\u2029]")
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x85\u2028]")
_REMOVED = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff"
    "\u00ad\u200b\u2060\ufeff\u202a-\u202e\u2066-\u2069]"
)
_UNICODE_SPACES = re.compile("[\xa0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_SPACE_RUNS = re.compile(" {2,}")
_LINE_END = re.compile("[ \t]+\n")
_LINE_START = re.compile("\n +")
_BLANK_LINES = re.compile("\n{3,}")

# Split points, coarsest first; each match ends a piece (the separator stays with it).
_SPLITS = (
    re.compile(r"\n\n+"),  # paragraphs
    re.compile(r"\n"),  # lines
    # sentences: end punctuation, closing quotes or brackets, then space (none needed
    # after the CJK full stops, as CJK text has no spaces)
    re.compile(r"[.!?\u2026][\"'\u201d\u2019\u00bb)\]]*\s+|[\u3002\uff01\uff1f]\s*"),
    re.compile(r"\s+"),  # words
)


@attrs.frozen(kw_only=True)
class Normalized:
    """A cleaned text ready for analysis.

    ``text`` is the whole cleaned text and ``chars`` its length. ``chunks`` are what the
    analyzer gets: in order, each non-empty and at most the chunk budget long, together
    covering the text up to whitespace at their edges, unless ``truncated``, in which
    case they cover only its beginning. ``language`` is an ISO 639-1 code or ``und``.
    """

    text: str
    language: str
    chars: int
    chunks: tuple[str, ...]
    truncated: bool


def normalize(
    text: str,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
) -> Normalized:
    """``text`` cleaned, its language guessed, and chunked to the budget.

    Raises:
        ValueError: ``chunk_chars`` or ``max_chunks`` is below 1.
    """
    cleaned = clean_text(text)
    chunks, truncated = chunk_text(cleaned, chunk_chars=chunk_chars, max_chunks=max_chunks)
    return Normalized(
        text=cleaned,
        language=guess_language(cleaned),
        chars=len(cleaned),
        chunks=tuple(chunks),
        truncated=truncated,
    )


def clean_text(text: str) -> str:
    """``text`` with line breaks unified, control and invisible characters removed, in
    NFC, and whitespace collapsed (steps 1 to 4 of the module docstring)."""
    text = _PARAGRAPH_BREAKS.sub("\n\n", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _REMOVED.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _UNICODE_SPACES.sub(" ", text)
    # Substring tests gate the scans that could not change anything (one line, single
    # spaces: the common shape of a short document).
    if "  " in text:
        text = _SPACE_RUNS.sub(" ", text)
    if "\n" in text:
        text = _LINE_END.sub("\n", text)
        text = _LINE_START.sub("\n", text)
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def chunk_text(text: str, *, chunk_chars: int, max_chunks: int) -> tuple[list[str], bool]:
    """The first ``max_chunks`` chunks of ``text`` (each stripped, non-empty, at most
    ``chunk_chars`` long) and whether any text was left over. Lazy: only as much of the
    text is split as the chunks kept need.

    Raises:
        ValueError: ``chunk_chars`` or ``max_chunks`` is below 1.
    """
    if chunk_chars < 1 or max_chunks < 1:
        raise ValueError("chunk_chars and max_chunks must be at least 1")
    chunks = list(itertools.islice(_chunks(text.strip(), chunk_chars, 0), max_chunks + 1))
    truncated = len(chunks) > max_chunks
    return chunks[:max_chunks], truncated


def _chunks(text: str, budget: int, level: int) -> Iterator[str]:
    """Chunks of ``text`` (stripped), splitting at ``_SPLITS[level]`` and finer."""
    if len(text) <= budget:
        if text:
            yield text
        return
    if level == len(_SPLITS):
        for start in range(0, len(text), budget):
            yield text[start : start + budget]
        return
    pieces = _pieces(text, _SPLITS[level])
    if len(pieces) == 1:
        yield from _chunks(text, budget, level + 1)
        return
    packed: list[str] = []
    size = 0  # of the packed pieces, trailing separators included
    for piece in pieces:
        content = len(piece.rstrip())  # the chunk is stripped: a trailing separator is free
        if size + content <= budget:
            packed.append(piece)
            size += len(piece)
            continue
        if packed:
            yield "".join(packed).strip()
            packed, size = [], 0
        if content <= budget:
            packed, size = [piece], len(piece)
        else:
            yield from _chunks(piece.strip(), budget, level + 1)
    if packed and "".join(packed).strip():
        yield "".join(packed).strip()


def _pieces(text: str, separator: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match of ``separator``; the pieces join back to ``text``."""
    pieces = []
    start = 0
    for match in separator.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces
