"""A lean HTTP/1.1 connection pool to an upstream: asyncio Protocols and llhttp's response
parser (`httptools`), as an httpx transport.

What the sidecar needs of its pool and nothing more: bytes pass through untouched both ways
(no decompression, no header of its own, no cookies, no redirects); connections are kept alive
per origin, with no cap (the limiter's ``--max-concurrency`` is the one cap), and dropped once
idle for `KEEPALIVE` seconds (checked before each reuse, and swept by one timer per pool);
certificates are checked against certifi's roots with the host name and SNI, as httpx does; a
request's head and (when known in full) its body go out in one write, a streamed body of
unknown length chunked; the response body streams as it arrives, with reading paused while the
consumer lags; each request's ``timeout`` extension (connect, read, write) is honoured, and
every failure is the httpx exception the retry transport classifies.

A connection is handed back only once its response arrived in full; one whose response was not
read to its end (the consumer closed early, a cancel, a timeout) is closed. A reused connection
found dead before any byte of the response (the upstream closed it as it went out) is a
`httpx.RemoteProtocolError`, as httpcore raises: the retry transport classifies it (transient,
unanswered) and retries it by its policy, so the pool does not resend a request by itself.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast

import httptools
import httpx

__all__ = ["KEEPALIVE", "WireTransport"]

KEEPALIVE = 5.0
"""Seconds an idle upstream connection is kept (httpx's own default)."""
HIGH_WATER = 256 * 1024
"""Response body bytes held for a lagging consumer before the connection stops reading."""
MAX_HEAD = 256 * 1024
"""Bytes a response's head may take (status line and headers) before it is a protocol error."""

_PORTS = {b"http": 80, b"https": 443}
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}
_UNANSWERED = "Server disconnected without sending a response."
_CUT_SHORT = "peer closed connection without sending complete message body"

Origin = tuple[bytes, str, int]
"""(scheme, host, port) of an upstream."""


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Connection(asyncio.Protocol):
    """One connection to an upstream and the exchange under way on it (if any)."""

    def __init__(self, origin: Origin, open_: set[_Connection]) -> None:
        self.origin = origin
        self.open = open_
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.spent = False
        """Lost, closing, or otherwise not to be used again."""
        self.active = False
        self.paused_writing = False
        self.paused_reading = False
        self.writing = False
        self.waiter: asyncio.Future[bool] | None = None
        self.begin(None, head=False)

    def begin(self, request: httpx.Request | None, *, head: bool) -> None:
        """Ready the connection for ``request``'s response (``head``: a HEAD request's)."""
        self.request = request
        self.active = request is not None
        self.head = head
        self.interim = False
        self.status = 0
        self.version = ""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.framed = False
        self.head_size = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: httpx.TransportError | None = None

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, seconds: float | None) -> bool:
        """Until something happens on the connection (True) or ``seconds`` pass (False)."""
        waiter: asyncio.Future[bool] = self.loop.create_future()
        self.waiter = waiter
        timer = None if seconds is None else self.loop.call_later(seconds, _expire, waiter)
        try:
            return await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def fail(
        self, kind: type[httpx.TransportError], message: str, cause: BaseException | None
    ) -> None:
        """Note the exchange's failure (the first one only) and close the connection."""
        if self.error is None:
            self.error = kind(message, request=cast("httpx.Request", self.request))
            self.error.__cause__ = cause
        self.close()

    def close(self) -> None:
        """Close the connection (it is never used again)."""
        self.spent = True
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():  # what is left unsent will not be wanted
                transport.abort()
            else:
                transport.close()

    def take(self) -> bytes:
        """The body bytes that arrived since the last call, reading resumed if paused."""
        chunks = self.chunks
        chunk = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused_reading:
            self.paused_reading = False
            assert self.transport is not None
            self.transport.resume_reading()
        return chunk

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing is asked of an idle connection
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.fail(httpx.RemoteProtocolError, f"invalid HTTP response: {exc}", exc)
        if not self.headers_done:
            self.head_size += len(data)
            if self.head_size > MAX_HEAD:
                self.fail(
                    httpx.RemoteProtocolError, f"response head larger than {MAX_HEAD} bytes", None
                )
        self._wake()

    def eof_received(self) -> None:
        """The transport closes itself; `connection_lost` follows."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.spent = True
        self.open.discard(self)
        if self.active and not self.complete:
            if self.writing and not self.headers_done:
                self.fail(httpx.WriteError, str(exc or "") or _UNANSWERED, exc)
            elif exc is not None:
                self.fail(httpx.ReadError, str(exc) or type(exc).__name__, exc)
            elif self.headers_done and not self.framed:
                self.complete = True  # a body read to the end of the connection
            else:
                self.fail(
                    httpx.RemoteProtocolError,
                    _CUT_SHORT if self.headers_done else _UNANSWERED,
                    None,
                )
        self._wake()

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._wake()

    # -- httptools' callbacks -----------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason += reason  # in pieces when the line comes in more than one read

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True
        self.headers.append((name, lower, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self.interim = True
            self.reason = b""
            self.headers = []
            self.framed = False
            return
        self.status = status
        self.version = self.parser.get_http_version()
        self.headers_done = True
        if self.head:  # llhttp cannot be told a HEAD response has no body
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        if self.complete:  # bytes after a HEAD response's head
            self.spent = True
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused_reading:
            self.paused_reading = True
            assert self.transport is not None
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.complete:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


def _timeouts(given: object) -> tuple[float | None, float | None, float | None]:
    """(connect, read, write) seconds from a request's ``timeout`` extension."""
    if isinstance(given, Mapping):
        return given.get("connect"), given.get("read"), given.get("write")
    return None, None, None


