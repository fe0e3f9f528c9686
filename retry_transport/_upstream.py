"""A scriptable HTTP/1.1 server on 127.0.0.1 that plays a flaky LLM provider.

`Upstream` runs in background threads (one to accept, one per connection), so sync, asyncio
and trio code can all talk to it. Each request path takes its next `Reply` from a script; a
`Reply` can also misbehave on purpose (drop the connection, hang, reset). Unscripted requests
to the OpenAI chat completions, OpenAI Responses and Anthropic messages paths get a canned,
SDK-parseable success. Standard library only: the demo command, the test suite, the examples
and the benchmarks all use it as their real loopback upstream.
"""

from __future__ import annotations

import contextlib
import http
import json as _json
import math
import re
import selectors
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, TypeAlias, get_args
from urllib.parse import urlsplit

__all__ = [
    "Fault",
    "Received",
    "Reply",
    "Upstream",
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream_error",
    "openai_chat",
    "openai_chat_stream_error",
    "openai_error",
    "openai_responses",
    "openai_responses_failed",
]

Fault: TypeAlias = Literal["drop", "drop_mid_headers", "drop_mid_body", "hang", "reset"]
"""The ways a `Reply` can misbehave on purpose (see `Reply.fault`)."""

_FAULTS = frozenset(get_args(Fault))
_MAX_HEAD = 65536
_RECV = 65536
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REASONS = {529: "Site Overloaded"}
_NO_BODY_STATUSES = frozenset({204, 304})
_SSE = "text/event-stream; charset=utf-8"


# ---------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response, or one scripted misbehaviour.

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
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
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
        return cls(status, _with_default(headers, "content-type", "application/json"), body)

    @classmethod
    def sse(
        cls,
        events: Iterable[tuple[str | None, str]],
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        chunk_delay: float = 0.0,
        content_type: str = "text/event-stream",
    ) -> Reply:
        """A server-sent-event stream: one HTTP chunk per ``(event name or None, data)``."""
        chunks = tuple(_sse_event(name, data) for name, data in events)
        headers = _with_default(headers, "content-type", content_type)
        headers = _with_default(headers, "cache-control", "no-cache")
        return cls(status, headers, chunks=chunks, chunk_delay=chunk_delay)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the upstream read it.

    ``path`` is the request target with its query. Header names are lower-case, in the order
    sent. ``body`` is the decoded body (a chunked body is reassembled). ``at`` is the
    ``time.monotonic()`` reading when the request had been read in full, and ``connection``
    numbers the connection that carried it (1 for the first connection accepted).
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    at: float
    connection: int = 0

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> object:
        """The body decoded as JSON."""
        return _json.loads(self.body)


# ---------------------------------------------------------------------------------------------
# The server


class _Script:
    """The replies queued for one path; the last one repeats once it has been served."""

    __slots__ = ("replies", "served_last")

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.served_last = False

    def add(self, replies: Iterable[Reply]) -> None:
        if self.served_last:
            # The repeating reply has had its turn: new replies take over from it.
            self.replies.clear()
            self.served_last = False
        self.replies.extend(replies)

    def take(self) -> Reply:
        if len(self.replies) > 1:
            return self.replies.popleft()
        self.served_last = True
        return self.replies[0]


