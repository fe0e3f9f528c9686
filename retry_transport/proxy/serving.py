"""Serving: the sidecar's logging, its listening socket and uvicorn, until SIGTERM or SIGINT.

uvicorn's httptools protocol (llhttp, a C parser) is used with the sidecar's own hardening:
every request's headers must arrive within ``header_timeout`` seconds of connecting (or of the
previous response's end), or the connection is closed, so half-open and trickling connections
do not pile up; past ``max_connections`` open connections one more is answered 503 and closed;
a request head over `MAX_HEAD` bytes is answered 431; a request framed against the rules of a
strict HTTP/1.1 server (no Host header or two, a transfer coding other than chunked, both
Content-Length and Transfer-Encoding) or that cannot be parsed is answered with the sidecar's
JSON 400 and closed; the request target reaches the app as it came, so that `screening.Screen`
judges absolute-form and asterisk-form targets itself. Past the ``--grace`` period after
SIGTERM, the connections still open are closed (each request then ends as its client going
away) rather than their tasks cancelled. A response's writes made in one turn of the event
loop (its head and its first body chunk, typically) go out as one (`_Coalescing`): one packet
and one wake-up of the client instead of two; a response goes out the moment it is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from .app import SidecarApp, build_app
from .forwarding import LINK
from .replies import error_body, printable
from .settings import ProxySettings, address_kind

if TYPE_CHECKING:
    from uvicorn._types import (
        ASGISendEvent,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        HTTPScope,
    )

__all__ = ["fast_loop", "serve", "server_config"]

logger = logging.getLogger("retry_transport.proxy")

_WIRE_LOGGERS = ("httpcore", "httpx")
"""Loggers whose DEBUG records carry headers (httpcore logs every response's)."""
_LAST_RESORT = 5
"""Seconds past the grace period (and the connections' closing) before uvicorn cancels what
is still running."""
_STOPS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop the sidecar gracefully."""
_REDIS_CHECK_TIMEOUT = 5.0


class _NoWireDebug(logging.Filter):
    """Drops the DEBUG records of the HTTP libraries, which print header values."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG or not record.name.startswith(_WIRE_LOGGERS)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setLevel(level.upper())
    handler.addFilter(_NoWireDebug())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def fast_loop() -> str:
    """uvicorn's event loop for the sidecar: uvloop where it is installed (the ``proxy`` extra
    brings it), else asyncio's own."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _busy_reply() -> bytes:
    body = error_body("overloaded", "too many connections open (--max-connections)")
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _busy_reply()


class _Coalescing(asyncio.Transport):
    """A connection's response side: the writes made in one turn of the event loop are handed
    on together at its end (or at once: past 64 KiB, on `flush`, which the cycle calls once a
    response is complete, or on `close`)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= 65536:
            self.flush()

    def flush(self) -> None:
        """Hand on what is pending."""
        if self._pending:
            pending, self._pending, self._size = self._pending, [], 0
            self._transport.writelines(pending)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()


_NOTED = frozenset({b"host", b"transfer-encoding", b"expect"})
"""The request header fields the protocol itself looks at."""

MAX_HEAD = 64 * 1024
"""Bytes a request's target and header fields may take together (431 past them)."""


class _Unparsable(Exception):
    """A request the sidecar answers without handing it to the app: its status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _head_too_large() -> _Unparsable:
    return _Unparsable(431, f"its head is over {MAX_HEAD // 1024} KiB")


class _Cycle(RequestResponseCycle):
    """uvicorn's request-response cycle as the forwarder's `forwarding.ClientLink` (in the
    scope's extensions): whether the request's body is all in, and a callback for its client
    going away (the connection lost, or cut by the server) before the response is complete.

    Its ``send`` and ``receive`` do what uvicorn's do (the same checks of each message and of
    each response header, the same framing, ``Connection: close`` and 100 Continue handling),
    in fewer steps: a response's header names and values are checked once each, joined, rather
    than by two searches per header, and a header list is copied only when the server has
    default headers to put first (the sidecar has none)."""

    on_disconnect: Callable[[], None] | None = None
    transport: _Coalescing

    def body_complete(self) -> bool:
        """Whether the whole body has arrived (``receive()`` answers it at once)."""
        return not self.more_body

    def lost(self) -> None:
        """The client went away: tell the forwarder, once."""
        callback = self.on_disconnect
        if callback is not None:
            self.on_disconnect = None
            callback()

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{kind}'."
                )
            start = cast("HTTPResponseStartEvent", message)
            self._start(start["status"], start.get("headers", ()))
        elif self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}' sent, after response already completed."
            )
        elif kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        else:
            body = cast("HTTPResponseBodyEvent", message)
            self._body(body.get("body", b""), body.get("more_body", False))

    def _start(self, status: int, listed: Iterable[tuple[bytes, bytes]]) -> None:
        """Write the response's status line and header fields."""
        self.response_started = True
        self.waiting_for_100_continue = False
        headers = [*self.default_headers, *listed] if self.default_headers else listed
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        names: list[bytes] = []
        values: list[bytes] = []
        close = False
        for name, value in headers:
            names.append(name)
            values.append(value)
            name = name.lower()
            if name == b"content-length":
                if self.chunked_encoding is None:
                    self.expected_content_length = int(value.decode())
                    self.chunked_encoding = False
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.expected_content_length = 0
                    self.chunked_encoding = True
            elif name == b"connection" and b"close" in (
                token.lower().strip() for token in value.split(b",")
            ):
                self.keep_alive = False
                close = True
            content += (name, b": ", value, b"\r\n")
        # Each character class checked over all the names (values) at once: the same verdict
        # as a search of each one.
        if HEADER_RE.search(b"".join(names)):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        if not self.keep_alive and not close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))

    def _body(self, body: bytes, more_body: bool) -> None:
        """Write a piece of the response's body; once it is the last, complete the response."""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            if body:
                last = b"" if more_body else b"0\r\n\r\n"
                self.transport.write(b"%x\r\n%b\r\n%b" % (len(body), body, last))
            elif not more_body:
                self.transport.write(b"0\r\n\r\n")
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            self.transport.write(body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            # Out now, not at the end of the loop's turn: what the app does after its answer
            # (closing the upstream response, its log line and counters) no longer delays it.
            self.transport.flush()
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol with the sidecar's hardening: a deadline on each
    request's headers, a cap on open connections and on a request head's size, the framing
    rules of a strict HTTP/1.1 server (one Host header, ``Transfer-Encoding: chunked`` or
    nothing), the request target handed on as it came, and the sidecar's JSON answer for
    whatever cannot be parsed; subclassed per app by `_protocol` with the settings' values."""

    header_timeout = 10.0
    max_connections = 1000
    _header_timer: asyncio.TimerHandle | None = None
    _idle_since: float | None = None
    """When the connection last had no request's headers in, or None while one has them in:
    the header deadline runs from there (one timer per connection, moved only when it fires)."""
    _warned_at = -float("inf")
    """When the cap was last logged (at most one line in ten seconds per sidecar)."""
    _ahead = 0
    """Requests whose headers are in and whose response is not complete yet."""
    _head = 0
    """Bytes of the current request's target and header fields so far."""
    _hosts = 0
    """Its Host header fields so far."""
    _codings: list[bytes] | None = None
    """The transfer codings its Transfer-Encoding fields name, if it has any."""
    _out: _Coalescing
    cycle: _Cycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are no asyncio.Transport
        # subclasses, yet have all its methods.
        super().connection_made(cast(asyncio.Transport, transport))
        self._asgi = {"version": self.asgi_version, "spec_version": "2.3"}
        transport = self.transport
        self._out = _Coalescing(transport, self.loop)
        if len(self.connections) > self.max_connections:
            now = time.monotonic()
            if now - self._warned_at >= 10.0:
                type(self)._warned_at = now  # the app's own subclass: one line per sidecar
                logger.warning(
                    "%d client connections open (--max-connections): answering more with 503",
                    self.max_connections,
                )
            transport.write(_BUSY)
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)
        cycle = self.cycle
        if cycle is not None and cycle.disconnected:
            cycle.lost()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT, or an Upgrade offer: no protocol is switched to. The request itself
            # is served (CONNECT is refused by the screen); the parser stops after it, so the
            # connection closes after its answer.
            self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback raised
            if isinstance(cause, _Unparsable):
                self._refuse(cause.status, cause.reason)
            else:
                self._refuse(400, str(exc) or type(exc).__name__)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request that cannot be parsed (or is framed against the rules) with the
        sidecar's JSON error (uvicorn's own is plain text, without ``x-should-retry: false``),
        then close; if an answer has already begun, just close. A request whose body broke the
        framing has its app task still running: it is told its client went away, so its own
        answer is not sent after this."""
        logger.warning("refused with %d: %s", status, printable(reason))
        cycle = self.cycle
        started = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
            cycle.lost()
        if not started:
            kind = "request_too_large" if status == 431 else "invalid_request"
            body = error_body(kind, f"the request is not valid HTTP/1.1 ({reason})")
            self._out.write(
                b"".join(
                    (
                        STATUS_LINE[status],
                        b"content-type: application/json\r\ncontent-length: ",
                        str(len(body)).encode(),
                        b"\r\nx-should-retry: false\r\nconnection: close\r\n\r\n",
                        body,
                    )
                )
            )
        self._out.close()

    # -- the parser's callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's own also starts the request's scope: here it is made whole, at once, by
        # `on_headers_complete`.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._head = 0
        self._hosts = 0
        self._codings = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head += len(url)
        if self._head > MAX_HEAD:
            raise _head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp itself refuses control characters (but HTAB) in names and values.
        self._head += len(name) + len(value)
        if self._head > MAX_HEAD:
            raise _head_too_large()
        name = name.lower()
        if name in _NOTED:
            if name == b"host":
                self._hosts += 1
            elif name == b"transfer-encoding":
                codings = self._codings = self._codings or []
                codings.extend(token.strip().lower() for token in value.split(b","))
            elif value.lower() == b"100-continue":  # expect
                self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._idle_since = None  # the timer, when it fires, finds the headers in
        self._ahead += 1
        parser = self.parser
        version = parser.get_http_version()
        hosts = self._hosts
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise _Unparsable(400, "an HTTP/1.1 request needs exactly one Host header")
        if self._codings is not None and self._codings != [b"chunked"]:
            raise _Unparsable(400, "the only transfer coding served is chunked")
        # The target as it came (absolute-form and asterisk-form included), for the screen;
        # llhttp lets visible ASCII through only.
        raw_path, _, query = self.url.partition(b"?")
        path = raw_path.decode("ascii")
        scope = self.scope = cast(
            "HTTPScope",
            {
                "type": "http",
                "asgi": self._asgi,
                "http_version": version,
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "root_path": self.root_path,
                "headers": self.headers,
                "state": self.app_state.copy(),
                "method": parser.get_method().decode("ascii"),
                "path": unquote(path) if "%" in path else path,
                "raw_path": raw_path,
                "query_string": query,
            },
        )
        previous = self.cycle
        cycle = self.cycle = _Cycle(
            scope=scope,
            transport=self._out,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        scope["extensions"] = {LINK: {"link": cycle}}
        if previous is None or previous.response_complete:
            task = self.loop.create_task(cycle.run_asgi(self.app))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
        else:  # pipelined: it waits for the answer to the one before
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def on_body(self, body: bytes) -> None:
        # uvicorn's own first asks the parser whether an upgrade is under way: none is served.
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def on_response_complete(self) -> None:
        self._ahead -= 1
        super().on_response_complete()
        if self._ahead == 0:
            self._arm_header_timer()

    # -- the header deadline -------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        """Time the next request's headers (from now), unless closing."""
        if self.transport.is_closing():
            return
        now = self._idle_since = self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(now + self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        since = self._idle_since
        if since is None:
            return  # a request's headers are in: timed again once it is answered
        deadline = since + self.header_timeout
        if deadline > self.loop.time():  # the connection was busy since the timer was set
            self._header_timer = self.loop.call_at(deadline, self._headers_late)
        else:
            self._out.close()


def _protocol(settings: ProxySettings) -> type[_Protocol]:
    class SidecarProtocol(_Protocol):
        header_timeout = settings.header_timeout
        max_connections = settings.max_connections

    return SidecarProtocol


class _Server(uvicorn.Server):
    """uvicorn's server; past the grace period after SIGTERM it closes the connections still
    open instead of cancelling their tasks (which logs a traceback per request)."""

    def __init__(self, config: uvicorn.Config, grace: float) -> None:
        super().__init__(config)
        self._grace = grace

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's signal handlers, and then SIGTERM and SIGINT let through: `_serve_one`
        holds them back until uvicorn listens, so one sent while it starts is not lost."""
        with super().capture_signals():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
            yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cut = asyncio.get_running_loop().call_later(self._grace, self._cut_off)
        try:
            await super().shutdown(sockets)
        finally:
            cut.cancel()

    def _cut_off(self) -> None:
        connections = list(self.server_state.connections)
        if connections:
            logger.warning(
                "grace period of %gs over: closing %d connection%s still open",
                self._grace,
                len(connections),
                "" if len(connections) == 1 else "s",
            )
        for connection in connections:
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()


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


def server_config(app: SidecarApp, settings: ProxySettings) -> uvicorn.Config:
    """The uvicorn configuration the sidecar runs with (its own logging, no access log)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=_protocol(settings),
        loop=fast_loop(),
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        access_log=False,  # it would log query strings, where some providers put keys
        server_header=False,
        date_header=False,
        proxy_headers=False,
        ws="none",
        timeout_graceful_shutdown=settings.grace + _LAST_RESORT,
    )


