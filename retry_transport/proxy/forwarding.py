"""Forwarding: one `Forwarder` per upstream sends each request on through its `RetryTransport`.

Each upstream has one `RetryTransport` and one limiter, shared by every client of the
sidecar, so a 429 seen by one client holds back the others.

Paths stay within the upstream's mount: ``/<name>/v1/../x`` is sent as ``<base>/x``, and a
path whose dot segments would climb out of the mount, or that hides one behind
percent-encoding, is refused with a 400. Every forwarded request and response gains a ``Via``
entry naming this sidecar (RFC 9110 7.6.3), by which `screening.Screen` recognises a loop.

Streaming, both ways: a request body is read up to ``replay_limit`` bytes and, if it ended
within that, sent as bytes the transport can replay on a retry; a larger (or larger announced)
body is streamed to the upstream as it arrives and sent once. A response is streamed back as
its bytes arrive (the transport holds only an event stream's preamble). The client is watched
throughout: when it goes away, the upstream request is cancelled and its connection closed at
once, whether it was waiting for headers, sleeping before a retry or streaming. Served by the
sidecar's own server, a request whose body is all in when it starts (the common case) is
watched through its connection (`ClientLink`, which says when the client goes away); any
other request has a task that reads its body and waits for the client's ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import quote, unquote_to_bytes

import httpx
from starlette.types import Message, Receive, Scope, Send

from .._async import RetryTransport
from .._errors import DeadlineExceeded
from .._limiter import Limiter
from .._replay_async import AsyncReplay
from .metrics import UpstreamMetrics
from .pool import make_pool
from .replies import path_for_log, printable, send_error
from .screening import confine
from .settings import ProxySettings, UpstreamSpec

__all__ = ["LINK", "ClientLink", "Forwarder"]

logger = logging.getLogger("retry_transport.proxy")

# Hop-by-hop headers (RFC 9110 7.6.1), never forwarded; so are those named in Connection and
# every Proxy-* header. Host is rewritten (the upstream's own); Expect was answered by us.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_ONLY = frozenset({b"host", b"expect"})


_DROPPED_REQUEST = _HOP_BY_HOP | _REQUEST_ONLY


def _named(value: bytes, named: frozenset[bytes]) -> frozenset[bytes]:
    """``named`` and the header names a ``Connection`` header's ``value`` lists."""
    if value.lower() == b"keep-alive":  # the usual value, itself hop-by-hop: nothing more
        return named
    return named | {token.strip().lower() for token in value.split(b",")}


def _client_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes, bytes]], bytes | None, bool]:
    """The client's end-to-end headers as (name, its lower case, value), in one pass, order
    and case kept (no hop-by-hop one, none that ``Connection`` names, no ``Proxy-*``, no
    ``Host`` or ``Expect``); the first ``Content-Length`` the client sent; and whether one is
    among those kept."""
    kept: list[tuple[bytes, bytes, bytes]] = []
    named: frozenset[bytes] = frozenset()
    declared: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in _DROPPED_REQUEST or lower.startswith(b"proxy-"):
            if lower == b"connection":
                named = _named(value, named)
            continue
        if lower == b"content-length" and declared is None:
            declared = value
        kept.append((name, lower, value))
    if named:
        kept = [header for header in kept if header[1] not in named]
        return kept, declared, declared is not None and b"content-length" not in named
    return kept, declared, declared is not None


