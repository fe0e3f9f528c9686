"""Forwarding: one `Forwarder` per upstream sends each request on through its `RetryTransport`.

Each upstream has one `RetryTransport` and one limiter, shared by every client of the
sidecar, so a 429 seen by one client holds back the others.

Streaming, both ways: a request body is read up to ``replay_limit`` bytes and, if it ended
within that, sent as bytes the transport can replay on a retry; a larger (or larger announced)
body is streamed to the upstream as it arrives and sent once. A response is streamed back as
its bytes arrive (the transport holds only an event stream's preamble). A task watches the
client throughout: when it goes away, the upstream request is cancelled and its connection
closed at once, whether it was waiting for headers, sleeping before a retry or streaming.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.types import Receive, Scope, Send

from .._async import RetryTransport
from .._limiter import Limiter
from .metrics import UpstreamMetrics
from .pool import make_pool
from .settings import ProxySettings, UpstreamSpec

__all__ = ["Forwarder"]

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


def _forwardable(
    headers: Iterable[tuple[bytes, bytes]], also: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """``headers`` without the hop-by-hop ones (and ``also``), order and case kept."""
    headers = list(headers)
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in _HOP_BY_HOP or lower in also or lower in named or lower.startswith(b"proxy-"):
            continue
        kept.append((name, value))
    return kept


_TALLY = "retry_transport.proxy.tally"
"""The request extension the counting transport notes each send in."""


@dataclass(slots=True)
class _Exchange:
    """What one forwarded request's two tasks (and its transport) tell each other."""

    finished: bool = False
    """The response's last byte is being sent: a disconnect now changes nothing."""
    client_gone: bool = False
    sends: int = 0
    """Attempts sent upstream so far (counted by `_CountingTransport`)."""


