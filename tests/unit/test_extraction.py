"""Extraction (pipeline step ``extracted``) on real documents made here: PDFs written byte
by byte and through pypdf, text in several charsets, HTML, CSV and JSON, and the broken
and unsupported inputs that must fail permanently with a clear message."""

from __future__ import annotations

import functools
import io
import json

import pypdf
import pytest
import trio

from daemon.modules.ingestion import (
    SUPPORTED_MEDIA_TYPES,
    CorruptContent,
    EmptyContent,
    EncryptedContent,
    Extracted,
    IngestionError,
    UnsupportedContent,
    canonical_media_type,
    extract_text,
    is_supported_media_type,
)
from daemon.modules.ingestion.extraction import pdf_text
from daemon.modules.ingestion.extraction.result import TextBuffer
from daemon.shared.errors import DaemonError


def make_pdf(pages: list[str]) -> bytes:
    """A valid PDF 1.4, written by hand: one page per item, each line of it a text line
    in Helvetica, with a correct cross-reference table."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
        for line in text.split("\n"):
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % offset for offset in offsets)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


PAGES = [
    "Invoice 4711 from ACME Corporation\nTotal due: 1,234.56 EUR",
    "Page two mentions the zebra clause",
    "Third page: payment overdue (final notice)",
]


def encrypted(data: bytes, *, user_password: str, owner_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- PDF --------------------------------------------------------------------------------


def test_pdf_text_of_every_page_in_order():
    result = extract_text(make_pdf(PAGES), "application/pdf")
    assert result.media_type == "application/pdf"
    assert result.pages == 3
    assert result.charset is None
    assert not result.truncated
    assert result.warnings == ()
    text = result.text
    for phrase in ("Invoice 4711 from ACME Corporation", "zebra clause", "(final notice)"):
        assert phrase in text
    assert text.index("Invoice") < text.index("zebra") < text.index("overdue")
    # pages are paragraphs of their own
    assert "EUR\n\nPage two" in text


def test_pdf_rewritten_by_pypdf_with_compressed_streams_still_reads():
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(PAGES))))
    for page in writer.pages:
        page.compress_content_streams()
    out = io.BytesIO()
    writer.write(out)
    assert b"FlateDecode" in out.getvalue()
    result = extract_text(out.getvalue(), "application/pdf")
    assert result.pages == 3
    assert "zebra clause" in result.text


def test_pdf_non_ascii_text():
    result = extract_text(make_pdf(["Grüße aus Köln, Straße"]), "application/pdf")
    assert "Grüße aus Köln, Straße" in result.text


def test_pdf_with_no_pages_text_is_empty_with_a_warning():
    result = extract_text(make_pdf([""]), "application/pdf")
    assert result.text == ""
    assert result.pages == 1
    assert any("no text found" in w and "scanned" in w for w in result.warnings)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf_is_a_permanent_error_saying_truncated(cut):
    data = make_pdf(PAGES)
    with pytest.raises(CorruptContent) as caught:
        extract_text(data[: int(len(data) * cut)], "application/pdf")
    assert "truncated PDF" in caught.value.message
    assert isinstance(caught.value, IngestionError)


def test_pdf_cut_just_before_its_end_marker_is_truncated():
    data = make_pdf(PAGES)
    with pytest.raises(CorruptContent, match="truncated PDF"):
        extract_text(data[: data.rindex(b"startxref")], "application/pdf")


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\nthis is not a PDF at all\n%%EOF\n",
        b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\nstartxref\n999999\n%%EOF\n",
    ],
    ids=["text-garbage", "binary-garbage", "bad-xref"],
)
def test_corrupt_pdf_is_a_permanent_error_saying_corrupt(data):
    with pytest.raises(CorruptContent) as caught:
        extract_text(data, "application/pdf")
    assert caught.value.message.startswith(("corrupt PDF", "truncated PDF"))


def test_pdf_declared_but_not_a_pdf():
    with pytest.raises(CorruptContent) as caught:
        extract_text(b"Just some words, no PDF here.", "application/pdf")
    assert caught.value.message == "not a PDF: the %PDF- signature is missing"


def test_pdf_with_a_user_password_is_refused_as_encrypted():
    data = encrypted(make_pdf(PAGES), user_password="s3cret", owner_password="owner")
    with pytest.raises(EncryptedContent) as caught:
        extract_text(data, "application/pdf")
    assert "password" in caught.value.message


def test_pdf_with_only_an_owner_password_opens_with_the_empty_one():
    data = encrypted(make_pdf(PAGES), user_password="", owner_password="owner")
    result = extract_text(data, "application/pdf")
    assert "zebra clause" in result.text
    assert result.pages == 3


def test_pdf_output_bounded_by_max_chars():
    pages = [f"Page {i} " + "lorem ipsum " * 20 for i in range(50)]
    result = extract_text(make_pdf(pages), "application/pdf", max_chars=500)
    assert len(result.text) == 500
    assert result.truncated
    assert result.pages == 50  # the count is of the file, not of what was read
    assert "text cut at 500 characters" in result.warnings
    assert "Page 0" in result.text
    assert "Page 49" not in result.text


def test_pdf_page_limit(monkeypatch):
    monkeypatch.setattr(pdf_text, "MAX_PAGES", 2)
    result = extract_text(make_pdf(PAGES), "application/pdf")
    assert "zebra" in result.text
    assert "overdue" not in result.text
    assert "only the first 2 of 3 pages were read" in result.warnings


def test_pdf_repairs_by_pypdf_become_warnings():
    # A wrong startxref offset: pypdf rebuilds the cross-reference table and logs it.
    data = make_pdf(PAGES)
    head, _, tail = data.rpartition(b"startxref\n")
    broken = head + b"startxref\n" + b"12" + tail[tail.index(b"\n") :]
    result = extract_text(broken, "application/pdf")
    assert "zebra clause" in result.text
    assert any(w.startswith("PDF: ") for w in result.warnings)


# --- plain text and charsets -------------------------------------------------------------

GERMAN = "Grüße aus München! Der Bär läuft über die Straße, während Jürgen Käse isst.\n"


def test_plain_utf8():
    result = extract_text(GERMAN.encode(), "text/plain")
    assert result == Extracted(text=GERMAN, media_type="text/plain", charset="utf-8")


def test_plain_latin1_without_declaration_is_detected():
    result = extract_text(GERMAN.encode("latin-1"), "text/plain")
    assert result.text == GERMAN
    assert result.charset == "cp1252"
    assert result.warnings == ()


def test_short_latin1_is_not_decoded_as_an_exotic_code_page():
    result = extract_text("Café crème brûlée".encode("latin-1"), "text/plain")
    assert result.text == "Café crème brûlée"


def test_declared_latin1_is_used():
    result = extract_text(GERMAN.encode("latin-1"), "text/plain; charset=ISO-8859-1")
    assert result.text == GERMAN
    assert result.charset == "iso8859-1"
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("encoding", "charset"),
    [
        ("utf-8-sig", "utf-8"),
        ("utf-16", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
        ("utf-32", "utf-32-le"),
        ("utf-32-be", "utf-32-be"),
    ],
)
def test_byte_order_marks(encoding, charset):
    data = GERMAN.encode(encoding)
    if encoding.endswith("-be"):
        data = "\ufeff".encode(encoding) + data
    result = extract_text(data, "text/plain")
    assert result.text == GERMAN  # the BOM itself is not part of the text
    assert result.charset == charset


def test_utf16_without_bom_is_detected():
    result = extract_text(GERMAN.encode("utf-16-le"), "text/plain")
    assert result.text == GERMAN


def test_bom_beats_a_wrong_declaration_with_a_warning():
    result = extract_text(GERMAN.encode("utf-16"), "text/plain; charset=iso-8859-1")
    assert result.text == GERMAN
    assert any("iso8859-1 ignored" in w for w in result.warnings)


def test_invalid_utf8_declared_as_utf8_falls_back_to_detection_with_a_warning():
    result = extract_text(GERMAN.encode("latin-1"), "text/plain; charset=utf-8")
    assert result.text == GERMAN
    assert result.charset == "cp1252"
    assert result.warnings == (
        "content is not valid utf-8 as its declared charset says; decoded as cp1252",
    )


@pytest.mark.parametrize("label", ["klingon-8", "base64", "x" * 200])
def test_unknown_or_non_text_charset_label_is_a_warning(label):
    result = extract_text(GERMAN.encode(), f'text/plain; charset="{label}"')
    assert result.text == GERMAN
    assert result.charset == "utf-8"
    assert len(result.warnings) == 1
    assert "is unknown; decoded as utf-8" in result.warnings[0]


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 16, b"\x89PNG\r\n\x1a\n" + bytes(200) + bytes(range(256)), bytes(64)],
    ids=["all-bytes", "png", "zeros"],
)
def test_binary_declared_as_text_is_corrupt(data):
    with pytest.raises(CorruptContent, match=r"text/plain document is not readable text"):
        extract_text(data, "text/plain")


def test_max_chars_cuts_plain_text():
    result = extract_text(b"abcdefghij" * 10, "text/plain", max_chars=25)
    assert result.text == "abcdefghijabcdefghijabcde"
    assert result.truncated
    assert result.warnings == ("text cut at 25 characters",)
    exact = extract_text(b"abcde", "text/plain", max_chars=5)
    assert exact.text == "abcde"
    assert not exact.truncated


def test_text_buffer_stops_taking_text_past_the_budget():
    # What lets extractors stop parsing early instead of extracting everything and
    # cutting afterwards.
    buffer = TextBuffer(5)
    buffer.write("abc")
    buffer.write("de")
    buffer.write("fg")  # past the budget: taken, so the cut can be seen
    assert not buffer.dropped
    buffer.write("  \n")  # blank: refused, but nothing is lost
    assert not buffer.dropped
    buffer.write("lost")
    assert buffer.dropped
    assert buffer.getvalue() == "abcdefg"


@pytest.mark.parametrize("max_chars", [0, -1])
def test_max_chars_must_be_positive(max_chars):
    with pytest.raises(ValueError, match="max_chars"):
        extract_text(b"x", "text/plain", max_chars=max_chars)


# --- HTML ---------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html>
<html>
<head>
  <title>Page title is head content</title>
  <meta charset="utf-8">
  <style>body { color: red; } .secret::after { content: "styled"; }</style>
  <script>var leaked = "script text"; if (a < b && c > d) { alert("no"); }</script>
</head>
<body>
  <h1>Quarterly&nbsp;report &amp; outlook</h1>
  <p>Revenue   rose
     by 12&#37; &mdash; costs &lt;fell&gt;.</p>
  <script type="text/javascript">document.write("more script")</script>
  <noscript>Please enable JavaScript</noscript>
  <template><p>template text</p></template>
  <div hidden>hidden div</div>
  <span style="display: none">invisible span</span>
  <!-- a comment -->
  <ul>
    <li>first item</li>
    <li>second <b>bold</b> item</li>
  </ul>
  <table>
    <tr><th>Name</th><th>Amount</th></tr>
    <tr><td>ACME</td><td>100</td></tr>
  </table>
  <p>Line one<br>Line two</p>
</body>
</html>
"""


