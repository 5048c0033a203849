"""Content-Encoding decoding within a byte budget (pure): what keeps a gzip bomb from
inflating past the fetch size cap."""

from __future__ import annotations

import gzip
import zlib

import pytest

from daemon.modules.ingestion import CorruptContent, UnsupportedContent
from daemon.modules.ingestion.content_coding import BodyDecoder

TEXT = b"The quick brown fox jumps over the lazy dog. " * 200


def decode_all(decoder: BodyDecoder, data: bytes, *, chunk: int = 100, budget: int = 10**9):
    out = bytearray()
    for i in range(0, len(data), chunk):
        out += decoder.decode(data[i : i + chunk], budget - len(out) + 1)
        if len(out) > budget:
            return bytes(out)
    out += decoder.flush(budget - len(out) + 1)
    return bytes(out)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        (None, TEXT),
        ("identity", TEXT),
        ("gzip", gzip.compress(TEXT)),
        ("X-GZIP", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", raw_deflate(TEXT)),  # what some servers call deflate
    ],
)
def test_decodes_whole_bodies_in_chunks(coding, encoded):
    assert decode_all(BodyDecoder(coding), encoded) == TEXT


@pytest.mark.parametrize("coding", [None, "gzip", "deflate"])
def test_output_never_exceeds_the_limit(coding):
    plain = b"\0" * (4 * 1024 * 1024)
    encoded = {None: plain, "gzip": gzip.compress(plain), "deflate": zlib.compress(plain)}[coding]
    budget = 1000
    out = decode_all(BodyDecoder(coding), encoded, chunk=len(encoded), budget=budget)
    assert len(out) == budget + 1  # one byte over: the caller knows to stop


def test_a_bomb_in_one_chunk_yields_only_the_limit():
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    assert len(BodyDecoder("gzip").decode(bomb, 10)) == 10


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "chunked"])
def test_unsupported_encodings_are_refused(coding):
    with pytest.raises(UnsupportedContent, match="unsupported Content-Encoding"):
        BodyDecoder(coding)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_garbage_is_corrupt(coding):
    with pytest.raises(CorruptContent, match=f"the {coding} body cannot be decoded"):
        decode_all(BodyDecoder(coding), b"definitely not compressed data" * 10)