class Upstream:
    """A scriptable HTTP/1.1 server on 127.0.0.1, run in background threads.

    Use it as a context manager (``with Upstream() as up:``) or call `start` and `stop`.
    `stop` closes every open connection and joins every thread. Connections are kept alive
    between requests unless the client asks otherwise; request bodies may be sent with a
    ``Content-Length`` or chunked.

    Requests to a path take the replies given to `script` in turn. An unscripted path is
    answered by the ``"*"`` script if there is one, else with a canned success: for ``POST``
    to ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/messages`` the matching LLM reply
    (streamed if the request body has ``"stream": true``), for anything else
    ``200 {"ok": true}``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._acceptor: threading.Thread | None = None
        self._open: dict[socket.socket, threading.Thread] = {}
        self._accepted = 0
        self._scripts: dict[str, _Script] = {}
        self._received: list[Received] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Upstream:
        """Bind (port 0: a free port), listen and start accepting; returns self."""
        if self._listener is not None:
            raise RuntimeError("Upstream is already running")
        self._stopping = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(1024)
            listener.setblocking(False)
            wake = socket.socketpair()
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._wake = wake
        self._port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener, wake[0]), name="upstream-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and join every thread.

        Replies waiting in a delay or a hang are cut short. Scripts and records are kept.
        """
        listener, wake, acceptor = self._listener, self._wake, self._acceptor
        if listener is None or wake is None or acceptor is None:
            return
        self._stopping.set()
        wake[1].send(b"x")
        acceptor.join()
        listener.close()
        wake[0].close()
        wake[1].close()
        self._listener = self._wake = self._acceptor = None
        with self._lock:
            threads = list(self._open.values())
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=10.0)
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            raise RuntimeError(f"Upstream connection threads did not stop: {stuck}")

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting and records ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the OS once started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``, with no trailing slash."""
        if self._listener is None:
            raise RuntimeError("Upstream is not running: call start() or use it in a with block")
        return f"http://{self._host}:{self._port}"

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted so far (never reset)."""
        with self._lock:
            return self._accepted

    def script(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for requests to ``path`` (without query; ``"*"``: any other path).

        Each request takes the next reply; the last one then repeats for every later request,
        so ``script(p, Reply(503), Reply(503), Reply(200))`` serves 503, 503, then 200 forever.
        Calling it again for the same path appends to the queue, or replaces the last reply
        if that one has already been served.
        """
        if path != "*" and (not path.startswith("/") or "?" in path):
            raise ValueError(f"path must start with '/' and have no query, or be '*': {path!r}")
        if not replies:
            raise ValueError("script needs at least one reply")
        if not all(isinstance(reply, Reply) for reply in replies):
            raise ValueError("replies must be Reply instances")
        with self._lock:
            self._scripts.setdefault(path, _Script()).add(replies)

    def received(self, path: str | None = None) -> list[Received]:
        """The requests read so far, oldest first; only those to ``path`` (no query) if given."""
        with self._lock:
            records = list(self._received)
        if path is None:
            return records
        return [record for record in records if _route(record.path) == path]

    def wait_received(self, count: int, path: str | None = None, *, timeout: float = 5.0) -> None:
        """Block until at least ``count`` requests (to ``path``, if given) have been read.

        For a test that must act while a reply is still pending (a hang, a delay). Raises
        `TimeoutError` after ``timeout`` seconds.
        """

        def enough() -> bool:
            if path is None:
                return len(self._received) >= count
            return sum(_route(record.path) == path for record in self._received) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                raise TimeoutError(f"{count} request(s) to {path or 'any path'} not received")

    def count(self, path: str | None = None) -> int:
        """How many requests were read so far (to ``path`` only, if given)."""
        return len(self.received(path))

    def reset(self) -> None:
        """Forget every script and every recorded request."""
        with self._lock:
            self._scripts.clear()
            self._received.clear()

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        self._accepted += 1
                        thread = threading.Thread(
                            target=self._serve,
                            args=(conn, self._accepted),
                            name=f"upstream-conn-{self._accepted}",
                            daemon=True,
                        )
                        self._open[conn] = thread
                    thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = _Reader(conn)
        try:
            while not self._stopping.is_set():
                try:
                    request = _read_request(reader, conn)
                except _BadRequest as bad:
                    conn.sendall(_error_head(bad.status))
                    _lingering_close(conn)
                    return
                if request is None:
                    return
                method, target, headers, body, wants_close = request
                record = Received(method, target, headers, body, time.monotonic(), number)
                with self._lock:
                    self._received.append(record)
                    self._changed.notify_all()
                    reply = self._reply_for(record)
                if not self._respond(conn, method, reply, wants_close):
                    return
        except OSError:
            # The client went away, or stop() shut the socket down under us.
            return
        finally:
            with self._lock:
                # Closed under the lock so stop() never shuts down a reused descriptor.
                self._open.pop(conn, None)
                conn.close()

    def _reply_for(self, record: Received) -> Reply:
        route = _route(record.path)
        script = self._scripts.get(route) or self._scripts.get("*")
        if script is not None:
            return script.take()
        return _canned(record.method, route, record.body)

    def _respond(self, conn: socket.socket, method: str, reply: Reply, wants_close: bool) -> bool:
        """Send ``reply``; whether the connection may serve another request."""
        if reply.delay and self._stopping.wait(reply.delay):
            return False
        fault = reply.fault
        if fault == "drop":
            return False
        if fault == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if fault == "hang":
            while conn.recv(_RECV):
                pass
            return False

        names = {name.lower() for name, _ in reply.headers}
        close = wants_close or any(
            name.lower() == "connection" and "close" in value.lower()
            for name, value in reply.headers
        )
        extra: list[tuple[str, str]] = []
        if "content-length" not in names and "transfer-encoding" not in names:
            if reply.chunks is not None:
                extra.append(("transfer-encoding", "chunked"))
            elif reply.status not in _NO_BODY_STATUSES:
                extra.append(("content-length", str(len(reply.body))))
        if wants_close and "connection" not in names:
            extra.append(("connection", "close"))
        head = _status_head(reply.status, (*reply.headers, *extra))

        if fault == "drop_mid_headers":
            line_end = head.index(b"\r\n") + 2
            next_end = head.index(b"\r\n", line_end)
            conn.sendall(head[: line_end + (next_end - line_end) // 2])
            return False
        no_body = method == "HEAD" or reply.status in _NO_BODY_STATUSES
        if reply.chunks is None:
            body = b"" if no_body else reply.body
            if fault == "drop_mid_body":
                conn.sendall(head + body[: len(body) // 2])
                return False
            conn.sendall(head + body)
            return not close
        conn.sendall(head)
        if no_body:
            return not close
        items = reply.chunks() if callable(reply.chunks) else reply.chunks
        if fault == "drop_mid_body":
            listed = list(items)
            items = listed[: len(listed) // 2]
        first = True
        for item in items:
            if not item:
                continue
            if not first and reply.chunk_delay and self._stopping.wait(reply.chunk_delay):
                return False
            first = False
            conn.sendall(b"%x\r\n" % len(item) + item + b"\r\n")
        if fault == "drop_mid_body":
            return False
        conn.sendall(b"0\r\n\r\n")
        return not close


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 wire format


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


def _route(target: str) -> str:
    """The path a request target is scripted under: no query, no scheme or authority."""
    if target.startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    return target.split("?", 1)[0]


def _with_default(
    headers: Iterable[tuple[str, str]], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    headers = tuple(headers)
    if any(key.lower() == name for key, _ in headers):
        return headers
    return ((name, value), *headers)


def _sse_event(name: str | None, data: str) -> bytes:
    lines = [] if name is None else [f"event: {name}"]
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


# ---------------------------------------------------------------------------------------------
# Canned LLM provider replies


def _dumps(obj: object) -> str:
    return _json.dumps(obj, separators=(",", ":"))


def _new_id(prefix: str, size: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:size]


def _pieces(text: str) -> list[str]:
    """``text`` split the way a model streams it: word by word, spaces kept."""
    pieces: list[str] = re.findall(r"\s*\S+", text)
    tail = text[sum(map(len, pieces)) :]
    if tail:
        pieces[-1:] = [pieces[-1] + tail] if pieces else [tail]
    return pieces


def _openai_headers() -> tuple[tuple[str, str], ...]:
    return (("x-request-id", _new_id("req_", 32)), ("openai-processing-ms", "42"))


def _anthropic_headers() -> tuple[tuple[str, str], ...]:
    return (("request-id", _new_id("req_011", 21)),)


def openai_chat(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful OpenAI ``POST /v1/chat/completions`` answer saying ``text``.

    Streamed: a role chunk, one chunk per word, a ``finish_reason`` chunk, ``data: [DONE]``.
    """
    cid, created = _new_id("chatcmpl-", 29), int(time.time())
    words = _pieces(text)
    if not stream:
        return Reply.json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _chat_usage(len(words)),
                "service_tier": "default",
                "system_fingerprint": "fp_upstream",
            },
            _openai_headers(),
        )

    return Reply.sse(
        _chat_events(cid, created, model, words),
        headers=_openai_headers(),
        chunk_delay=chunk_delay,
        content_type=_SSE,
    )