def test_html_visible_text_only():
    result = extract_text(PAGE, "text/html; charset=utf-8")
    assert result.media_type == "text/html"
    assert result.text == (
        "Quarterly\xa0report & outlook\n"
        "\n"
        "Revenue rose by 12% \u2014 costs <fell>.\n"
        "\n"
        "first item\n"
        "second bold item\n"
        "\n"
        "Name\tAmount\n"
        "ACME\t100\n"
        "\n"
        "Line one\n"
        "Line two"
    )
    dropped = "title color leaked script enable template hidden invisible comment"
    for word in dropped.split():
        assert word not in result.text


def test_html_without_head_or_end_tags():
    result = extract_text(b"<p>One<p>Two<div>Three</div>four", "text/html")
    assert result.text == "One\n\nTwo\nThree\nfour"


def test_html_meta_charset_is_honoured():
    html = '<html><head><meta charset="windows-1252"></head><body><p>Café “quoted” €</p>'
    result = extract_text(html.encode("cp1252"), "text/html")
    assert result.text == "Café “quoted” €"
    assert result.charset == "cp1252"


def test_html_malformed_markup_keeps_the_text_before_it():
    result = extract_text(b"<p>Before</p><![foo bar]> after", "text/html")
    assert result.text.startswith("Before")
    assert any("malformed markup" in w for w in result.warnings)


