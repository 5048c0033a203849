"""Emails: one spelling per address, and no address that passes for another.

Every email that enters (creation through the API or the CLI, the bootstrap and initial
admin, all through :func:`daemon.modules.auth.users.insert_user`) passes
:func:`check_email`; every lookup (login, the CLI) passes :func:`normalize_login_email`.
Both give the Unicode NFKC form, trimmed, with its case kept (as shown in lists);
identity is that form compared ignoring case, by PostgreSQL's ``lower()`` on both sides,
which is also the unique index ``users_email_key``. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata

from daemon.modules.auth.errors import InvalidAccountData

EMAIL_MAX_LENGTH = 254


_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# Control (Cc), format (Cf: zero-width, bidirectional controls, soft hyphen, tags),
# surrogate, private-use and unassigned code points, and every space and line or
# paragraph separator.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


# Blank or invisible though classed as letters, marks or symbols: Hangul and Khmer
# fillers, the combining grapheme joiner, Mongolian and other variation selectors, the
# braille blank.
_INVISIBLE = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)


# Scripts whose letters pass for one another (Cyrillic a, e, o, p, c, x; Greek o, v...).
_LOOK_ALIKE_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def normalize_email(email: str) -> str:
    """The email in its one spelling: Unicode NFKC (fullwidth letters become ASCII,
    ligatures letters, a letter followed by a combining accent the accented letter),
    trimmed, case kept. Pure, idempotent; refuses nothing (see :func:`check_email`)."""
    return unicodedata.normalize("NFKC", email.strip()).strip()


def looks_like_email(text: str) -> bool:
    """Whether ``text`` has the shape of an email address (nothing more is checked)."""
    return len(text) <= EMAIL_MAX_LENGTH and _EMAIL_SHAPE.match(text.strip()) is not None


def normalize_login_email(email: str) -> str:
    """An email typed to look an account up (login, the CLI): :func:`normalize_email`,
    refusing only characters no address may contain (:func:`check_email`'s first rule).
    Not its other rules: an account created before them may break them, and must still
    be found; an address that is no email simply finds nobody.

    Raises:
        InvalidAccountData: (field ``email``) a control or invisible character.
    """
    _refuse_invisible(email.strip())
    normal = normalize_email(email)
    _refuse_invisible(normal)
    return normal


def check_email(email: str) -> str:
    """The email as stored for a new account: :func:`normalize_email`, once it passes
    these rules.

    1. No control, format or invisible character, before or after normalisation: C0 and
       C1 controls (so no escape sequence, CR, LF or NEL), zero-width characters, soft
       hyphens, bidirectional controls, tags, private-use and unassigned code points,
       spaces, line and paragraph separators, and blank "letters" (Hangul fillers,
       variation selectors, the braille blank). The message names the code point.
    2. The shape ``local@domain.tld``, at most 254 characters once normalised.
    3. No combining mark left over a Latin, Greek or Cyrillic letter (or over nothing)
       after NFKC: an accent that has a composed form was composed; one that has none
       (``i`` + U+0307) only makes a letter look like another.
    4. The local part and each domain label are each written in at most one of the
       Latin, Greek and Cyrillic scripts: ``paypal`` with a Cyrillic ``a`` (U+0430) is
       refused, an all-Cyrillic address is not. Other scripts, digits and punctuation mix
       freely (Japanese mixes Han and kana). Whole-script look-alikes (an all-Cyrillic
       label that reads as Latin) are not detected.

    Raises:
        InvalidAccountData: (field ``email``) which rule, in ASCII.
    """
    email = normalize_login_email(email)
    if len(email) > EMAIL_MAX_LENGTH:
        raise InvalidAccountData(
            "email", f"email: at most {EMAIL_MAX_LENGTH} characters (once normalised)"
        )
    if not _EMAIL_SHAPE.match(email):
        raise InvalidAccountData("email", "email: not a valid email address")
    local, domain = email.split("@")
    parts = [("the local part", local)] + [("a domain label", d) for d in domain.split(".")]
    for what, part in parts:
        _refuse_loose_marks(part)
        scripts = sorted({s for s in map(_look_alike_script, part) if s is not None})
        if len(scripts) > 1:
            raise InvalidAccountData(
                "email",
                f"email: {what} mixes {' and '.join(s.title() for s in scripts)} letters "
                "(they look alike)",
            )
    return email


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def _refuse_invisible(text: str) -> None:
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES or ord(char) in _INVISIBLE:
            raise InvalidAccountData(
                "email",
                f"email: contains a control, invisible or space character ({_describe(char)})",
            )


def _look_alike_script(char: str) -> str | None:
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    return next((s for s in _LOOK_ALIKE_SCRIPTS if name.startswith(s + " ")), None)


def _refuse_loose_marks(part: str) -> None:
    base: str | None = None
    for char in part:
        if unicodedata.category(char) in ("Mn", "Me"):
            if base is None or _look_alike_script(base) is not None:
                raise InvalidAccountData(
                    "email",
                    f"email: contains a combining mark that does not compose with its "
                    f"letter ({_describe(char)})",
                )
        else:
            base = char