def _chat_events(
    cid: str, created: int, model: str, words: list[str]
) -> list[tuple[str | None, str]]:
    def chunk(delta: dict[str, object], finish: str | None) -> tuple[str | None, str]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_upstream",
            "choices": [choice],
        }
        return None, _dumps(data)

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events.extend(chunk({"content": word}, None) for word in words)
    events.append(chunk({}, "stop"))
    events.append((None, "[DONE]"))
    return events


def _chat_usage(completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": 9,
        "completion_tokens": completion_tokens,
        "total_tokens": 9 + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chat_stream_error(
    after: Literal["nothing", "role", "first_delta"] = "nothing",
    *,
    message: str = "Provider returned error",
    code: int | str = 502,
    model: str = "gpt-4o-mini",
) -> Reply:
    """A 200 chat completions stream that fails in band, as OpenAI-compatible routers do.

    A bare ``data: {"error": {"message": ..., "code": ...}}`` event comes first, after the
    role chunk, or after the first content chunk; the stream then ends without ``[DONE]``.
    """
    events = _chat_events(_new_id("chatcmpl-", 29), int(time.time()), model, ["hello", " there"])
    events = events[: {"nothing": 0, "role": 1, "first_delta": 2}[after]]
    events.append((None, _dumps({"error": {"message": message, "code": code}})))
    return Reply.sse(events, headers=_openai_headers(), content_type=_SSE)


def _response_object(
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, object]],
    usage: dict[str, object] | None,
    error: dict[str, object] | None = None,
) -> dict[str, object]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _responses_usage(output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9 + output_tokens,
    }