def test_html_cut_is_reported_even_when_tidying_shrinks_the_text_under_the_budget():
    # Each paragraph is collected as "word \n\n" and tidied to "word\n\n".
    result = extract_text(b"<p>word </p>" * 1000, "text/html", max_chars=100)
    assert result.truncated
    assert "text cut at 100 characters" in result.warnings
    assert len(result.text) < 100
    assert result.text.endswith("word")


def test_html_bounded_by_max_chars():
    html = b"<html><body>" + b"<p>paragraph of text</p>" * 10_000 + b"</body></html>"
    result = extract_text(html, "text/html", max_chars=100)
    assert len(result.text) == 100
    assert result.truncated


# --- CSV ---------------------------------------------------------------------------------


def test_csv_with_semicolons():
    data = b"name;city;comment\nAlice;Berlin;hello, world\nBob;;late payment\n\n"
    result = extract_text(data, "text/csv")
    assert result.media_type == "text/csv"
    assert result.text == (
        "columns: name; city; comment\n"
        "name: Alice; city: Berlin; comment: hello, world\n"
        "name: Bob; comment: late payment"
    )


def test_csv_with_commas_and_quoted_fields():
    data = b'id,subject,amount\r\n1,"Refund, urgent",12.50\r\n2,"multi\r\nline",3\r\n'
    result = extract_text(data, "text/csv")
    assert result.text.splitlines()[:2] == [
        "columns: id; subject; amount",
        "id: 1; subject: Refund, urgent; amount: 12.50",
    ]
    assert "id: 2; subject: multi" in result.text


