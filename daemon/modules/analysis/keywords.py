"""Keyword terms and the one-pass matcher behind the taxonomy and the severity rules.

A term is a word or a phrase, matched case-insensitively on word boundaries: ``charge``
matches "Charge." but not "discharged" or "charges". Inside a phrase any run of
whitespace matches (``data breach`` matches "data\\n  breach"). A trailing ``*`` makes
the last word a prefix: ``refund*`` matches "refund", "refunds" and "refunded".
Boundaries are "not a word character on either side", so terms may start or end with
punctuation (``$``, ``c++``). Pure; a :class:`TermMatcher` is immutable and thread-safe.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

TERM_MAX_CHARS = 100


def normalize_term(raw: object) -> str:
    """The canonical form of a term: lowercased, inner whitespace collapsed, trimmed.

    Raises:
        ValueError: not a string, empty, too long, or a misplaced ``*``.
    """
    if not isinstance(raw, str):
        raise ValueError(f"a keyword must be a string, got {type(raw).__name__}")
    term = " ".join(raw.lower().split())
    if not term.rstrip("*"):
        raise ValueError("a keyword must not be empty")
    if len(term) > TERM_MAX_CHARS:
        raise ValueError(f"keyword {term[:20]!r}... is longer than {TERM_MAX_CHARS} characters")
    if "*" in term[:-1] or term.endswith(" *"):
        raise ValueError(f"keyword {term!r}: '*' is only allowed at the end of a word")
    return term


def _tokens(term: str) -> list[str]:
    """A term as trie tokens: characters, " " for a whitespace run, "*" for a prefix."""
    tokens: list[str] = []
    for index, word in enumerate(term.removesuffix("*").split()):
        if index:
            tokens.append(" ")
        tokens.extend(word)
    if term.endswith("*"):
        tokens.append("*")
    return tokens


_Trie = dict[str, "_Trie"]
_END = ""  # trie key marking that a term ends here


def _trie_pattern(node: _Trie) -> str:
    """A regex for all terms of ``node``, factored by common prefix (so the engine tries
    one branch per position instead of every term) and preferring the longest term."""
    branches = []
    # "*" last: a prefix wildcard must not pre-empt a longer literal continuation.
    for token in sorted((t for t in node if t != _END), key=lambda t: (t == "*", t)):
        if token == " ":
            piece = r"\s+"
        elif token == "*":
            piece = r"\w*"
        else:
            piece = re.escape(token)
        branches.append(piece + _trie_pattern(node[token]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if _END in node else body


class TermMatcher:
    """Counts the occurrences of a fixed set of terms in a text, in one regex pass.

    Where terms overlap at one position the longest wins (``data breach`` over ``data``);
    matches do not overlap. A text matching both ``refund`` and ``refund*`` counts for
    ``refund``.
    """

    __slots__ = ("_exact", "_lower_regex", "_prefixes", "_regex")

    def __init__(self, terms: Iterable[str]) -> None:
        unique = set(terms)
        trie: _Trie = {}
        for term in unique:
            node = trie
            for token in _tokens(term):
                node = node.setdefault(token, {})
            node[_END] = {}
        self._exact = {t for t in unique if not t.endswith("*")}
        # Longest stem first, so "data breach*" is preferred over "data*".
        self._prefixes = sorted((t for t in unique if t.endswith("*")), key=lambda t: (-len(t), t))
        pattern = rf"(?<!\w)(?:{_trie_pattern(trie)})(?!\w)"
        self._regex = re.compile(pattern, re.IGNORECASE) if unique else None
        # The terms are lowercase: on a lowercased text the same pattern matches without
        # IGNORECASE, about twice as fast.
        self._lower_regex = re.compile(pattern) if unique else None

    def count(self, text: str) -> Counter[str]:
        """Occurrences of each term found in ``text`` (terms not found are absent)."""
        found: Counter[str] = Counter()
        if self._regex is None or self._lower_regex is None or not text:
            return found
        lowered = text.lower()
        # A lowercasing that changes the length (a few letters, such as "İ") could
        # also move word boundaries: then the text is matched as it is.
        spellings = (
            self._lower_regex.findall(lowered)
            if len(lowered) == len(text)
            else self._regex.findall(text)
        )
        # Matches counted in C, then each distinct spelling mapped to its term once (a
        # text repeats its words: far fewer spellings than matches).
        for spelling, times in Counter(spellings).items():
            term = self._term_of(" ".join(spelling.lower().split()))
            if term is not None:
                found[term] += times
        return found

    def _term_of(self, key: str) -> str | None:
        if key in self._exact:
            return key
        for term in self._prefixes:
            if key.startswith(term[:-1]):
                return term
        return None  # only for case foldings where lower() and IGNORECASE disagree
