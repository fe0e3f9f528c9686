"""`Received`: one request as a test double saw it, the same shape for every double."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Received"]


@dataclass(frozen=True, slots=True)
class Received:
    """One request as a `ScriptedTransport` or the loopback `Upstream` received it.

    ``url`` is the full URL, query included (for the upstream: ``http://127.0.0.1:PORT``
    followed by the request target, or the target itself when the client sent an absolute
    one). Header names are lower-case, in the order sent. ``content`` is the whole request body
    (a chunked body reassembled). ``at`` is the ``time.monotonic()`` reading when the request
    had been read in full, and ``connection`` numbers the TCP connection that carried it (1 for
    the upstream's first accepted connection; 0 when there was no connection).
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    content: bytes
    at: float = 0.0
    connection: int = 0

    @property
    def path(self) -> str:
        """The URL without scheme and authority: the path and its query (``/v1/x?y=1``)."""
        parts = urlsplit(self.url)
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> object:
        """The body decoded as JSON."""
        return _json.loads(self.content)
