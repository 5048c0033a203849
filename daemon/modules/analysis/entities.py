"""Entity extraction for the heuristic provider: precise patterns, no guessing.

Recognized (``value`` as written, ``normalized`` as noted):

- ``url``: ``http://`` or ``https://`` URLs; trailing sentence punctuation and an
  unbalanced closing bracket are not part of them. Normalized: scheme and host lowercased.
- ``email``: ASCII addresses with a dotted domain. Normalized: lowercased.
- ``cve``: ``CVE-YYYY-NNNN``. Normalized: uppercased.
- ``ip_address``: dotted-quad IPv4 (each part 0-255, no leading zeros), not part of a
  longer dotted number. Normalized: the address.
- ``date``: ISO 8601 (``2024-03-05``, optionally with a time), ``5 March 2024``,
  ``March 5, 2024`` (English month names or abbreviations), ``05.03.2024`` (day first)
  and ``05/03/2024``. Years 1900-2099, real calendar dates only. Normalized: ISO date or
  date-time; ``None`` for a slash date that reads validly both day-first and month-first.
- ``amount``: a number with a currency symbol (``$ € £ ¥``, before or after) or an
  ISO code (``USD``, ``EUR``, ... in capitals, before or after), optional ``k``, ``m``/
  ``million``, ``bn``/``billion``. ``,`` and ``.`` are read as decimal separator when
  followed by one or two final digits, else as thousands separators. Normalized:
  ``"EUR 1234.50"`` (``$`` is read as USD).
- ``identifier``: a number after ticket, case, invoice, order, incident, request,
  reference/ref, claim, contract or account (with an optional ``#``, ``:``, ``no.``,
  ``number``, ``id``), and ServiceNow-style ids (``INC0012345``, ``INV-2024-0042``).
  The id must contain a digit; without ``#``/``no.``/... it must be at least 4 long.
  Normalized: the id uppercased, prefixed with the kind when the id is only digits
  (``ticket:12345``).

Bare numbers, times, percentages, versions and plain prose yield nothing. Each span of
text becomes at most one entity (URLs claim their text first, so an email or a date
inside a URL is not extracted again). Entities come in order of first appearance,
without repeats of the same (type, normalized or value), at most ``limit``. Pure and
thread-safe.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from daemon.modules.analysis.schema import (
    ENTITY_VALUE_MAX_CHARS,
    MAX_ENTITIES,
    Entity,
    EntityType,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

# start, end, type, value, normalized
_Found = tuple[int, int, EntityType, str, str | None]

_URL = re.compile(r"(?<![\w@])https?://[^\s<>\"'`{}|\\^\[\]]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\"*"
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)
_CVE = re.compile(r"(?<![\w-])CVE-(?:19|20)\d{2}-\d{4,7}(?![\w-])", re.IGNORECASE)
_CVE_HINT = re.compile("cve-", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV4_HINT = re.compile(r"\d\.\d")  # starts with a class: the engine skips ahead fast

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3,
    "apr": 4, "april": 4, "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7,
    "aug": 8, "august": 8, "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}  # fmt: skip
_MONTH = "(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_ISO_DATE = re.compile(
    r"(?<![\w-])(?P<year>(?:19|20)\d{2})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?))?"
    r"(?![\w-])"
)
_ISO_DATE_HINT = re.compile(r"\d{4}-\d{2}-")  # starts with a class: the engine skips ahead
# Dates written with the year last are found from their year (a cheap scan) backwards:
# trying month names at every position of the text costs ten times more.
_YEAR = re.compile(r"(?:19|20)\d{2}(?!\d)")
_YEAR_LOOKBACK = 40
_DAY_MONTH_BEFORE = re.compile(rf"(?<!\w){_DAY}\s+(?:of\s+)?{_MONTH},?\s+\Z", re.IGNORECASE)
_MONTH_DAY_BEFORE = re.compile(rf"(?<!\w){_MONTH}\s+{_DAY},?\s+\Z", re.IGNORECASE)
_NUMERIC_BEFORE = re.compile(r"(?<![\w./-])(?P<a>\d{1,2})(?P<sep>[/.])(?P<b>\d{1,2})(?P=sep)\Z")
_NUMERIC_AFTER = re.compile(r"\w|[./-]\d")

_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CODES = (
    "USD", "EUR", "GBP", "CHF", "JPY", "CNY", "CAD", "AUD", "NZD", "SEK", "NOK",
    "DKK", "PLN", "CZK", "HUF", "INR", "BRL", "MXN", "ZAR", "SGD", "HKD",
)  # fmt: skip
_NUMBER = r"(?P<num>\d{1,3}(?:[,.\u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
_SCALE = r"(?:\s?(?P<scale>k|m|mn|bn|million|billion)(?!\w))?"
_NUM_END = r"(?!\d|[.,]\d)"
_SYM = "(?P<sym>[$€£¥])"
_CODE = "(?P<code>" + "|".join(_CODES) + ")"
# The cheap test gating the amount patterns: a symbol or a code anywhere (substring
# searches run in C; one regex alternation tried at every position costs ~20x more).
_CURRENCY_MARKS = (*_SYMBOLS, *_CODES)
_AMOUNT_PATTERNS = (
    re.compile(rf"(?:(?<![\w$€£¥]){_SYM}|(?<!\w){_CODE})\s?{_NUMBER}{_NUM_END}{_SCALE}"),
    re.compile(rf"(?<![\w.,]){_NUMBER}{_NUM_END}{_SCALE}\s?(?:{_SYM}|{_CODE}(?!\w))"),
)
_SCALES = {"k": 1_000, "m": 1_000_000, "mn": 1_000_000, "million": 1_000_000}
_SCALES |= {"bn": 1_000_000_000, "billion": 1_000_000_000}

_KINDS = "ticket|case|invoice|order|incident|request|reference|ref|claim|contract|account"
_ANCHORED_ID = re.compile(
    rf"(?<!\w)(?P<kind>{_KINDS})(?!\w)\s*"
    r"(?P<marker>#|:|(?:number|no\.?|nr\.?|id)\s*[#:]?)?\s*"
    # The lookahead asks for a digit in the id: rejects "ticket please" in the engine.
    r"(?P<id>(?=[A-Z0-9-]*\d)[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?)(?![\w-])",
    re.IGNORECASE,
)
_PREFIXED_ID = re.compile(r"(?<![\w-])(?:INC|REQ|RITM|CHG|PRB|TASK|INV)-?\d{4,}(?:-\d+)*(?![\w-])")


# Each extractor first checks for a character or word its entities cannot do without:
# a substring test is far cheaper than a regex tried at every position.


def _urls(text: str) -> Iterator[_Found]:
    if "://" not in text:
        return
    for match in _URL.finditer(text):
        url = match.group()
        while url and (
            url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count(")") > url.count("("))
        ):
            url = url[:-1]
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            continue
        if not host:
            continue
        normalized = parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower())
        yield _entity(match.start(), EntityType.URL, url, normalized.geturl())


def _emails(text: str) -> Iterator[_Found]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield _entity(match.start(), EntityType.EMAIL, match.group(), match.group().lower())


def _cves(text: str) -> Iterator[_Found]:
    if "-" not in text or _CVE_HINT.search(text) is None:
        return
    for match in _CVE.finditer(text):
        yield _entity(match.start(), EntityType.CVE, match.group(), match.group().upper())


def _ipv4s(text: str) -> Iterator[_Found]:
    if _IPV4_HINT.search(text) is None:
        return
    for match in _IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        yield _entity(match.start(), EntityType.IP_ADDRESS, match.group(), str(address))


def _dates(text: str) -> Iterator[_Found]:
    iso = _ISO_DATE.finditer(text) if _ISO_DATE_HINT.search(text) else ()
    for match in iso:
        normalized = _iso(match)
        if normalized is not None:
            yield _entity(match.start(), EntityType.DATE, match.group(), normalized)
    for year_match in _YEAR.finditer(text):
        start, end = year_match.span()
        if start and text[start - 1].isalnum():
            continue
        found = _date_ending_at(text, start, int(year_match.group()))
        if found is not None:
            begin, normalized = found
            yield begin, end, EntityType.DATE, text[begin:end], normalized


def _date_ending_at(text: str, year_start: int, year: int) -> tuple[int, str | None] | None:
    """Where a date ending with the year at ``year_start`` begins, and its ISO form."""
    window = max(0, year_start - _YEAR_LOOKBACK)
    for pattern in (_DAY_MONTH_BEFORE, _MONTH_DAY_BEFORE):
        match = pattern.search(text, window, year_start)
        if match is not None:
            day = _valid_date(year, _MONTHS[match["month"].lower()], int(match["day"]))
            return None if day is None else (match.start(), day.isoformat())
    match = _NUMERIC_BEFORE.search(text, window, year_start)
    if match is None or _NUMERIC_AFTER.match(text, year_start + 4):
        return None
    a, b = int(match["a"]), int(match["b"])
    day_first = _valid_date(year, b, a)
    month_first = None if match["sep"] == "." else _valid_date(year, a, b)
    readings = {d for d in (day_first, month_first) if d is not None}
    if not readings:
        return None
    return match.start(), readings.pop().isoformat() if len(readings) == 1 else None


def _iso(match: re.Match[str]) -> str | None:
    day = _valid_date(int(match["year"]), int(match["month"]), int(match["day"]))
    if day is None:
        return None
    if not match["time"]:
        return day.isoformat()
    try:
        return datetime.fromisoformat(f"{day.isoformat()}T{match['time']}").isoformat()
    except ValueError:
        return None


def _valid_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _amounts(text: str) -> Iterator[_Found]:
    if not any(mark in text for mark in _CURRENCY_MARKS):
        return
    for pattern in _AMOUNT_PATTERNS:
        for match in pattern.finditer(text):
            code = match["code"] or _SYMBOLS[match["sym"]]
            amount = _parse_number(match["num"])
            if amount is None:
                continue
            if match["scale"]:
                amount *= _SCALES[match["scale"].lower()]
            normalized = f"{code} {amount.quantize(Decimal('0.01')):f}"
            yield _entity(match.start(), EntityType.AMOUNT, match.group(), normalized)


def _parse_number(raw: str) -> Decimal | None:
    """``1,234.50``, ``1.234,50``, ``1 234``, ``12,5`` -> Decimal (see the module doc)."""
    digits = raw.replace("\u00a0", ",").replace("\u202f", ",")
    last = max(digits.rfind(","), digits.rfind("."))
    if last != -1 and len(digits) - last - 1 in (1, 2):
        whole, fraction = digits[:last], digits[last + 1 :]
    else:
        whole, fraction = digits, ""
    whole = whole.replace(",", "").replace(".", "")
    try:
        return Decimal(f"{whole}.{fraction}" if fraction else whole)
    except InvalidOperation:
        return None


def _identifiers(text: str) -> Iterator[_Found]:
    for match in _ANCHORED_ID.finditer(text):
        ident = match["id"]
        if not any(c.isdigit() for c in ident) or (not match["marker"] and len(ident) < 4):
            continue
        ident = ident.upper()
        normalized = f"{match['kind'].lower()}:{ident}" if ident.isdigit() else ident
        yield _entity(match.start(), EntityType.IDENTIFIER, match.group(), normalized)
    for match in _PREFIXED_ID.finditer(text):
        yield _entity(match.start(), EntityType.IDENTIFIER, match.group(), match.group())


def _entity(start: int, kind: EntityType, value: str, normalized: str | None) -> _Found:
    return start, start + len(value), kind, value, normalized


# Earlier extractors claim their text first.
_EXTRACTORS: tuple[Callable[[str], Iterator[_Found]], ...] = (
    _urls,
    _emails,
    _cves,
    _ipv4s,
    _dates,
    _amounts,
    _identifiers,
)


def extract_entities(text: str, *, limit: int = MAX_ENTITIES) -> tuple[Entity, ...]:
    """The entities in ``text`` (see the module docstring for what and how)."""
    claimed = bytearray(len(text))
    found: list[_Found] = []
    for extractor in _EXTRACTORS:
        for start, end, kind, value, normalized in extractor(text):
            too_long = max(len(value), len(normalized or "")) > ENTITY_VALUE_MAX_CHARS
            if too_long or any(claimed[start:end]):
                continue
            claimed[start:end] = b"\x01" * (end - start)
            found.append((start, end, kind, value, normalized))
    found.sort(key=lambda item: item[0])
    # Repeats dropped before the (validating) Entity objects are built.
    seen: set[tuple[EntityType, str]] = set()
    entities: list[Entity] = []
    for _start, _end, kind, value, normalized in found:
        key = (kind, (normalized or value).strip())
        if key in seen:
            continue
        seen.add(key)
        entities.append(Entity(type=kind, value=value, normalized=normalized))
        if len(entities) >= limit:
            break
    return dedupe(entities, limit=limit)


def dedupe(entities: Iterable[Entity], *, limit: int) -> tuple[Entity, ...]:
    """``entities`` in order without repeats of (type, normalized or value), at most
    ``limit``."""
    seen: set[tuple[EntityType, str]] = set()
    result: list[Entity] = []
    for entity in entities:
        key = (entity.type, entity.normalized or entity.value)
        if key in seen:
            continue
        seen.add(key)
        result.append(entity)
        if len(result) >= limit:
            break
    return tuple(result)
