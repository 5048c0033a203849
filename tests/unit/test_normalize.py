"""Normalization (pipeline step ``normalized``): cleaning, the language guess, and
chunking to the analyzer's budget."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from daemon.modules.ingestion import (
    LANGUAGES,
    UNDETERMINED,
    Normalized,
    chunk_text,
    clean_text,
    guess_language,
    normalize,
)

# --- cleaning ----------------------------------------------------------------------------


def test_nfc():
    decomposed = "Cafe\u0301 Gru\u0308\u00dfe"
    assert unicodedata.is_normalized("NFC", decomposed) is False
    assert clean_text(decomposed) == "Café Grüße"
    assert clean_text(decomposed) == clean_text("Café Grüße")


def test_control_characters_removed_but_newline_and_tab_kept():
    text = "a\x00b\x07c\x1b[31md\x7fe\x9bf\tg\nh"
    assert clean_text(text) == "abc[31mdef\tg\nh"


def test_invisible_format_characters_removed():
    assert clean_text("Rech\u00adnung\u200b \ufeffnummer\u2060 \u202eevil\u202c") == (
        "Rechnung nummer evil"
    )


def test_lone_surrogates_removed():
    broken = b"ok \xff\xfe bytes".decode("utf-8", "surrogateescape")
    assert clean_text(broken) == "ok bytes"
    clean_text(broken).encode("utf-8")  # storable


def test_zwj_emoji_sequences_survive():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert clean_text(f"team {family}") == f"team {family}"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("one\r\ntwo\rthree\x0bfour\x85five\u2028six", "one\ntwo\nthree\nfour\nfive\nsix"),
        ("page one\x0cpage two", "page one\n\npage two"),
        ("para\u2029para", "para\n\npara"),
    ],
)
def test_line_breaks_unified(raw, clean):
    assert clean_text(raw) == clean


def test_whitespace_collapsed():
    text = "  lots    of\u00a0\u00a0 space\u2003here  \t\n\n\n\n\n   next   paragraph  \n\n"
    assert clean_text(text) == "lots of space here\n\nnext paragraph"


def test_single_blank_lines_and_tabs_are_kept():
    assert clean_text("a\tb\n\nc\nd") == "a\tb\n\nc\nd"


def test_clean_is_idempotent():
    text = " Cafe\u0301\r\n\r\n\r\n\x00x\u00a0 y \t\n"
    assert clean_text(clean_text(text)) == clean_text(text)


def test_only_whitespace_and_controls_is_empty():
    result = normalize(" \n\t\x00\u200b \r\n ")
    assert result == Normalized(text="", language="und", chars=0, chunks=(), truncated=False)


# --- language ----------------------------------------------------------------------------

SAMPLES = {
    "en": "The server was down for two hours and we could not reach the database. "
    "Please check the logs and tell us what happened to our orders.",
    "de": "Der Server war zwei Stunden nicht erreichbar und wir konnten die Datenbank nicht "
    "erreichen. Bitte prüfen Sie die Protokolle und sagen Sie uns, was passiert ist.",
    "fr": "Le serveur était indisponible pendant deux heures et nous ne pouvions pas "
    "accéder à la base de données. Merci de vérifier les journaux.",
    "es": "El servidor no estuvo disponible durante dos horas y no pudimos acceder a la "
    "base de datos. Por favor revise los registros y díganos qué pasó.",
    "it": "Il server non è stato disponibile per due ore e non siamo riusciti ad accedere "
    "al database. Per favore controllate i log e diteci che cosa è successo.",
    "nl": "De server was twee uur niet bereikbaar en we konden de database niet bereiken. "
    "Controleer alstublieft de logbestanden en laat ons weten wat er is gebeurd.",
    "pt": "O servidor ficou indisponível durante duas horas e não conseguimos acessar o "
    "banco de dados. Por favor verifique os registros e diga-nos o que aconteceu.",
}


def test_every_language_has_a_sample():
    assert set(SAMPLES) == set(LANGUAGES)
    assert {"en", "de", "fr", "es", "it", "nl", "pt"} <= set(LANGUAGES)


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_language_guess(language):
    assert guess_language(SAMPLES[language]) == language
    assert normalize(SAMPLES[language]).language == language


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_language_guess_is_case_insensitive_and_survives_noise(language):
    noisy = f"Ticket #4711 2024-05-01 {SAMPLES[language].upper()} https://example.org/x?id=9"
    assert guess_language(noisy) == language


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello world",  # too short
        "Der Server ist",  # too short
        "1234 5678 9999 0000 1111 2222",  # no words
        "invoice payment overdue account number reference",  # no function words
        "Привет, как дела? Это тест на русском языке, без латиницы.",  # not a known language
        "日本語のテキストです。これはテストです。",
    ],
)
def test_language_undetermined(text):
    assert guess_language(text) == UNDETERMINED == "und"


def test_language_of_an_even_mix_is_undetermined():
    mixed = "the and of to with " + "der und die mit von "
    assert guess_language(mixed) == "und"


def test_language_guess_is_deterministic():
    text = SAMPLES["pt"] + " " + SAMPLES["es"][:60]
    assert len({guess_language(text) for _ in range(5)}) == 1


# --- chunking ----------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.split()


def test_short_text_is_one_chunk():
    result = normalize("A short note.\n\nTwo paragraphs.", chunk_chars=100)
    assert result.chunks == ("A short note.\n\nTwo paragraphs.",)
    assert not result.truncated
    assert result.chars == len(result.text) == 30


def test_empty_text_has_no_chunks():
    assert chunk_text("", chunk_chars=10, max_chunks=3) == ([], False)


def test_splits_on_paragraphs_first():
    first = "First paragraph is here. It has two sentences."
    second = "Second paragraph, one sentence only."
    third = "Third."
    text = f"{first}\n\n{second}\n\n{third}"
    chunks, truncated = chunk_text(text, chunk_chars=60, max_chunks=10)
    # paragraphs are packed while they fit, and never cut while whole ones fit
    assert chunks == [first, f"{second}\n\n{third}"]
    assert not truncated


def test_long_paragraph_splits_on_sentences():
    sentences = [f"Sentence number {i} says something." for i in range(10)]
    text = " ".join(sentences)
    chunks, _ = chunk_text(text, chunk_chars=80, max_chunks=50)
    assert all(len(chunk) <= 80 for chunk in chunks)
    for chunk in chunks:
        assert chunk.endswith("something.")  # every cut falls after a sentence
    assert " ".join(chunks) == text


def test_long_sentence_splits_between_words():
    text = " ".join(f"word{i}" for i in range(100))
    chunks, _ = chunk_text(text, chunk_chars=30, max_chunks=100)
    assert all(len(chunk) <= 30 for chunk in chunks)
    assert words(" ".join(chunks)) == words(text)  # no word cut in two


def test_giant_token_is_cut_hard():
    blob = "x" * 250
    chunks, truncated = chunk_text(f"before\n\n{blob}\n\nafter", chunk_chars=100, max_chunks=10)
    assert chunks == ["before", "x" * 100, "x" * 100, "x" * 50, "after"]
    assert not truncated


def test_lines_are_a_boundary_before_sentences():
    rows = [f"row {i}: value" for i in range(20)]
    chunks, _ = chunk_text("\n".join(rows), chunk_chars=50, max_chunks=100)
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert [line for chunk in chunks for line in chunk.split("\n")] == rows


def test_cjk_sentences_split_without_spaces():
    text = "これはテストです。" * 10
    chunks, _ = chunk_text(text, chunk_chars=20, max_chunks=100)
    assert all(chunk.endswith("。") and len(chunk) <= 20 for chunk in chunks)
    assert "".join(chunks) == text


def test_max_chunks_truncates():
    paragraphs = [f"Paragraph {i}. " + "filler " * 10 for i in range(20)]
    result = normalize("\n\n".join(paragraphs), chunk_chars=100, max_chunks=3)
    assert len(result.chunks) == 3
    assert result.truncated
    assert result.chunks[0].startswith("Paragraph 0.")
    assert "Paragraph 19" in result.text  # the text itself is whole
    assert all("Paragraph 19" not in chunk for chunk in result.chunks)


def test_exactly_max_chunks_is_not_truncated():
    text = "\n\n".join(["a" * 10] * 3)
    chunks, truncated = chunk_text(text, chunk_chars=10, max_chunks=3)
    assert chunks == ["a" * 10] * 3
    assert not truncated


def test_chunk_budget_of_one_character():
    chunks, truncated = chunk_text("ab c", chunk_chars=1, max_chunks=10)
    assert chunks == ["a", "b", "c"]
    assert not truncated


@pytest.mark.parametrize(("chunk_chars", "max_chunks"), [(0, 1), (1, 0), (-5, 3)])
def test_budget_must_be_positive(chunk_chars, max_chunks):
    with pytest.raises(ValueError, match="at least 1"):
        normalize("text", chunk_chars=chunk_chars, max_chunks=max_chunks)


@pytest.mark.parametrize("seed", range(25))
def test_chunk_invariants_on_random_text(seed):
    rng = random.Random(seed)
    vocabulary = ["alpha", "beta", "gamma", "x" * 40, "end.", "stop!", "why?", "\n", "\n\n", "é"]
    text = clean_text(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 400))))
    budget = rng.randint(1, 120)
    chunks, truncated = chunk_text(text, chunk_chars=budget, max_chunks=10_000)
    assert not truncated
    for chunk in chunks:
        assert chunk
        assert chunk == chunk.strip()
        assert len(chunk) <= budget
    # Nothing lost, nothing reordered: only whitespace at the cuts may differ.
    assert re.sub(r"\s+", "", "".join(chunks)) == re.sub(r"\s+", "", text)


def test_normalize_end_to_end():
    raw = "Dear team,\r\n\r\n\r\nthe  printer\u00a0is on fire\x07. Please   help!\r\n"
    result = normalize(raw, chunk_chars=20, max_chunks=5)
    assert result.text == "Dear team,\n\nthe printer is on fire. Please help!"
    assert result.chars == len(result.text)
    assert result.language == "en"
    # The over-long sentence is cut between words; its tail is not packed with the next
    # sentence, so the sentence boundary stays a chunk boundary.
    assert result.chunks == ("Dear team,", "the printer is on", "fire.", "Please help!")
    assert not result.truncated
