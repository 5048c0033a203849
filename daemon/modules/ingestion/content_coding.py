"""Undoing a response's ``Content-Encoding`` within a byte budget (pure).

The fetcher asks for ``identity``, but a server may compress anyway, and a few KiB of
gzip can inflate to gigabytes. :class:`BodyDecoder` never produces more than the caller
allows per call (``zlib``'s ``max_length``), so the size cap holds on the decoded bytes
without ever holding more than the cap plus one byte in memory.

Supported: ``identity``, ``gzip`` (and ``x-gzip``), ``deflate`` (zlib-wrapped, or raw as
some servers send it). Anything else, a list of encodings included, is refused as
``UnsupportedContent``; undecodable bytes are ``CorruptContent``. Both are permanent.
"""

from __future__ import annotations

import zlib

from daemon.modules.ingestion.errors import CorruptContent, UnsupportedContent

_GZIP = zlib.MAX_WBITS | 16
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


class BodyDecoder:
    """Decodes one body, chunk by chunk, never producing more than asked.

    ``decode(data, limit)`` returns the decoded bytes of ``data``, at most ``limit`` (at
    least 1) of them. A caller passing its remaining budget plus one and getting more than
    its budget back knows the body is too large and must stop: input beyond ``limit`` is
    dropped, so decoding cannot go on after that. ``flush(limit)`` returns what is left
    at the end of the body.

    Raises:
        UnsupportedContent: (at construction) an encoding other than the supported ones.
        CorruptContent: the bytes do not decode.
    """

    def __init__(self, content_encoding: str | None) -> None:
        coding = (content_encoding or "identity").strip().lower()
        self.coding = coding
        self._wbits: int | None
        if coding == "identity":
            self._wbits = None
        elif coding in ("gzip", "x-gzip"):
            self._wbits = _GZIP
        elif coding == "deflate":
            self._wbits = _ZLIB  # switched to raw deflate if the first bytes say so
        else:
            raise UnsupportedContent(f"unsupported Content-Encoding {content_encoding!r}")
        self._inflater = None if self._wbits is None else zlib.decompressobj(self._wbits)
        self._started = False

    def decode(self, data: bytes, limit: int) -> bytes:
        assert limit > 0  # zlib takes max_length=0 for "unlimited"
        if self._inflater is None:
            return data[:limit]
        try:
            out = self._inflater.decompress(data, limit)
        except zlib.error as exc:
            if self._wbits == _ZLIB and not self._started:
                # A "deflate" body that is raw deflate, without the zlib header.
                self._wbits = _RAW_DEFLATE
                self._inflater = zlib.decompressobj(self._wbits)
                return self.decode(data, limit)
            raise self._corrupt(exc) from exc
        self._started = self._started or bool(data)
        return out

    def flush(self, limit: int) -> bytes:
        if self._inflater is None:
            return b""
        try:
            # decompress() already gave all it could, so this is small.
            return self._inflater.flush()[:limit]
        except zlib.error as exc:
            raise self._corrupt(exc) from exc

    def _corrupt(self, exc: zlib.error) -> CorruptContent:
        return CorruptContent(f"the {self.coding} body cannot be decoded: {exc}")