def test_csv_delimiter_sniffed_despite_commas_in_quoted_cells():
    data = b'"Name, first";City\n"Doe, Jane";Berlin\n"Roe, Rich";Paris\n'
    result = extract_text(data, "text/csv")
    assert result.text == (
        "columns: Name, first; City\nName, first: Doe, Jane; City: Berlin\n"
        "Name, first: Roe, Rich; City: Paris"
    )


def test_csv_tab_delimited_and_extra_cells():
    result = extract_text(b"a\tb\n1\t2\t3\n4\t5\t6\n", "text/csv")
    assert result.text == "columns: a; b\na: 1; b: 2; column 3: 3\na: 4; b: 5; column 3: 6"


def test_csv_excel_sep_line_and_latin1():
    data = "sep=;\nKunde;Straße\nMüller;Hauptstraße 1\n".encode("cp1252")
    result = extract_text(data, "text/csv")
    assert result.text == "columns: Kunde; Straße\nKunde: Müller; Straße: Hauptstraße 1"


def test_csv_single_column_falls_back_to_comma():
    result = extract_text(b"note\nfirst\nsecond\n", "application/csv")
    assert result.media_type == "text/csv"
    assert result.text == "columns: note\nnote: first\nnote: second"


def test_csv_bounded_by_max_chars():
    data = b"n,v\n" + b"".join(b"%d,value\n" % i for i in range(100_000))
    result = extract_text(data, "text/csv", max_chars=200)
    assert len(result.text) == 200
    assert result.truncated


def test_csv_exactly_at_the_budget_is_not_truncated():
    data = b"h\nv\n"  # "columns: h\nh: v" is 15 characters
    result = extract_text(data, "text/csv", max_chars=15)
    assert result.text == "columns: h\nh: v"
    assert not result.truncated
    cut = extract_text(data + b"w\n", "text/csv", max_chars=15)
    assert cut.text == "columns: h\nh: v"
    assert cut.truncated


def test_csv_oversized_field_is_corrupt():
    data = b'a,b\n"' + b"x" * 200_000 + b'",1\n'
    with pytest.raises(CorruptContent, match="invalid CSV"):
        extract_text(data, "text/csv")


# --- JSON --------------------------------------------------------------------------------


def test_nested_json_flattened_in_document_order():
    document = {
        "ticket": {
            "id": 4711,
            "subject": "Printer on fire",
            "tags": ["urgent", "hardware"],
            "reporter": {"name": "Ana", "email": "ana@example.org"},
            "price": 12.5,
            "open": True,
            "assignee": None,
            "notes": [],
        },
        "version": 2,
    }
    result = extract_text(json.dumps(document).encode(), "application/json")
    assert result.media_type == "application/json"
    assert result.text == (
        "ticket.id: 4711\n"
        "ticket.subject: Printer on fire\n"
        "ticket.tags[0]: urgent\n"
        "ticket.tags[1]: hardware\n"
        "ticket.reporter.name: Ana\n"
        "ticket.reporter.email: ana@example.org\n"
        "ticket.price: 12.5\n"
        "ticket.open: true\n"
        "version: 2"
    )


def test_json_top_level_array_and_scalar():
    assert extract_text(b'[{"a": "x"}, "y"]', "application/json").text == "[0].a: x\n[1]: y"
    assert extract_text(b'"just a string"', "application/json").text == "just a string"


def test_json_deeply_nested_but_valid():
    data = b'{"a": ' * 500 + b'"deep"' + b"}" * 500
    result = extract_text(data, "application/json")
    assert result.text == "a." * 499 + "a: deep"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"a": 1,}', "line 1 column 9"),
        (b'{\n  "a": [1, 2\n}', "line 3 column 1"),
        (b"{'single': 'quotes'}", "line 1 column 2"),
    ],
)
def test_invalid_json_is_corrupt_and_says_where(data, where):
    with pytest.raises(CorruptContent) as caught:
        extract_text(data, "application/json")
    assert caught.value.message.startswith("invalid JSON: ")
    assert where in caught.value.message