def openai_responses(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful OpenAI ``POST /v1/responses`` answer saying ``text``.

    Streamed: ``response.created``, ``response.in_progress``, the output item and content part
    opening, one ``response.output_text.delta`` per word, their closing events and
    ``response.completed``, each with its ``sequence_number``.
    """
    rid, mid, created = _new_id("resp_", 48), _new_id("msg_", 48), int(time.time())
    words = _pieces(text)
    part: dict[str, object] = {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": text,
    }
    item: dict[str, object] = {
        "id": mid,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    done = _response_object(rid, created, model, "completed", [item], _responses_usage(len(words)))
    if not stream:
        return Reply.json(200, done, _openai_headers())

    pending = _response_object(rid, created, model, "in_progress", [], None)
    where = {"item_id": mid, "output_index": 0, "content_index": 0}
    bodies: list[dict[str, object]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
    ]
    bodies.extend(
        {"type": "response.output_text.delta", **where, "delta": word, "logprobs": []}
        for word in words
    )
    bodies += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return Reply.sse(
        _numbered(bodies), headers=_openai_headers(), chunk_delay=chunk_delay, content_type=_SSE
    )


def _numbered(bodies: list[dict[str, object]]) -> list[tuple[str | None, str]]:
    return [
        (str(body["type"]), _dumps({**body, "sequence_number": number}))
        for number, body in enumerate(bodies)
    ]


def openai_responses_failed(
    message: str = "An error occurred while processing your request.",
    *,
    code: str = "server_error",
    model: str = "gpt-4o-mini",
) -> Reply:
    """A 200 Responses stream that fails before its first output delta.

    ``response.created`` and ``response.in_progress``, then ``response.failed`` whose
    response has ``status: "failed"`` and ``error: {"code": code, "message": message}``.
    """
    rid, created = _new_id("resp_", 48), int(time.time())
    pending = _response_object(rid, created, model, "in_progress", [], None)
    error: dict[str, object] = {"code": code, "message": message}
    failed = _response_object(rid, created, model, "failed", [], None, error)
    bodies: list[dict[str, object]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.failed", "response": failed},
    ]
    return Reply.sse(_numbered(bodies), headers=_openai_headers(), content_type=_SSE)


def openai_error(
    status: int,
    message: str,
    type: str = "server_error",
    code: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """An OpenAI error: ``{"error": {"message", "type", "param": null, "code"}}``."""
    error = {"message": message, "type": type, "param": None, "code": code}
    return Reply.json(status, {"error": error}, (*_openai_headers(), *headers))


def _anthropic_usage(output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_events(
    text: str, model: str
) -> tuple[list[tuple[str, dict[str, object]]], list[tuple[str, dict[str, object]]]]:
    """An Anthropic stream saying ``text``, as (preamble events, content and closing events)."""
    words = _pieces(text)
    message: dict[str, object] = {
        "id": _new_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(1),
    }
    preamble: list[tuple[str, dict[str, object]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    rest: list[tuple[str, dict[str, object]]] = [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
        for word in words
    ]
    rest += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return preamble, rest


def anthropic_message(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "claude-sonnet-5",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful Anthropic ``POST /v1/messages`` answer saying ``text``.

    Streamed: ``message_start``, ``content_block_start``, ``ping``, one
    ``content_block_delta`` per word, ``content_block_stop``, ``message_delta``,
    ``message_stop``.
    """
    if not stream:
        words = _pieces(text)
        return Reply.json(
            200,
            {
                "id": _new_id("msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _anthropic_usage(len(words)),
            },
            _anthropic_headers(),
        )
    preamble, rest = _anthropic_events(text, model)
    return Reply.sse(
        [(name, _dumps(data)) for name, data in (*preamble, *rest)],
        headers=_anthropic_headers(),
        chunk_delay=chunk_delay,
        content_type=_SSE,
    )


def anthropic_error(
    status: int,
    type: str,
    message: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """An Anthropic error: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    own = _anthropic_headers()
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": own[0][1]}
    return Reply.json(status, body, (*own, *headers))


def anthropic_stream_error(
    after: Literal["nothing", "preamble", "first_delta"] = "nothing",
    *,
    error_type: str = "overloaded_error",
    message: str = "Overloaded",
    model: str = "claude-sonnet-5",
) -> Reply:
    """A 200 Anthropic stream whose ``event: error`` ends it.

    The error (``{"type": "error", "error": {"type": error_type, "message": message}}``)
    comes first (``"nothing"``), after ``message_start`` and ``ping`` (``"preamble"``), or
    after ``message_start``, ``content_block_start``, ``ping`` and a first text delta
    (``"first_delta"``).
    """
    preamble, rest = _anthropic_events("hello there", model)
    if after == "nothing":
        events: list[tuple[str, dict[str, object]]] = []
    elif after == "preamble":
        events = [preamble[0], preamble[2]]
    else:
        events = [*preamble, rest[0]]
    events.append(("error", {"type": "error", "error": {"type": error_type, "message": message}}))
    return Reply.sse(
        [(name, _dumps(data)) for name, data in events],
        headers=_anthropic_headers(),
        content_type=_SSE,
    )


class _CannedSuccess(Protocol):
    def __call__(self, text: str = ..., *, stream: bool = ..., model: str = ...) -> Reply: ...


def _canned(method: str, route: str, body: bytes) -> Reply:
    """The reply to an unscripted request."""
    make = _LLM_DEFAULTS.get(route) if method == "POST" else None
    if make is None:
        return Reply.json(200, {"ok": True})
    try:
        request = _json.loads(body)
    except ValueError:
        request = None
    options: dict[str, object] = request if isinstance(request, dict) else {}
    model = options.get("model")
    stream = options.get("stream") is True
    if isinstance(model, str) and model:
        return make("hello", stream=stream, model=model)
    return make("hello", stream=stream)


_LLM_DEFAULTS: dict[str, _CannedSuccess] = {
    "/v1/chat/completions": openai_chat,
    "/v1/responses": openai_responses,
    "/v1/messages": anthropic_message,
}