def _redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def check_redis(settings: ProxySettings) -> str | None:
    """Why the sidecar cannot use its ``--redis`` server (one PING), or None if it can."""
    if settings.redis_url is None:
        return None
    import redis

    extra = {} if settings.redis_password is None else {"password": settings.redis_password}
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=_REDIS_CHECK_TIMEOUT,
        socket_timeout=_REDIS_CHECK_TIMEOUT,
        **extra,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def serve(settings: ProxySettings) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight responses finish (up to
    ``settings.grace`` seconds); the exit status: 0 after a shutdown, 1 if it never started."""
    _configure_logging(settings.log_level)
    if address_kind(settings.host) != "loopback":
        logger.warning(
            "listening on %s, not a loopback address: the sidecar speaks plain HTTP, without "
            "authentication, and sends what it is given on with the clients' own keys; keep "
            "it on 127.0.0.1 (or inside the pod) unless a firewall closes that address",
            settings.host,
        )
    problem = check_redis(settings)
    if problem is not None:
        assert settings.redis_url is not None
        logger.error(
            "cannot use Redis at %s (--redis): %s; not starting",
            _redact(settings.redis_url),
            problem,
        )
        return 1
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s port %d: %s", settings.host, settings.port, exc)  # noqa: TRY400
        return 1
    url = _url(sock)
    for spec in settings.upstreams:
        logger.info(
            "listening on %s%s/ -> %s", url, "" if spec.name is None else f"/{spec.name}", spec.url
        )
    with sock:
        if settings.workers > 1:
            return _serve_workers(settings, sock)
        return _serve_one(settings, sock)


def _serve_one(settings: ProxySettings, sock: socket.socket) -> int:
    app = build_app(settings)
    server = _Server(server_config(app, settings), settings.grace)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
    # place, that re-raise does nothing and the process exits 0 after a graceful shutdown.
    # Until uvicorn's own handlers are in place the signals wait, blocked, instead of
    # reaching these (which would swallow them and leave the server running).
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    for signum in _STOPS:
        signal.signal(signum, lambda *_: None)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _forked(pid: int, settings: ProxySettings, sock: socket.socket) -> int:
    """What follows ``os.fork()``: in the parent, the worker's ``pid``; in the worker (``pid``
    0), `_serve_one` and then the process's exit with its status. (A frame of its own: coverage,
    restarted in the child by its ``fork`` patch, traces only frames entered after the fork.)"""
    if pid != 0:
        return pid
    for signum in _STOPS:  # blocked since before the fork: the parent's handler must not run here
        signal.signal(signum, signal.SIG_DFL)
    status = 1
    try:
        status = _serve_one(settings, sock)
    finally:
        logging.shutdown()
        os._exit(status)


def _serve_workers(settings: ProxySettings, sock: socket.socket) -> int:
    """Fork ``settings.workers`` processes that accept on ``sock``, each serving as
    `_serve_one` does; pass SIGTERM and SIGINT on to them and wait for them all. A worker that
    exits on its own stops the others (so a supervisor sees the sidecar fail, not shrink).
    The exit status: 0 if every worker exited 0."""
    workers: set[int] = set()
    stopping = False

    def stop(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in _STOPS:
        signal.signal(signum, stop)
    # A signal during the forks waits until every worker is in ``workers``, and a worker starts
    # with it blocked (so the parent's ``stop`` never runs in a worker); `_serve_one` lets it
    # through once uvicorn listens.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        for _ in range(settings.workers):
            workers.add(_forked(os.fork(), settings, sock))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    logger.info("%d workers serving (pids %s)", len(workers), ", ".join(map(str, sorted(workers))))
    failed = False
    while workers:
        pid, status = os.wait()
        workers.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        failed = failed or code != 0
        if not stopping:
            logger.error("worker %d exited with status %d; stopping the others", pid, code)
            failed = True
            stop(signal.SIGTERM)
    return 1 if failed else 0