def test_json_nested_beyond_the_parser_is_corrupt():
    with pytest.raises(CorruptContent, match="nested too deeply"):
        extract_text(b"[" * 100_000 + b"]" * 100_000, "application/json")


def test_json_variants_are_json():
    result = extract_text(b'{"@id": "x"}', "application/ld+json")
    assert result.media_type == "application/json"
    assert result.text == "@id: x"


# --- empty, unknown, detection ---------------------------------------------------------


@pytest.mark.parametrize("media_type", [*SUPPORTED_MEDIA_TYPES, None, "image/png"])
def test_zero_bytes_is_an_empty_document(media_type):
    with pytest.raises(EmptyContent) as caught:
        extract_text(b"", media_type)
    assert caught.value.message == "empty document (0 bytes)"


@pytest.mark.parametrize("media_type", ["image/png", "application/zip", "pdf", "text/markdown"])
def test_unknown_media_type_names_it_and_lists_the_supported(media_type):
    with pytest.raises(UnsupportedContent) as caught:
        extract_text(b"some content", media_type)
    message = caught.value.message
    assert repr(media_type) in message
    for supported in SUPPORTED_MEDIA_TYPES:
        assert supported in message


def test_media_type_parameters_and_case_are_understood():
    result = extract_text(b"<p>Hi</p>", 'Text/HTML; Charset="UTF-8"; boundary=x')
    assert result.media_type == "text/html"
    assert result.text == "Hi"


@pytest.mark.parametrize(
    ("data", "declared", "filename", "warning"),
    [
        (
            make_pdf(["sniffed pdf"]),
            "application/octet-stream",
            None,
            "declared as application/octet-stream: detected application/pdf from the content",
        ),
        (
            make_pdf(["sniffed pdf"]),
            None,
            "report.txt",  # the signature beats the name
            "no media type declared: detected application/pdf from the content",
        ),
        (
            b'  {"k": "v"}',
            None,
            None,
            "no media type declared: detected application/json from the content",
        ),
        (
            b"<!DOCTYPE html><p>x</p>",
            "",
            None,
            "no media type declared: detected text/html from the content",
        ),
        (
            b"<div>x</div>",
            "binary/octet-stream",
            None,
            "declared as binary/octet-stream: detected text/html from the content",
        ),
        (
            b"{not json, [just text",
            None,
            None,
            "no media type declared: detected text/plain from the content",
        ),
        (
            b"a;b\n1;2\n",
            "application/octet-stream",
            "C:\\exports\\data.CSV",
            "declared as application/octet-stream: detected text/csv from the file name",
        ),
    ],
)
def test_undeclared_types_are_detected_with_a_warning(data, declared, filename, warning):
    result = extract_text(data, declared, filename=filename)
    assert result.warnings[0] == warning
    assert result.media_type == warning.split("detected ")[1].split(" ")[0]
    assert result.text


def test_undeclared_binary_is_unsupported():
    with pytest.raises(UnsupportedContent, match="not PDF and not text"):
        extract_text(bytes(range(256)) * 16, "application/octet-stream")


def test_supported_media_type_helpers():
    assert canonical_media_type("text/x-csv") == "text/csv"
    assert canonical_media_type("APPLICATION/PDF; x=y") == "application/pdf"
    assert canonical_media_type("image/png") is None
    assert is_supported_media_type(None)
    assert is_supported_media_type("application/octet-stream")
    assert is_supported_media_type("application/problem+json")
    assert not is_supported_media_type("image/png")


def test_every_extraction_error_is_a_permanent_ingestion_error():
    for error in (EmptyContent, UnsupportedContent, CorruptContent, EncryptedContent):
        assert issubclass(error, IngestionError)
        assert issubclass(error, DaemonError)
        assert error().message  # a default message from the docstring


async def test_runs_in_a_worker_thread_as_the_pipeline_calls_it():
    data = [make_pdf([f"document {i}"]) for i in range(4)]
    results: list[Extracted] = []

    async def one(blob: bytes) -> None:
        call = functools.partial(extract_text, blob, "application/pdf")
        results.append(await trio.to_thread.run_sync(call))

    async with trio.open_nursery() as nursery:
        for blob in data:
            nursery.start_soon(one, blob)
    assert sorted(r.text for r in results) == [f"document {i}" for i in range(4)]
    assert all(r.warnings == () for r in results)
