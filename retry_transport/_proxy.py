"""The retry sidecar: a Starlette app forwarding every request through `RetryTransport`.

Needs the ``proxy`` extra (Starlette, uvicorn); `retry_transport` itself never imports this
module. Each upstream has one `RetryTransport` and one limiter, shared by every client of the
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
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import anyio
import httpx
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from ._async import RetryTransport
from ._limiter import Limiter, SharedLimiter
from ._proxy_cli import OWN_PREFIX, ProxySettings, UpstreamSpec
from ._proxy_metrics import Metrics, UpstreamMetrics, counting, install, stop_counting

__all__ = ["build_app", "serve"]

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


def _label(spec: UpstreamSpec) -> str:
    """The upstream's name in logs, metrics and /healthz: its route name, or "/" at the root."""
    return "/" if spec.name is None else spec.name


@dataclass(slots=True)
class _Exchange:
    """What one forwarded request's two tasks tell each other."""

    finished: bool = False
    """The response's last byte is being sent: a disconnect now changes nothing."""
    client_gone: bool = False


class _Forwarder:
    """Forwards requests to one upstream through its `RetryTransport`."""

    def __init__(self, spec: UpstreamSpec, settings: ProxySettings, metrics: Metrics) -> None:
        self.spec = spec
        self.label = _label(spec)
        self.transport: RetryTransport | None = None  # made at startup, in the server's loop
        self.limiter: Limiter | None = None
        self._settings = settings
        self._metrics: UpstreamMetrics = metrics.upstream(self.label)
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
        inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)
        )
        self.limiter = limiter
        self.transport = RetryTransport(inner, policy=self._settings.policy, limiter=limiter)
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
            logger.info(
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
            extensions={"timeout": self._timeouts},
        )
        token = counting(self._metrics)
        try:
            response = await transport.handle_async_request(request)
        except httpx.TransportError as exc:
            return await self._send_error(scope, send, exchange, exc)
        finally:
            stop_counting(token)
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
                async for chunk in cast("httpx.AsyncByteStream", response.stream):
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
        notes = "; ".join(getattr(exc, "__notes__", ()))
        detail = (
            f"upstream {self.spec.url} {'timed out' if timeout else 'unreachable'}: "
            f"{type(exc).__name__}: {str(exc) or '-'}{f' ({notes})' if notes else ''}"
        )
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
        match = re.search(r"after (\d+) attempts", notes)
        return status, int(match.group(1)) if match else 1, len(body)


async def _stream_body(
    parts: list[bytes], rest: MemoryObjectReceiveStream[bytes]
) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    async for chunk in rest:
        yield chunk


class _UpstreamRoute(BaseRoute):
    """Routes ``/<name>`` and ``/<name>/...`` (everything but our own paths at the root)."""

    def __init__(self, forwarder: _Forwarder) -> None:
        self.forwarder = forwarder
        self._prefix = forwarder.spec.name and f"/{forwarder.spec.name}"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path: str = scope["path"]
        prefix = self._prefix
        if prefix:
            hit = path == prefix or path.startswith(prefix + "/")
        else:
            hit = path != OWN_PREFIX and not path.startswith(OWN_PREFIX + "/")
        return (Match.FULL if hit else Match.NONE), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.forwarder(scope, receive, send)


class _Unrouted(BaseRoute):
    """Answers any path no upstream serves with a 404 naming the prefixes that exist."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self._prefixes = list(prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL if scope["type"] == "http" else Match.NONE), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "type": "error",
                "error": {
                    "type": "not_found",
                    "message": "retry_transport proxy: no upstream is served under this path; "
                    f"prefixes: {', '.join(self._prefixes)}",
                },
            },
            status_code=404,
            headers={"x-should-retry": "false"},
        )
        await response(scope, receive, send)


def build_app(settings: ProxySettings) -> Starlette:
    """The sidecar's ASGI app. Transports and limiters are made by its lifespan (startup)."""
    metrics = Metrics(_label(spec) for spec in settings.upstreams)
    install()
    forwarders = [_Forwarder(spec, settings, metrics) for spec in settings.upstreams]

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "upstreams": {
                    forwarder.label: {
                        "url": forwarder.spec.url,
                        "blocked_for": (
                            0.0
                            if forwarder.limiter is None
                            else round(forwarder.limiter.blocked_for(), 3)
                        ),
                    }
                    for forwarder in forwarders
                },
            }
        )

    async def metrics_text(request: Request) -> Response:
        rendered = metrics.render()
        if rendered is None:
            return PlainTextResponse(
                "metrics need prometheus-client: pip install prometheus-client\n", 404
            )
        body, content_type = rendered
        return Response(body, media_type=content_type)

    own: list[BaseRoute] = [
        Route(f"{OWN_PREFIX}/healthz", healthz, methods=["GET"]),
        Route(f"{OWN_PREFIX}/metrics", metrics_text, methods=["GET"]),
    ]
    names = {spec.name for spec in settings.upstreams}
    for path, endpoint in (("healthz", healthz), ("metrics", metrics_text)):
        # The short paths only when no upstream could be asked for them.
        if None not in names and path not in names:
            own.append(Route(f"/{path}", endpoint, methods=["GET"]))
    # Named upstreams first: the root upstream takes everything else.
    ordered = sorted(forwarders, key=lambda forwarder: forwarder.spec.name is None)
    routes: list[BaseRoute] = [*own, *(_UpstreamRoute(forwarder) for forwarder in ordered)]
    if None not in names:
        routes.append(_Unrouted([f"/{spec.name}/" for spec in settings.upstreams]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            redis_client: Any = None
            if settings.redis_url is not None:
                import redis.asyncio

                redis_client = redis.asyncio.from_url(settings.redis_url)
                stack.push_async_callback(redis_client.aclose)
            for forwarder in forwarders:
                limiter = _limiter(settings, forwarder.spec, redis_client)
                transport = forwarder.start(limiter)
                stack.push_async_callback(transport.aclose)
                metrics.watch_block(forwarder.label, limiter.blocked_for)
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def _limiter(settings: ProxySettings, spec: UpstreamSpec, redis_client: Any) -> Limiter:
    if redis_client is None:
        return SharedLimiter(settings.budget, settings.max_concurrency)
    from .redis import RedisLimiter

    return RedisLimiter(
        redis_client,
        name=spec.limiter_name,
        budget=settings.budget,
        max_concurrency=settings.max_concurrency,
    )


# -- serving ----------------------------------------------------------------------------------


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setLevel(level.upper())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_config(app: Starlette, settings: ProxySettings) -> uvicorn.Config:
    """The uvicorn configuration the sidecar runs with (its own logging, no access log)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        access_log=False,  # it would log query strings, where some providers put keys
        server_header=False,
        date_header=False,
        proxy_headers=False,
        ws="none",
        timeout_graceful_shutdown=settings.grace,
    )


def serve(settings: ProxySettings) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight responses finish (up to
    ``settings.grace`` seconds); the exit status: 0 after a shutdown, 1 if it never started."""
    _configure_logging(settings.log_level)
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s port %d: %s", settings.host, settings.port, exc)  # noqa: TRY400
        return 1
    app = build_app(settings)
    server = uvicorn.Server(server_config(app, settings))
    url = _url(sock)
    for spec in settings.upstreams:
        logger.info(
            "listening on %s%s/ -> %s", url, "" if spec.name is None else f"/{spec.name}", spec.url
        )
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
    # place, that re-raise does nothing and the process exits 0 after a graceful shutdown.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else 1