class _CountingTransport(httpx.AsyncBaseTransport):
    """The upstream's connection pool, counting each attempt in the request's `_Exchange`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = request.extensions.get(_TALLY)
        if isinstance(exchange, _Exchange):
            exchange.sends += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Forwarder:
    """Forwards requests to one upstream through its `RetryTransport`."""

    def __init__(
        self, spec: UpstreamSpec, settings: ProxySettings, metrics: UpstreamMetrics
    ) -> None:
        self.spec = spec
        self.label = spec.label
        self.transport: RetryTransport | None = None  # made at startup, in the server's loop
        self.limiter: Limiter | None = None
        self._settings = settings
        self._metrics = metrics
        self._base = httpx.URL(spec.url)
        self._base_path = self._base.raw_path.split(b"?", 1)[0].rstrip(b"/")
        self._prefix = "" if spec.name is None else f"/{spec.name}"
        self._raw_prefix = self._prefix.encode()
        self._timeouts = {
            "connect": settings.connect_timeout,
            "read": settings.read_timeout,
            "write": settings.read_timeout,
            "pool": settings.read_timeout,
        }
        self._give_up_header = settings.policy.give_up_header

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
        path: str = scope["path"]
        raw: bytes = scope.get("raw_path") or quote(path).encode()
        prefix = self._raw_prefix
        if not prefix:
            rest = raw
        elif raw.startswith(prefix) and raw[len(prefix) : len(prefix) + 1] in (b"", b"/"):
            rest = raw[len(prefix) :]
        else:  # the prefix arrived percent-encoded: re-encode the decoded rest
            rest = quote(path[len(self._prefix) :]).encode()
        target = (self._base_path + rest) or b"/"
        query: bytes = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        return self._base.copy_with(raw_path=target)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        exchange = _Exchange()
        body_in, body_out = anyio.create_memory_object_stream[bytes](0)
        outcome: tuple[int, int, int] | None = None
        with body_out:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_client, receive, body_in, exchange, group.cancel_scope)
                try:
                    outcome = await self._exchange(scope, send, body_out, exchange)
                finally:
                    group.cancel_scope.cancel()
        path = scope["path"]
        if exchange.client_gone:
            self._metrics.client_disconnect()
            logger.info(
                "%s %s %s: client went away after %.3fs; upstream request cancelled",
                self.label,
                scope["method"],
                path,
                time.monotonic() - started,
            )
            return
        if outcome is not None:
            status, attempts, size = outcome
            self._metrics.request(status)
            # One line per request costs every request its formatting and a write: at INFO
            # only for a request that needed retries, every request at DEBUG.
            level = logging.INFO if attempts > 1 else logging.DEBUG
            if not logger.isEnabledFor(level):
                return
            logger.log(
                level,
                "%s %s %s -> %d, %d attempt%s, %d bytes in %.3fs",
                self.label,
                scope["method"],
                path,
                status,
                attempts,
                "" if attempts == 1 else "s",
                size,
                time.monotonic() - started,
            )

    @staticmethod
    async def _watch_client(
        receive: Receive,
        body_in: MemoryObjectSendStream[bytes],
        exchange: _Exchange,
        scope: anyio.CancelScope,
    ) -> None:
        """Pass the request body on, then wait for the client to go; cancel if it does early.

        The only reader of ``receive``: uvicorn answers it with ``http.disconnect`` as soon as
        the client's connection closes (or once the response is complete).
        """
        gone = False
        with body_in:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    gone = True
                    break
                chunk: bytes = message.get("body", b"")
                if chunk:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await body_in.send(chunk)  # fails once the body is no longer wanted
                if not message.get("more_body", False):
                    break
        if not gone:
            message = await receive()
            gone = message["type"] == "http.disconnect"
        if gone and not exchange.finished:
            exchange.client_gone = True
            scope.cancel()

    async def _read_body(
        self, headers: Sequence[tuple[bytes, bytes]], body_out: MemoryObjectReceiveStream[bytes]
    ) -> bytes | AsyncIterator[bytes]:
        """The whole body as bytes if it fits the replay limit, else a stream of it."""
        limit = self._settings.replay_limit
        declared = next((value for name, value in headers if name == b"content-length"), None)
        parts: list[bytes] = []
        if declared is None or not declared.isdigit() or int(declared) <= limit:
            size = 0
            async for chunk in body_out:
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
            else:
                return b"".join(parts)
        return _stream_body(parts, body_out)

    async def _exchange(
        self,
        scope: Scope,
        send: Send,
        body_out: MemoryObjectReceiveStream[bytes],
        exchange: _Exchange,
    ) -> tuple[int, int, int] | None:
        """Forward one request and stream the answer back; (status, attempts, bytes sent)."""
        transport = self.transport
        assert transport is not None, "the sidecar's lifespan has not started"
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        content = await self._read_body(headers, body_out)
        request = httpx.Request(
            scope["method"],
            self._target(scope),
            headers=_forwardable(headers, _REQUEST_ONLY),
            content=content,
            extensions={"timeout": self._timeouts, _TALLY: exchange},
        )
        try:
            response = await transport.handle_async_request(request)
        except httpx.TransportError as exc:
            return await self._send_error(scope, send, exchange, exc)
        body_out.close()  # a body still arriving is not wanted any more
        history = response.extensions.get("retry_history", ())
        attempts = len(history) or 1
        sent = 0
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _forwardable(response.headers.raw),
                }
            )
            try:
                async for chunk in response.stream:
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        sent += len(chunk)
            except httpx.TransportError as exc:
                # Headers are out: the only way to tell the client is to cut its connection.
                logger.warning(
                    "%s %s %s: upstream response broke after %d bytes (%s); closing the "
                    "client's connection",
                    self.label,
                    scope["method"],
                    scope["path"],
                    sent,
                    type(exc).__name__,
                )
                return None
            exchange.finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        return response.status_code, attempts, sent

    async def _send_error(
        self, scope: Scope, send: Send, exchange: _Exchange, exc: httpx.TransportError
    ) -> tuple[int, int, int]:
        """Answer 504 for a timeout (the deadline's included), 502 for any other failure."""
        timeout = isinstance(exc, httpx.TimeoutException)
        status = 504 if timeout else 502
        attempts = max(exchange.sends, 1)
        detail = (
            f"upstream {self.spec.url} {'timed out' if timeout else 'unreachable'}: "
            f"{type(exc).__name__}: {str(exc) or '-'}"
        )
        if attempts > 1:
            detail += f" (gave up after {attempts} attempts)"
        message = f"retry_transport proxy: {detail}"
        body = json.dumps(
            {
                "type": "error",
                "error": {
                    "type": "upstream_timeout" if timeout else "upstream_unreachable",
                    "message": message,
                },
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if self._give_up_header:
            headers.append((b"x-should-retry", b"false"))
        logger.warning("%s %s %s: %s", self.label, scope["method"], scope["path"], detail)
        exchange.finished = True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return status, attempts, len(body)


async def _stream_body(
    parts: list[bytes], rest: MemoryObjectReceiveStream[bytes]
) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    async for chunk in rest:
        yield chunk
