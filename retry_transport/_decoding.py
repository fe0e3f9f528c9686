"""Content-Encoding for the classifier's eyes only.

httpx asks for compressed bodies by default, and the transport peeks at the raw stream, so an
error body or an event stream may arrive gzip- or deflate-encoded. The bytes handed back to the
caller stay exactly as they came; only the copy the classifier and the stream scanner read is
decoded here, and never more than ``limit`` bytes of it (a small body may decode to a huge one).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

__all__ = ["Decoder", "decoder_for"]

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


class Decoder:
    """Incremental, bounded decoding of one body: `feed` raw chunks, get decoded bytes back,
    at most ``limit`` in all. A body it cannot decode (an unknown or stacked encoding, corrupt
    data) decodes to nothing more: classification then rests on the status and headers."""

    __slots__ = ("_fallback", "_left", "_started", "_zlib")

    def __init__(self, wbits: int | None, limit: int, fallback: int | None = None) -> None:
        self._zlib = None if wbits is None else zlib.decompressobj(wbits)
        self._fallback = fallback
        self._started = False
        self._left = limit

    @property
    def decodable(self) -> bool:
        """False once the body is known not to be decodable (unknown encoding, corrupt data)."""
        return self._zlib is not None

    def feed(self, chunk: bytes) -> bytes:
        """The decoded bytes that ``chunk`` adds, within the limit."""
        if self._zlib is None or self._left <= 0 or not chunk:
            return b""
        first, self._started = not self._started, True
        try:
            data = self._zlib.decompress(chunk, self._left)
        except zlib.error:
            if not (first and self._fallback is not None):
                self._zlib = None
                return b""
            # "deflate" is zlib-wrapped by the RFC, but some servers send it raw.
            self._zlib = zlib.decompressobj(self._fallback)
            self._fallback = None
            self._started = False
            return self.feed(chunk)
        self._left -= len(data)
        return data


def decoder_for(headers: Mapping[str, str], limit: int) -> Decoder | None:
    """The decoder a response's ``content-encoding`` calls for; ``None`` for identity."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return Decoder(_GZIP, limit)
    if encoding == "deflate":
        return Decoder(_ZLIB, limit, fallback=_RAW_DEFLATE)
    return Decoder(None, limit)