def _answer_headers(
    headers: Iterable[tuple[bytes, bytes, bytes]], via: bytes
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The upstream's end-to-end response headers (name, value), our ``Via`` last; and whether
    the response is an event stream."""
    kept: list[tuple[bytes, bytes]] = []
    named: frozenset[bytes] = frozenset()
    stream = False
    for name, lower, value in headers:
        if lower in _HOP_BY_HOP or lower.startswith(b"proxy-"):
            if lower == b"connection":
                named = _named(value, named)
            continue
        if lower == b"content-type":
            stream = value.split(b";", 1)[0].strip().lower() == b"text/event-stream"
        kept.append((name, value))
    if named:
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    kept.append((b"via", via))
    return kept, stream


def _headers(listed: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """httpx headers holding ``listed`` (name, its lower case, value) as they are: what
    ``httpx.Headers`` makes of bytes pairs, without its per-header normalising."""
    headers = httpx.Headers()
    headers._list = listed
    return headers


_URLS_KEPT = 256
"""Upstream URLs (of paths without a query) each forwarder keeps, parsed."""

_TALLY = "retry_transport.proxy.tally"
"""The request extension the counting transport notes each send in."""

_TERMINAL_LINES = frozenset(
    {
        b"data: [DONE]",  # OpenAI chat completions and the OpenAI-compatible servers
        b"event: message_stop",  # Anthropic Messages
        b"event: response.completed",  # OpenAI Responses
        b"event: response.incomplete",
        b"event: response.failed",
    }
)
_MAX_LINE = 256
"""Longest partial line kept while looking for a terminal event (they are all short)."""


class _Refused(Exception):
    """A request the forwarder will not send: its status, error type and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class _Exchange:
    """What one forwarded request's two tasks (and its transport) tell each other."""

    status: int | None = None
    """The status sent to the client, once its response has started."""
    attempts: int = 1
    sent: int = 0
    """Body bytes sent to the client."""
    finished: bool = False
    """The response's last byte is being sent: a disconnect now changes nothing."""
    terminal: bool = False
    """The stream's terminal event was sent: a disconnect now is the client being done."""
    ended: Callable[[], bool] | None = None
    """For a stream the retry transport watches for its terminal event (so the forwarder does
    not look for it again): asks whether the bytes passed on ended with it."""
    client_gone: bool = False
    body_stalled: bool = False
    broke: bool = False
    """The upstream's response broke after its headers were sent."""
    sends: int = 0
    """Attempts sent upstream so far (counted by `_CountingTransport`)."""
    cancellable: bool = False
    """The request's task is forwarding it (and may be cancelled by its watcher)."""
    cancelled: bool = False
    """Its watcher cancelled it (the client went away, or its body stalled)."""
    pipe: _Pipe | None = None
    """The body as its watcher hands it on (when one reads it)."""
    watcher: asyncio.Task[None] | None = None
    """The task reading the body on and waiting for the client to go, if there is one."""

    def done(self) -> bool:
        """Whether the stream's terminal event was sent (a client leaving is done with it)."""
        return self.terminal or (self.ended is not None and self.ended())

    def cancel(self, task: asyncio.Task[None]) -> None:
        """End the forwarding in ``task`` (once, and only while it forwards)."""
        if self.cancellable and not self.cancelled:
            self.cancelled = True
            task.cancel()

    def delivered(self, task: asyncio.Task[None]) -> None:
        """The forwarding in ``task`` ended normally: a cancellation `cancel` sent it was
        swallowed below, and no longer counts against the task."""
        # A method, not a line in the caller: after a cancellation thrown into its frame, CPython
        # 3.11 sends coverage no line events for the rest of that frame; a new frame is traced.
        if self.cancelled:
            task.uncancel()


LINK = "retry_transport.link"
"""The scope extension in which the sidecar's server hands on a request's `ClientLink` (as
its ``"link"``)."""


class ClientLink(Protocol):
    """A request's connection, as the server that owns it tells the forwarder: whether the
    request's body is all in (``receive()`` then answers it whole at once), and a callback run
    once if the client goes away before the response is complete."""

    on_disconnect: Callable[[], None] | None

    def body_complete(self) -> bool:
        """Whether the whole body has arrived."""
        ...


def _link(scope: Scope) -> ClientLink | None:
    extension = (scope.get("extensions") or {}).get(LINK)
    return None if extension is None else cast(ClientLink, extension["link"])


def _client_left(exchange: _Exchange, main: asyncio.Task[None]) -> None:
    """The client went away: end the forwarding unless the answer is already complete."""
    if not exchange.finished:
        exchange.client_gone = True
        exchange.cancel(main)


def _body_stalled(exchange: _Exchange, main: asyncio.Task[None]) -> None:
    """The body went silent for ``body_timeout`` seconds: end the forwarding (a 408)."""
    exchange.body_stalled = True
    exchange.cancel(main)


_WATCHERS: set[asyncio.Task[None]] = set()
"""The watchers running (the event loop keeps only weak references to its tasks)."""


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Pipe:
    """A request's body, handed from its watcher (which reads the client) to the task sending
    it on, one chunk at a time: the next is read only once the last was taken, so an upload
    streamed on is read at the pace the upstream takes it."""

    __slots__ = ("_chunk", "_closed", "_ended", "_reader", "_writer")

    def __init__(self) -> None:
        self._chunk: bytes | None = None
        self._ended = False
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None

    async def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` on; return once it was taken, or at once if the body is not wanted."""
        if self._closed:
            return
        self._chunk = chunk
        _wake(self._reader)
        self._writer = asyncio.get_running_loop().create_future()
        try:
            await self._writer
        finally:
            self._writer = None

    def put_last(self, chunk: bytes) -> None:
        """Hand on the body's last chunk, without waiting for it to be taken (a body that
        came in one message, the common case, is handed over in one step)."""
        if not self._closed:
            self._chunk = chunk
        self.end()

    def end(self) -> None:
        """The body is complete (or will never be)."""
        self._ended = True
        _wake(self._reader)

    def close(self) -> None:
        """The body is not wanted any more."""
        self._closed = True
        self._chunk = None
        _wake(self._writer)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks as they are handed on."""
        while True:
            chunk = self._chunk
            if chunk is not None:
                self._chunk = None
                _wake(self._writer)
                yield chunk
            elif self._ended or self._closed:
                return
            else:
                self._reader = asyncio.get_running_loop().create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None


class _CountingTransport(httpx.AsyncBaseTransport):
    """The upstream's connection pool, counting each attempt in the request's `_Exchange`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange: _Exchange = request.extensions[_TALLY]
        exchange.sends += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TerminalWatch:
    """Notices an event stream's terminal event (``data: [DONE]``, ``event: message_stop``,
    ...) among the chunks passed on, whatever their boundaries."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = b""

    def seen_in(self, chunk: bytes) -> bool:
        """Whether ``chunk`` completes a terminal event's line."""
        lines = (self._partial + chunk).splitlines(keepends=True)
        last = lines[-1] if lines else b""
        complete = lines if last.endswith((b"\n", b"\r")) else lines[:-1]
        self._partial = b"" if complete is lines else last[-_MAX_LINE:]
        return any(line.rstrip(b"\r\n") in _TERMINAL_LINES for line in complete)


class Forwarder:
    """Forwards requests to one upstream through its `RetryTransport`."""

    def __init__(
        self,
        spec: UpstreamSpec,
        settings: ProxySettings,
        metrics: UpstreamMetrics,
        via_token: bytes,
    ) -> None:
        self.spec = spec
        self.label = spec.label
        self.transport: RetryTransport | None = None  # made at startup, in the server's loop
        self.limiter: Limiter | None = None
        self._settings = settings
        self._metrics = metrics
        self._via = b"1.1 " + via_token
        self._base = httpx.URL(spec.url)
        self._netloc = self._base.netloc
        self._base_path = self._base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        self._name = None if spec.name is None else spec.name.encode()
        self._timeouts = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.read_timeout,
        }
        self._urls: dict[bytes, httpx.URL] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, limiter: Limiter) -> RetryTransport:
        """Make the transport (in the server's event loop)."""
        inner = make_pool()
        self.limiter = limiter
        self.transport = RetryTransport(
            _CountingTransport(inner),
            policy=self._settings.policy,
            limiter=limiter,
            hooks=[self._metrics],
        )
        return self.transport

    # -- one request -------------------------------------------------------------------------

    def _target(self, scope: Scope) -> httpx.URL:
        """The upstream URL for the request: its path below the mount, the query as sent.

        Raises:
            _Refused: the path leaves the mount, or cannot be told not to.
        """
        raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
        query: bytes = scope.get("query_string", b"")
        if not query:
            # Parsing a URL is a quarter of the sidecar's own work per request; the paths a
            # client asks for are few (those with a query, which may hold a key, are not kept).
            url = self._urls.get(raw)
            if url is not None:
                return url
        if self._name is None:
            rest = raw
        else:
            first, slash, after = raw[1:].partition(b"/")
            if unquote_to_bytes(first) != self._name:
                # The route matched the decoded path: the name came percent-encoded, with an
                # encoded slash in it, or both. Only the plain name is taken as the mount.
                raise _Refused(
                    400,
                    "invalid_path",
                    f"the path must start with /{self.spec.name}/ as plain text",
                )
            rest = slash + after
        confined = confine(rest)
        if confined is None:
            raise _Refused(
                400,
                "invalid_path",
                "the path leaves the upstream's base path, or hides a dot segment behind "
                "percent-encoding or a backslash",
            )
        target = (self._base_path + confined) or b"/"
        if query:
            target += b"?" + query
        try:
            url = self._base.copy_with(raw_path=target)
        except httpx.InvalidURL as exc:
            raise _Refused(
                400, "invalid_path", f"the path is not a valid URL path: {exc}"
            ) from None
        if not query:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            self._urls[raw] = url
        return url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        exchange = _Exchange()
        main = asyncio.current_task()
        assert main is not None, "a request is served in a task"
        link = _link(scope)
        if link is None:
            self._watch(receive, exchange, main)
        else:  # the connection says when the client goes; the body is read here
            link.on_disconnect = lambda: _client_left(exchange, main)
        exchange.cancellable = True
        try:
            try:
                await self._exchange(scope, receive, send, link, exchange, started)
            except _Refused as refused:
                await self._refuse(scope, send, exchange, refused)
        except asyncio.CancelledError:
            # The watcher's cancellation ends the exchange; anyone else's goes on up.
            if not exchange.cancelled or main.uncancel() > 0:
                raise
        else:
            exchange.delivered(main)
        finally:
            exchange.cancellable = False
            if link is not None:
                link.on_disconnect = None
            if exchange.pipe is not None:
                exchange.pipe.close()
            # Once the answer is complete, uvicorn answers the watcher's receive() with
            # http.disconnect at once: letting it end costs less than cancelling.
            if exchange.watcher is not None and not exchange.finished:
                exchange.watcher.cancel()
        if exchange.body_stalled and exchange.status is None:
            await self._refuse(scope, send, exchange, self._stalled())
        self._summarise(scope, exchange, time.monotonic() - started)

    def _stalled(self) -> _Refused:
        return _Refused(
            408,
            "request_timeout",
            f"the request body stalled for {self._settings.body_timeout:g} s",
        )

    def _watch(self, receive: Receive, exchange: _Exchange, main: asyncio.Task[None]) -> _Pipe:
        """Start the task that reads the (rest of the) body on and watches the client."""
        pipe = exchange.pipe = _Pipe()
        watcher = exchange.watcher = asyncio.get_running_loop().create_task(
            self._watch_client(receive, pipe, exchange, main)
        )
        _WATCHERS.add(watcher)
        watcher.add_done_callback(_WATCHERS.discard)
        return pipe

    def _summarise(self, scope: Scope, exchange: _Exchange, elapsed: float) -> None:
        """The request's one summary log line, and its count."""
        if exchange.client_gone and not exchange.done():
            self._metrics.client_disconnect()
            logger.info(
                "%s %s %s: client went away after %.3fs; upstream request cancelled",
                self.label,
                printable(scope["method"]),
                path_for_log(scope),
                elapsed,
            )
            return
        if exchange.status is None:
            return  # refused: counted, and its own line said so
        self._metrics.request(exchange.status)
        if exchange.broke:
            return  # its own line said so
        # One line per request costs every request its formatting and a write: at INFO only
        # for a request that needed retries, every request at DEBUG.
        level = logging.INFO if exchange.attempts > 1 else logging.DEBUG
        if not logger.isEnabledFor(level):
            return
        logger.log(
            level,
            "%s %s %s -> %d, %d attempt%s, %d bytes in %.3fs",
            self.label,
            printable(scope["method"]),
            path_for_log(scope),
            exchange.status,
            exchange.attempts,
            "" if exchange.attempts == 1 else "s",
            exchange.sent,
            elapsed,
        )

    async def _watch_client(
        self,
        receive: Receive,
        body: _Pipe,
        exchange: _Exchange,
        main: asyncio.Task[None],
    ) -> None:
        """Pass the request body on, then wait for the client to go; cancel if it does early.

        The only reader of ``receive``: uvicorn answers it with ``http.disconnect`` as soon as
        the client's connection closes (or once the response is complete). A body that goes
        silent for ``body_timeout`` seconds ends the exchange (a 408 if no answer started).
        """
        gone = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self._settings.body_timeout):
                        message = await receive()
                except TimeoutError:
                    exchange.body_stalled = True
                    exchange.cancel(main)
                    return
                if message["type"] != "http.request":
                    gone = True
                    break
                chunk: bytes = message.get("body", b"")
                if not message.get("more_body", False):
                    if chunk:
                        body.put_last(chunk)
                    break
                if chunk:
                    await body.put(chunk)  # at once if the body is no longer wanted
        finally:
            body.end()
        if not gone:
            message = await receive()
            gone = message["type"] == "http.disconnect"
        if gone and not exchange.finished:
            exchange.client_gone = True
            exchange.cancel(main)

    async def _read_body(
        self,
        declared: bytes | None,
        receive: Receive,
        link: ClientLink | None,
        exchange: _Exchange,
    ) -> bytes | AsyncIterator[bytes] | None:
        """The whole body as bytes if it fits the replay limit, else a stream of it; None if
        the client went away first. Read from the watcher's pipe, or (with a link) here, with
        the rest of a body over the limit handed to a watcher."""
        limit = self._settings.replay_limit
        parts: list[bytes] = []
        within = declared is None or not declared.isdigit() or int(declared) <= limit
        pipe = exchange.pipe
        if pipe is not None:
            chunks = pipe.chunks()
            if within:
                size = 0
                async for chunk in chunks:
                    parts.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        break
                else:
                    return b"".join(parts)
            return _stream_body(parts, chunks)
        assert link is not None, "a body is piped, or read with its connection's link"
        if within:
            size = 0
            while True:
                message = await self._receive(receive, link, exchange)
                if message["type"] != "http.request":
                    exchange.client_gone = True  # it left before its body was in
                    return None
                data: bytes = message.get("body", b"")
                if data:
                    parts.append(data)
                    size += len(data)
                if not message.get("more_body", False):
                    if size > limit:
                        return _stream_body(parts)
                    return parts[0] if len(parts) == 1 else b"".join(parts)
                if size > limit:
                    break
        main = asyncio.current_task()
        assert main is not None, "a request is served in a task"
        return _stream_body(parts, self._watch(receive, exchange, main).chunks())

    async def _receive(self, receive: Receive, link: ClientLink, exchange: _Exchange) -> Message:
        """The client's next message; a body still arriving has ``body_timeout`` seconds (then
        the exchange ends, answered 408)."""
        timeout = self._settings.body_timeout
        if link.body_complete() or timeout is None:
            return await receive()  # at once, or without a deadline
        main = asyncio.current_task()
        assert main is not None, "a request is served in a task"
        # A bare timer, cheaper than a timeout context per read.
        timer = asyncio.get_running_loop().call_later(timeout, _body_stalled, exchange, main)
        try:
            return await receive()
        finally:
            timer.cancel()

    def _request(
        self,
        method: str,
        url: httpx.URL,
        kept: list[tuple[bytes, bytes, bytes]],
        sized: bool,
        content: bytes | AsyncIterator[bytes],
        exchange: _Exchange,
    ) -> httpx.Request:
        """The request to send upstream: the client's end-to-end headers and our ``Via``.

        A body read whole gets the headers httpx would give it (``Host`` first, then
        ``Content-Length: 0`` for an empty POST, PUT or PATCH without one; the body's length
        last, unless given), built without httpx re-normalising each one.
        """
        extensions = {"timeout": self._timeouts, _TALLY: exchange}
        kept.append((b"via", b"via", self._via))
        if not isinstance(content, bytes):
            return httpx.Request(
                method,
                url,
                headers=[(name, value) for name, _, value in kept],
                content=content,
                extensions=extensions,
            )
        method = method.upper()
        listed = [(b"Host", b"host", self._netloc)]
        if content and not sized:
            kept.append((b"Content-Length", b"content-length", str(len(content)).encode()))
        elif not content and not sized and method in ("POST", "PUT", "PATCH"):
            listed.append((b"Content-Length", b"content-length", b"0"))
        listed += kept
        request = httpx.Request(
            method,
            url,
            headers=_headers(listed),
            stream=httpx.ByteStream(content),
            extensions=extensions,
        )
        request._content = content  # what read() would note, without reading the stream again
        return request

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        link: ClientLink | None,
        exchange: _Exchange,
        started: float,
    ) -> None:
        """Forward one request and stream the answer back, noting how it went in
        ``exchange``."""
        transport = self.transport
        assert transport is not None, "the sidecar's lifespan has not started"
        target = self._target(scope)
        kept, declared, sized = _client_headers(scope["headers"])
        content = await self._read_body(declared, receive, link, exchange)
        if content is None:
            return
        request = self._request(scope["method"], target, kept, sized, content, exchange)
        try:
            response = await transport.handle_async_request(request)
        except httpx.TransportError as exc:
            await self._send_error(scope, send, exchange, exc, time.monotonic() - started)
            return
        if exchange.pipe is not None:
            exchange.pipe.close()  # a body still arriving is not wanted any more
        history = response.extensions.get("retry_history", ())
        exchange.attempts = len(history) or 1
        answered, stream = _answer_headers(response.headers._list, self._via)
        watch = None
        if stream:
            replay = response.stream
            if isinstance(replay, AsyncReplay) and replay.watched:
                exchange.ended = replay.ended_properly  # its guard watches every chunk already
            else:
                watch = _TerminalWatch()
        try:
            exchange.status = response.status_code
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": answered}
            )
            try:
                async for chunk in cast("httpx.AsyncByteStream", response.stream):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    exchange.sent += len(chunk)
                    if watch is not None and not exchange.terminal:
                        exchange.terminal = watch.seen_in(chunk)
            except httpx.TransportError as exc:
                # Headers are out: the only way to tell the client is to cut its connection.
                exchange.broke = True
                logger.warning(
                    "%s %s %s: upstream response broke after %d bytes (%s); closing the "
                    "client's connection",
                    self.label,
                    printable(scope["method"]),
                    path_for_log(scope),
                    exchange.sent,
                    type(exc).__name__,
                )
                return
            exchange.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            exchange.cancellable = False  # the connection is closed (or pooled) in peace
            # What response.aclose() does, without its exception-mapping context per call.
            response.is_closed = True
            await cast("httpx.AsyncByteStream", response.stream).aclose()

    async def _refuse(
        self, scope: Scope, send: Send, exchange: _Exchange, refused: _Refused
    ) -> None:
        """Answer a request the forwarder will not (or can no longer) send."""
        logger.warning(
            "%s %s %s: refused with %d: %s",
            self.label,
            printable(scope["method"]),
            path_for_log(scope),
            refused.status,
            refused.message,
        )
        exchange.finished = True  # counted here, with no summary line (its status stays None)
        self._metrics.request(refused.status)
        await send_error(send, refused.status, refused.kind, refused.message, close=True)

    async def _send_error(
        self,
        scope: Scope,
        send: Send,
        exchange: _Exchange,
        exc: httpx.TransportError,
        elapsed: float,
    ) -> None:
        """Answer 504 for a timeout (the deadline's included), 502 for any other failure."""
        timeout = isinstance(exc, httpx.TimeoutException)
        attempts = exchange.attempts = max(exchange.sends, 1)
        deadline = self._settings.policy.deadline
        tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
        if (
            timeout
            and deadline is not None
            and (isinstance(exc, DeadlineExceeded) or elapsed >= deadline - _DEADLINE_SLACK)
        ):
            detail = (
                f"upstream {self.spec.url} timed out: the deadline of {deadline:g} s "
                f"(--deadline) passed after {tries} ({type(exc).__name__})"
            )
        else:
            detail = (
                f"upstream {self.spec.url} {'timed out' if timeout else 'unreachable'}: "
                f"{type(exc).__name__}: {str(exc) or 'no detail'}"
            )
            if attempts > 1:
                detail += f" (gave up after {tries})"
        logger.warning(
            "%s %s %s: %s",
            self.label,
            printable(scope["method"]),
            path_for_log(scope),
            printable(detail),
        )
        exchange.finished = True
        exchange.status = 504 if timeout else 502
        exchange.sent = await send_error(
            send,
            exchange.status,
            "upstream_timeout" if timeout else "upstream_unreachable",
            detail,
        )


_DEADLINE_SLACK = 0.01
"""Seconds a timeout may come before the deadline and still be the deadline's (the transport
starts its clock a little after the forwarder)."""


async def _stream_body(
    parts: list[bytes], rest: AsyncIterator[bytes] | None = None
) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if rest is not None:
        async for chunk in rest:
            yield chunk
