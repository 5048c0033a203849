"""text/plain: the bytes decoded (see :mod:`.charset`), nothing else changed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.modules.ingestion.extraction.charset import decode_text
from daemon.modules.ingestion.extraction.media import PLAIN
from daemon.modules.ingestion.extraction.result import finish

if TYPE_CHECKING:
    from daemon.modules.ingestion.extraction.result import Extracted


def extract(data: bytes, *, charset: str | None, max_chars: int) -> Extracted:
    """The decoded text.

    Raises:
        CorruptContent: the bytes are not text in any charset.
    """
    decoded = decode_text(data, declared=charset, what="text/plain document")
    return finish(
        decoded.text,
        media_type=PLAIN,
        charset=decoded.charset,
        max_chars=max_chars,
        warnings=decoded.warnings,
    )
