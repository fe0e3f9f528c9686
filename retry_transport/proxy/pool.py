"""The connection pool to an upstream (`make_pool`): the sidecar's own
(`retry_transport.proxy.wire`, on llhttp) where httptools is installed, else aiohttp's client
(its HTTP parser is C) as an httpx transport, else httpx's own transport.

On the sidecar's hot path the pool is most of the work: httpx's transport (httpcore, h11)
spends about four times the CPU of aiohttp's client per request and writes a request's head
and body in two packets. `AiohttpTransport` keeps every property the sidecar relies on: bytes
pass through untouched both ways (no decompression, no cookies, no redirects, no header of its
own), connections are kept alive and reused, certificates are checked against certifi's
roots as httpx does, each request's ``timeout`` extension is honoured, and aiohttp's errors
become the httpx exceptions the retry transport classifies (`EXCEPTIONS`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

__all__ = ["EXCEPTIONS", "AiohttpTransport", "make_pool"]

KEEPALIVE = 5.0
"""Seconds an idle upstream connection is kept (httpx's own default)."""
# aiohttp adds these to every request unless told not to; a proxy adds nothing.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
_TARGETS_KEPT = 512
"""Upstream URLs each transport keeps, parsed as aiohttp's."""


def _exceptions() -> tuple[tuple[type[BaseException], type[httpx.TransportError]], ...]:
    import aiohttp

    # Most specific first.
    return (
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
        (TimeoutError, httpx.ReadTimeout),
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
        (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an unparsable response
        (aiohttp.ClientOSError, httpx.ReadError),
        (aiohttp.ClientError, httpx.ReadError),
    )


EXCEPTIONS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    _exceptions() if importlib.util.find_spec("aiohttp") is not None else ()
)
"""(aiohttp or asyncio error, the httpx error raised for it), most specific first."""


_CAUGHT = tuple(source for source, _ in EXCEPTIONS)


def _translate(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx error to raise for ``exc``, one of the errors in `EXCEPTIONS`."""
    mapped = next(target for source, target in EXCEPTIONS if isinstance(exc, source))
    return mapped(str(exc) or type(exc).__name__, request=request)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body as it arrives; the connection goes back to the pool once
    the body was read to its end, and is closed if it was not."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _CAUGHT as exc:
            raise _translate(exc, self._request) from exc

    async def aclose(self) -> None:
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending through one `aiohttp.ClientSession` (made in the running
    event loop: asyncio or uvloop only)."""

    def __init__(self) -> None:
        import aiohttp
        from yarl import URL

        self._aiohttp = aiohttp
        self._url = URL
        connector = aiohttp.TCPConnector(
            limit=0,  # no cap: the limiter's --max-concurrency is the one cap
            keepalive_timeout=KEEPALIVE,
            ssl=httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
        )
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        # By the id of the httpx URL kept alongside (so that the id stays its own).
        self._targets: dict[int, tuple[httpx.URL, URL]] = {}

    def _timeout(self, given: object) -> aiohttp.ClientTimeout:
        connect = read = None
        if isinstance(given, Mapping):
            connect, read = given.get("connect"), given.get("read")
        key = (connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = self._aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
            self._timeouts[key] = timeout
        return timeout

    def _target(self, url: httpx.URL) -> URL:
        """``url`` as aiohttp's URL, parsed once per httpx URL object (the forwarder reuses
        one per path asked for without a query)."""
        kept = self._targets.get(id(url))
        if kept is not None and kept[0] is url:
            return kept[1]
        target = self._url(str(url), encoded=True)
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()
        self._targets[id(url)] = (url, target)
        return target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        stream = request.stream
        data: bytes | httpx.AsyncByteStream | None
        if isinstance(stream, httpx.ByteStream):
            data = request.read() or None
        else:
            assert isinstance(stream, httpx.AsyncByteStream), "the sidecar streams async bodies"
            data = stream
        try:
            headers = [
                (name.decode("ascii"), value.decode("ascii"))
                for name, lower, value in request.headers._list
                if lower != b"transfer-encoding"  # aiohttp chunks a body of unknown length itself
            ]
        except UnicodeDecodeError:  # decoded as httpx decodes them (utf-8, else latin-1)
            headers = [
                (name, value)
                for name, value in request.headers.multi_items()
                if name != "transfer-encoding"
            ]
        try:
            response = await self._session.request(
                request.method,
                self._target(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=self._timeout(request.extensions.get("timeout")),
            )
        except _CAUGHT as exc:
            raise _translate(exc, request) from exc
        answered = httpx.Headers()
        # What httpx.Headers makes of the bytes pairs, without normalising each one again.
        answered._list = [(name, name.lower(), value) for name, value in response.raw_headers]
        return httpx.Response(
            response.status,
            headers=answered,
            stream=_Body(response, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        await self._session.close()


def make_pool() -> httpx.AsyncBaseTransport:
    """The sidecar's pool: `retry_transport.proxy.wire.WireTransport` where httptools is
    installed (the ``proxy`` extra brings it), else `AiohttpTransport` where aiohttp is, else
    httpx's pooled transport."""
    if importlib.util.find_spec("httptools") is not None:
        from .wire import WireTransport

        return WireTransport()
    if importlib.util.find_spec("aiohttp") is not None:
        return AiohttpTransport()
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)
    )
