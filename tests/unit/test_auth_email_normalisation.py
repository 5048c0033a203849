"""Emails as accounts see them (issue 12, defect 7): one spelling per address (Unicode
NFKC), and no address that looks like another one (control, invisible and bidirectional
characters, mixed-script look-alikes) is accepted."""

from __future__ import annotations

import unicodedata

import pytest

from daemon.modules.auth import InvalidAccountData
from daemon.modules.auth.emails import check_email, normalize_email, normalize_login_email


def wide(text: str) -> str:
    """``text`` in fullwidth forms (what NFKC maps back to ASCII)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("  Alice@Example.org ", "Alice@Example.org"),  # trimmed, case kept
        (
            wide("alice") + "@" + wide("example") + "." + wide("org"),
            "alice@example.org",
        ),  # fullwidth
        (wide("ALICE@") + "example.org", "ALICE@example.org"),  # fullwidth capitals and at sign
        ("jose\u0301@example.org", "jos\u00e9@example.org"),  # e + combining acute = é
        ("jos\u00e9@example.org", "jos\u00e9@example.org"),
        ("\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444", None),
        ("\u03b1\u03b8\u03b7\u03bd\u03b1@example.gr", None),  # all Greek local part
        ("\u5c71\u7530\u3055\u3093@example.jp", None),  # Han with Hiragana: one writing
        ("ﬁle@example.org", "file@example.org"),  # the ligature is two letters
        ("a\u2024b@example.org", "a.b@example.org"),  # one dot leader: a full stop
    ],
)
def test_spellings_of_one_address_become_one(typed, stored):
    expected = unicodedata.normalize("NFC", typed.strip()) if stored is None else stored
    assert check_email(typed) == expected
    assert check_email(check_email(typed)) == expected  # idempotent
    assert normalize_login_email(typed) == expected
    assert normalize_email(typed) == expected


@pytest.mark.parametrize(
    ("typed", "what"),
    [
        ("ali\u200bce@example.org", "U+200B"),  # zero-width space
        ("ali\u200dce@example.org", "U+200D"),  # zero-width joiner
        ("alice\u2060@example.org", "U+2060"),  # word joiner
        ("\ufeffalice@example.org", "U+FEFF"),  # byte order mark
        ("ali\u00adce@example.org", "U+00AD"),  # soft hyphen
        ("\u202eelica@example.org", "U+202E"),  # right-to-left override
        ("alice\u2066@example.org", "U+2066"),  # left-to-right isolate
        ("alice\u200f@example.org", "U+200F"),  # right-to-left mark
        ("\x1b[31malice@example.org", "U+001B"),  # ANSI escape sequence
        ("alice\x7f@example.org", "U+007F"),  # DEL
        ("alice\x85@example.org", "U+0085"),  # next line
        ("alice\u2028@example.org", "U+2028"),  # line separator
        ("alice\u2029@example.org", "U+2029"),  # paragraph separator
        ("ali\nce@example.org", "U+000A"),
        ("ali\u00a0ce@example.org", "U+00A0"),  # no-break space
        ("ali\u3000ce@example.org", "U+3000"),  # ideographic space
        ("ali\u3164ce@example.org", "U+3164"),  # Hangul filler (a "letter" that is blank)
        ("alice\ufe0f@example.org", "U+FE0F"),  # variation selector
        ("ali\u034fce@example.org", "U+034F"),  # combining grapheme joiner
        ("ali\u2800ce@example.org", "U+2800"),  # braille blank
        ("alice@exam\U000e0041ple.org", "U+E0041"),  # tag character
        ("alice@example.org\ue000", "U+E000"),  # private use
    ],
)
def test_control_and_invisible_characters_are_refused(typed, what):
    with pytest.raises(InvalidAccountData) as caught:
        check_email(typed)
    assert caught.value.field == "email"
    assert caught.value.message.startswith("email: ")
    assert what in caught.value.message
    assert caught.value.message.isascii() and caught.value.message.isprintable()
    # At login too: such a character is never part of an account's address.
    with pytest.raises(InvalidAccountData) as caught:
        normalize_login_email(typed)
    assert caught.value.field == "email" and what in caught.value.message


@pytest.mark.parametrize(
    "typed",
    [
        "\u0430dmin@example.org",  # Cyrillic a in a Latin local part
        "admin@ex\u0430mple.org",  # Cyrillic a in a Latin domain label
        "admin@example.\u043ergx",  # Cyrillic o in the top-level label
        "p\u0430ypal@example.org",
        "\u03bfmega@example.org",  # Greek omicron with Latin
        "\u0438\u0432\u0430n@example.org",  # Cyrillic with a Latin n
        "admin@\u0441\u0430\u0439\u0442x.ru",  # Cyrillic label with a Latin x
    ],
)
def test_labels_mixing_latin_with_cyrillic_or_greek_are_refused(typed):
    with pytest.raises(InvalidAccountData) as caught:
        check_email(typed)
    assert caught.value.field == "email"
    assert "mixes" in caught.value.message and caught.value.message.isascii()
    # Login does not refuse them (an account made before the rule may have one): it just
    # finds no other account than the one spelled that way.
    assert normalize_login_email(typed) == typed


def test_a_combining_mark_that_does_not_compose_is_refused():
    # i + combining dot above has no composed form and looks like a plain i.
    with pytest.raises(InvalidAccountData, match="U\\+0307"):
        check_email("admi\u0307n@example.org")
    # A mark in a writing that needs them stays (Devanagari vowel signs).
    assert (
        check_email("\u0915\u093f\u0930\u0923@example.in") == "\u0915\u093f\u0930\u0923@example.in"
    )


@pytest.mark.parametrize(
    "typed", ["plain", "a@b", "two@@example.org", "sp ace@example.org", "", "a\uff20b@c@d.org"]
)
def test_malformed_emails_are_refused(typed):
    with pytest.raises(InvalidAccountData) as caught:
        check_email(typed)
    assert caught.value.field == "email"


def test_the_length_limit_applies_to_the_normalised_form():
    # U+3315 is one character that NFKC spells out in five: short typed, too long stored.
    typed = "\u3315" * 60 + "@example.org"
    assert len(typed) < 254 < len(unicodedata.normalize("NFKC", typed))
    with pytest.raises(InvalidAccountData, match="254"):
        check_email(typed)
