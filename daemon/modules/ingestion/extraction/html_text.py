"""text/html: the text a reader sees, with the standard library's tolerant parser.

Dropped: everything inside ``script``, ``style``, ``template``, ``noscript``, ``title``
(so nothing of the ``head`` remains: its other elements hold no text), comments, and
elements marked ``hidden`` or ``style="display: none"`` (except those whose end tag may
be omitted, such as ``p`` and ``li``: their end cannot be found reliably). Character
references are decoded. Runs of whitespace collapse to one space as a browser renders
them (in ``pre`` only indentation goes); block elements (``div``, list items, table
rows, ``br`` ...) become line breaks, paragraphs and headings blank lines, table cells
tabs. The charset comes from a byte order mark, the declared ``charset``, a
``<meta charset>`` in the first KiB, UTF-8, then detection.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from daemon.modules.ingestion.extraction.charset import decode_text
from daemon.modules.ingestion.extraction.media import HTML
from daemon.modules.ingestion.extraction.result import TextBuffer, finish

if TYPE_CHECKING:
    from daemon.modules.ingestion.extraction.result import Extracted

_SKIPPED = frozenset({"script", "style", "template", "noscript", "title"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)  # fmt: skip
# Elements whose end tag may be omitted: a ``hidden`` one is not skipped, since its end
# could not be found reliably and everything after it would vanish.
_OPTIONAL_END = frozenset(
    {"p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option",
     "optgroup", "colgroup", "caption", "rb", "rt", "rp"}
)  # fmt: skip
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table"})
_BLOCK = frozenset(
    {"address", "article", "aside", "body", "caption", "dd", "details", "dialog", "div",
     "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup",
     "hr", "legend", "li", "main", "nav", "ol", "option", "section", "summary", "tr", "ul"}
)  # fmt: skip
_CELL = frozenset({"td", "th"})
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)
_META_WITHIN = 1024
_SPACE = re.compile(r"[ \t\n\r\f]+")  # HTML's ASCII whitespace (not NBSP)
_LINE_EDGES = re.compile(r"[ \t]*\n[ \t]*")
_SPACES = re.compile(r" {2,}")
_TAB_EDGES = re.compile(r" *\t[ \t]*")
_BLANK_LINES = re.compile(r"\n{3,}")
_FEED = 65_536
_RANK = {"": 0, "\t": 1, "\n": 2, "\n\n": 3}


def extract(data: bytes, *, charset: str | None, max_chars: int) -> Extracted:
    """The visible text of the page.

    Raises:
        CorruptContent: the bytes are not text in any charset.
    """
    match = _META_CHARSET.search(data[:_META_WITHIN])
    hint = match.group(1).decode("ascii") if match else None
    decoded = decode_text(data, declared=charset, hint=hint, what="text/html document")
    notes = list(decoded.warnings)
    parser = _VisibleText(max_chars)
    html = decoded.text
    try:
        # Fed in slices so that a page far beyond the budget stops being parsed early.
        for start in range(0, len(html), _FEED):
            parser.feed(html[start : start + _FEED])
            if parser.out.dropped:
                break
        else:
            parser.close()
    except AssertionError as exc:  # html.parser's verdict on a few malformed declarations
        notes.append(f"HTML parsing stopped at malformed markup ({exc}); the rest is missing")
    return finish(
        _tidy(parser.out.getvalue()),
        media_type=HTML,
        charset=decoded.charset,
        max_chars=max_chars,
        warnings=notes,
        dropped=parser.out.dropped,
    )


def _tidy(text: str) -> str:
    text = _SPACES.sub(" ", text)  # spaces from neighbouring elements: "a </b> c"
    text = _TAB_EDGES.sub("\t", text)
    text = _LINE_EDGES.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


class _VisibleText(HTMLParser):
    def __init__(self, max_chars: int) -> None:
        super().__init__(convert_charrefs=True)
        self.out = TextBuffer(max_chars)
        self._skip_tag: str | None = None  # the element whose content is being dropped
        self._skip_depth = 0  # its nesting depth (same-name elements inside it)
        self._pre = 0
        self._pending = ""  # the break owed before the next text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if tag in _SKIPPED or (tag not in _VOID and tag not in _OPTIONAL_END and _is_hidden(attrs)):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "pre":
            self._pre += 1
        self._break(tag, opening=True)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <div/>: an element with no content, never one to skip into.
        if self._skip_tag is None:
            self._break(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag == "pre" and self._pre:
            self._pre -= 1
        self._break(tag, opening=False)

    def handle_data(self, data: str) -> None:
        if self._skip_tag is not None:
            return
        if not self._pre:
            data = _SPACE.sub(" ", data)
            if data == " " and self._pending:  # the source's indentation between blocks
                return
        if self._pending:
            self.out.write(self._pending)
            self._pending = ""
        self.out.write(data)

    def _break(self, tag: str, *, opening: bool) -> None:
        # Breaks are held back until the next text, so that "</li><li>" or "</p> <div>"
        # give one break of the larger kind, not two.
        if tag == "br" and opening:
            self._pending = "\n\n" if self._pending.startswith("\n") else "\n"
        elif tag in _PARAGRAPH:
            self._want("\n\n")
        elif tag in _BLOCK:
            self._want("\n")
        elif tag in _CELL and not opening:
            self._want("\t")

    def _want(self, separator: str) -> None:
        if _RANK[separator] > _RANK[self._pending]:
            self._pending = separator


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden" or (name == "style" and value and _DISPLAY_NONE.search(value)):
            return True
    return False
