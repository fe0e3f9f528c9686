"""The HTTP/1.1 wire format the upstream speaks: scripted replies and how they are framed.

`Reply` is one scripted response (or one deliberate misbehaviour, a `Fault`); `sse_event` and
`sse_comment` encode server-sent events the way providers send them. The request reader and the
status-line writer used by `retry_transport.testing.upstream.server` live here too.
"""

from __future__ import annotations

import http
import json as _json
import math
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

__all__ = ["Fault", "Newline", "Reply", "sse_comment", "sse_event"]

Fault: TypeAlias = Literal["drop", "drop_mid_headers", "drop_mid_body", "hang", "reset", "stall"]
"""The ways a `Reply` can misbehave on purpose (see `Reply.fault`)."""

_FAULTS = frozenset(get_args(Fault))
_MAX_HEAD = 65536
_RECV = 65536
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REASONS = {529: "Site Overloaded"}
_NO_BODY_STATUSES = frozenset({204, 304})

Newline: TypeAlias = Literal["\n", "\r\n"]
"""The line ending of a server-sent-event stream (both are valid SSE)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response, or one scripted misbehaviour.

    The fields come in the order of `retry_transport.testing.Step`'s: ``Reply(503, b"busy",
    (("retry-after", "1"),))``. ``headers`` are (name, value) pairs, sent in order.
    ``body`` is sent with a ``Content-Length``. If ``chunks`` is set instead, the reply is sent
    with ``Transfer-Encoding: chunked``, one HTTP chunk per item, each flushed on its own
    (empty items are skipped). ``chunks`` may be a callable returning the iterable, called
    afresh on every use, so a lazy generator can be served repeatedly and with flat memory; a
    plain iterator is consumed by its first use. A ``content-length`` or ``transfer-encoding``
    in ``headers`` replaces the framing header the server would add.

    ``delay`` seconds pass before the status line, ``chunk_delay`` seconds between two chunks.

    ``fault``:

    - ``"drop"``: close the connection after reading the request, before any response byte.
    - ``"drop_mid_headers"``: send the status line and half of the first header line, close.
    - ``"drop_mid_body"``: send the headers (announcing the full body) and the first half of
      the body (of ``chunks``: the first half of the items, which are then read eagerly, and
      no terminating chunk), then close.
    - ``"hang"``: read the request, then send nothing until the server stops or the client
      closes the connection.
    - ``"reset"``: read the request, then close with ``SO_LINGER`` 0, so the client gets a TCP
      RST.
    - ``"stall"``: send the status line, the headers and every item of ``chunks`` (of a
      ``body``: none of it), then nothing more, no terminating chunk either, until the server
      stops or the client closes the connection. `Upstream.wait_stalled` tells a test when the
      server has gone silent, so no test needs to wait for the time a stall lasts.
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    chunks: Iterable[bytes] | Callable[[], Iterable[bytes]] | None = None
    chunk_delay: float = 0.0
    delay: float = 0.0
    fault: Fault | None = None

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 999:
            raise ValueError(f"status must be a final status code (200-999), got {self.status}")
        headers = tuple((str(name), str(value)) for name, value in self.headers)
        for name, value in headers:
            if not _TOKEN.match(name) or "\r" in value or "\n" in value:
                raise ValueError(f"headers: invalid header {name!r}: {value!r}")
        object.__setattr__(self, "headers", headers)
        if not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes, got {type(self.body).__name__}")
        if self.body and self.chunks is not None:
            raise ValueError("body and chunks cannot both be set")
        if isinstance(self.chunks, list):
            object.__setattr__(self, "chunks", tuple(self.chunks))
        for name in ("delay", "chunk_delay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.fault is not None and self.fault not in _FAULTS:
            raise ValueError(f"fault must be one of {sorted(_FAULTS)} or None, got {self.fault!r}")

    @classmethod
    def json(cls, status: int, obj: object, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        """A reply whose body is ``obj`` as JSON, with ``content-type: application/json``."""
        body = _json.dumps(obj, separators=(",", ":")).encode()
        return cls(status, body, _with_default(headers, "content-type", "application/json"))

    @classmethod
    def sse(
        cls,
        events: Iterable[tuple[str | None, object]],
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        chunk_delay: float = 0.0,
        content_type: str = "text/event-stream",
        newline: Newline = "\n",
    ) -> Reply:
        """A server-sent-event stream: one HTTP chunk per ``(event name or None, data)``.

        Data that is not a ``str`` is sent as compact JSON; lines end with ``newline``.
        """
        chunks = tuple(sse_event(name, data, newline=newline) for name, data in events)
        headers = _with_default(headers, "content-type", content_type)
        headers = _with_default(headers, "cache-control", "no-cache")
        return cls(status, headers=headers, chunks=chunks, chunk_delay=chunk_delay)


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _ClientGone(ConnectionError):
    """The client closed the connection in the middle of a request."""


class _Reader:
    """Buffered reads from a blocking socket."""

    __slots__ = ("_buf", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV)
        self._buf += data
        return bool(data)

    def head(self) -> bytes | None:
        """The request line and headers (without the blank line); None at a clean EOF."""
        while True:
            while self._buf[:2] == b"\r\n":  # stray empty lines between requests
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end > _MAX_HEAD:
                raise _BadRequest(431)
            if end >= 0:
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                return head
            if len(self._buf) > _MAX_HEAD:
                raise _BadRequest(431)
            if not self._fill():
                if self._buf:
                    raise _ClientGone
                return None

    def line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            if len(self._buf) > _MAX_HEAD:
                raise _BadRequest(400)
            if not self._fill():
                raise _ClientGone

    def exact(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill():
                raise _ClientGone
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data


_Request: TypeAlias = tuple[str, str, tuple[tuple[str, str], ...], bytes, bool]


def _read_request(reader: _Reader, conn: socket.socket) -> _Request | None:
    """(method, target, headers, body, client wants the connection closed), or None at EOF."""
    head = reader.head()
    if head is None:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not _TOKEN.match(parts[0]):
        raise _BadRequest(400)
    method, target, version = parts
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise _BadRequest(400)
        headers.append((name.lower(), value.strip(" \t")))
    fields: dict[str, list[str]] = {}
    for name, value in headers:
        fields.setdefault(name, []).append(value)

    connection = ",".join(fields.get("connection", [])).lower()
    wants_close = "close" in connection or (
        version == "HTTP/1.0" and "keep-alive" not in connection
    )
    codings = [c.strip().lower() for c in ",".join(fields.get("transfer-encoding", [])).split(",")]
    lengths = set(fields.get("content-length", []))
    chunked = codings[-1] == "chunked"
    if (codings != [""] and not chunked) or len(lengths) > 1:
        raise _BadRequest(400)
    size = 0
    if not chunked and lengths:
        (length,) = lengths
        if not length.isdigit():
            raise _BadRequest(400)
        size = int(length)
    if (chunked or size) and "100-continue" in ",".join(fields.get("expect", [])).lower():
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = _read_chunked(reader) if chunked else reader.exact(size)
    return method, target, tuple(headers), body, wants_close


def _read_chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_field = reader.line().split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _BadRequest(400) from None
        if size == 0:
            while reader.line():  # trailers, up to the empty line
                pass
            return b"".join(parts)
        parts.append(reader.exact(size))
        if reader.exact(2) != b"\r\n":
            raise _BadRequest(400)


def _lingering_close(conn: socket.socket) -> None:
    """Half-close, then drain what the client still sends, so closing sends no RST."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(1.0)
    while conn.recv(_RECV):
        pass


def _status_head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = _REASONS.get(status, "Unknown")
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_head(status: int) -> bytes:
    return _status_head(status, (("content-length", "0"), ("connection", "close")))


def _route(path: str) -> str:
    """The path a request is scripted under: its `Received.path` without the query."""
    return path.split("?", 1)[0]


def _with_default(
    headers: Iterable[tuple[str, str]], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    headers = tuple(headers)
    if any(key.lower() == name for key, _ in headers):
        return headers
    return ((name, value), *headers)


def sse_event(name: str | None, data: object, *, newline: Newline = "\n") -> bytes:
    """One server-sent event: an ``event:`` line when ``name`` is set, one ``data:`` line per
    line of ``data`` (compact JSON when it is not a ``str``), and the blank line that ends it."""
    text = data if isinstance(data, str) else _json.dumps(data, separators=(",", ":"))
    lines = [] if name is None else [f"event: {name}"]
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return (newline.join(lines) + newline * 2).encode()


def sse_comment(text: str = "keep-alive", *, newline: Newline = "\n") -> bytes:
    """An SSE comment (``: text``, then the blank line), as providers send to keep a stream
    alive; clients ignore it."""
    return f": {text}{newline}{newline}".encode()
