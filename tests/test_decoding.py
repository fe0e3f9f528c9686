"""Bounded Content-Encoding decoding of the classifier's copy of a body."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given
from hypothesis import strategies as st

from retry_transport._decoding import decoder_for

BODY = b'{"error": {"message": "This model\'s maximum context length is 8192 tokens"}}'


def decode_all(encoding: str, data: bytes, limit: int = 65536, chunk: int = 7) -> bytes:
    decoder = decoder_for({"content-encoding": encoding}, limit)
    assert decoder is not None
    return b"".join(decoder.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))


def test_identity_needs_no_decoder() -> None:
    assert decoder_for({}, 100) is None
    assert decoder_for({"content-encoding": "identity"}, 100) is None


def test_gzip_is_decoded_across_chunks() -> None:
    assert decode_all("gzip", gzip.compress(BODY)) == BODY


def test_zlib_wrapped_deflate_is_decoded() -> None:
    assert decode_all("deflate", zlib.compress(BODY)) == BODY


def test_raw_deflate_is_decoded() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = raw.compress(BODY) + raw.flush()
    assert decode_all("deflate", data, chunk=1000) == BODY


def test_a_decompression_bomb_is_decoded_only_up_to_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    assert len(decode_all("gzip", bomb, limit=4096, chunk=65536)) == 4096


def test_unknown_or_stacked_encodings_decode_to_nothing() -> None:
    assert decode_all("br", b"\x1b\x03\x00") == b""
    assert decode_all("gzip, br", gzip.compress(BODY)) == b""


def test_corrupt_data_stops_decoding_without_raising() -> None:
    assert decode_all("gzip", b"not gzip at all" * 10) == b""


@given(st.binary(max_size=2000), st.sampled_from(["gzip", "deflate", "x-gzip", "zstd"]))
def test_decoding_never_raises_on_arbitrary_bytes(data: bytes, encoding: str) -> None:
    assert len(decode_all(encoding, data, limit=512)) <= 512