class _Body(httpx.AsyncByteStream):
    """A response's body as it arrives; its connection goes back to the pool once the
    response arrived in full, and is closed if it did not."""

    def __init__(self, pool: WireTransport, connection: _Connection, read: float | None) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._read = read

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        assert connection is not None, "a response body is read once"
        while True:
            if connection.chunks:
                yield connection.take()
            elif connection.complete:
                self._connection = None
                self._pool.release(connection)
                return
            elif connection.error is not None:
                raise connection.error
            elif not await connection.wait(self._read):
                connection.close()
                raise httpx.ReadTimeout(
                    "timed out reading the response body",
                    request=cast("httpx.Request", connection.request),
                )

    async def aclose(self) -> None:
        connection = self._connection
        if connection is not None:
            self._connection = None
            if connection.complete:
                self._pool.release(connection)
            else:
                connection.close()


class WireTransport(httpx.AsyncBaseTransport):
    """An httpx transport over keep-alive HTTP/1.1 connections of its own (made in the
    running asyncio or uvloop event loop).

    Args:
        ssl_context: for ``https`` upstreams; httpx's default (certifi's roots) if None.
        clock: seconds, for idle connections' age (`time.monotonic` unless given).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssl = ssl_context or httpx.create_ssl_context()
        self._clock = clock
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    # -- connections -----------------------------------------------------------------------------

    async def _connect(
        self, origin: Origin, request: httpx.Request, seconds: float | None
    ) -> _Connection:
        """An idle connection to ``origin`` still fit for use, else a new one."""
        idle = self._idle.get(origin)
        if idle:
            now = self._clock()
            while idle:
                connection = idle.pop()
                assert connection.transport is not None
                if (
                    connection.spent
                    or connection.transport.is_closing()
                    or now - connection.idle_since > KEEPALIVE
                ):
                    self._discard(connection)
                    continue
                return connection
        scheme, host, port = origin
        tls = scheme == b"https"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, self._open),
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"timed out connecting to {host}:{port}", request=request
            ) from exc
        except OSError as exc:  # ssl.SSLError (a certificate refused) is one
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    def release(self, connection: _Connection) -> None:
        """Keep ``connection`` for the next request to its origin, or close it."""
        if not connection.keep_alive or connection.spent:
            self._discard(connection)
            return
        connection.begin(None, head=False)
        if connection.paused_reading:
            connection.paused_reading = False
            assert connection.transport is not None
            connection.transport.resume_reading()
        now = self._clock()
        connection.idle_since = now
        idle = self._idle.get(connection.origin)
        if idle is None:
            idle = self._idle[connection.origin] = deque()
        while idle and now - idle[0].idle_since > KEEPALIVE:
            self._discard(idle.popleft())
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(KEEPALIVE, self._sweep)

    def _sweep(self) -> None:
        """Drop the idle connections past `KEEPALIVE` (also when no request comes to look);
        again when the oldest left is due."""
        self._sweeper = None
        now = self._clock()
        for idle in self._idle.values():
            for connection in list(idle):
                if connection.spent or now - connection.idle_since > KEEPALIVE:
                    idle.remove(connection)
                    self._discard(connection)
        left = [idle[0].idle_since for idle in self._idle.values() if idle]  # each one's oldest
        if left:
            self._sweeper = asyncio.get_running_loop().call_later(
                max(min(left) + KEEPALIVE - now, 0.1), self._sweep
            )

    # -- one request ---------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        port = url.port or _PORTS.get(scheme, 80)
        origin = (scheme, url.raw_host.decode("ascii"), port)
        connect, read, write = _timeouts(request.extensions.get("timeout"))
        connection = await self._connect(origin, request, connect)
        method = request.method.encode("ascii")
        connection.begin(request, head=method == b"HEAD")
        try:
            await self._send(connection, request, method, write)
            await self._head(connection, request, read)
        except BaseException:
            self._discard(connection)
            raise
        answered = httpx.Headers()
        answered._list = connection.headers
        return httpx.Response(
            connection.status,
            headers=answered,
            stream=_Body(self, connection, read),
            extensions={
                "http_version": _VERSIONS.get(connection.version, b"HTTP/1.1"),
                "reason_phrase": connection.reason,
            },
        )

    async def _head(
        self, connection: _Connection, request: httpx.Request, seconds: float | None
    ) -> None:
        """Wait for the response's head (``seconds`` at most between bytes)."""
        while not connection.headers_done:
            if connection.error is not None:
                raise connection.error
            if not await connection.wait(seconds):
                raise httpx.ReadTimeout("timed out waiting for the response", request=request)

    async def _send(
        self,
        connection: _Connection,
        request: httpx.Request,
        method: bytes,
        seconds: float | None,
    ) -> None:
        """Write ``request`` on ``connection``: its head and a body known in full at once, a
        streamed one as it comes (chunked, unless its length was given)."""
        transport = connection.transport
        assert transport is not None
        connection.writing = True
        try:
            await self._write(connection, transport, request, method, seconds)
        finally:
            connection.writing = False

    async def _write(
        self,
        connection: _Connection,
        transport: asyncio.Transport,
        request: httpx.Request,
        method: bytes,
        seconds: float | None,
    ) -> None:
        parts = [method, b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        for name, _, value in request.headers._list:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            parts.append(request.read())
            transport.write(b"".join(parts))
            await self._drain(connection, request, seconds)
            return
        assert isinstance(stream, httpx.AsyncByteStream), "the sidecar streams async bodies"
        chunked = "content-length" not in request.headers
        transport.write(b"".join(parts))
        async for chunk in stream:
            if connection.headers_done or connection.error is not None:
                connection.spent = True  # answered (or failed) before the body was all sent
                return
            if chunk:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await self._drain(connection, request, seconds)
        if chunked:
            transport.write(b"0\r\n\r\n")
        await self._drain(connection, request, seconds)

    async def _drain(
        self, connection: _Connection, request: httpx.Request, seconds: float | None
    ) -> None:
        """Wait while the connection's write buffer is full (and no answer came)."""
        while (
            connection.paused_writing and not connection.headers_done and connection.error is None
        ):
            if not await connection.wait(seconds):
                raise httpx.WriteTimeout("timed out sending the request", request=request)
        if connection.paused_writing:  # answered with part of the request still unsent
            connection.spent = True

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
