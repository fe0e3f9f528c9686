"""The sidecar's parts on their own: log escaping, its routes' edges, the status it counts."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading

import httpx
import pytest
import uvicorn
from starlette.routing import Match, NoMatchFound

from retry_transport._events import RetryEvent
from retry_transport.proxy.app import build_app
from retry_transport.proxy.metrics import Metrics
from retry_transport.proxy.replies import path_for_log, printable
from retry_transport.proxy.serving import _NoWireDebug, _redact, _Server

from .proxy_helpers import settings_for


def test_printable_escapes_every_control_character() -> None:
    assert printable("/v1/ok") == "/v1/ok"
    assert printable("a\r\nb\x1b[31m\x00\u2028\u0085é") == "a\\r\\nb\\x1b[31m\\x00\\u2028\\x85é"


def test_a_path_is_logged_as_it_came_without_its_query() -> None:
    scope = {"path": "/v1/a\r\nb", "raw_path": b"/v1/a%0d%0ab", "query_string": b"key=sk"}
    assert path_for_log(scope) == "/v1/a%0d%0ab"
    assert path_for_log({"path": "/v1/a\nb"}) == "/v1/a\\nb"


@pytest.mark.parametrize("root", [False, True])
def test_the_sidecars_routes_answer_http_only_and_build_no_urls(root: bool) -> None:
    other = "https://b.example" if root else "b=https://b.example"
    app = build_app(settings_for("--upstream", "a=https://a.example", "--upstream", other))
    websocket = {"type": "websocket", "path": "/a/x"}
    kinds = {type(route).__name__ for route in app.routes}
    assert ("_Unrouted" in kinds) is not root
    for route in app.routes:
        if type(route).__name__ in {"_UpstreamRoute", "_Unrouted"}:
            assert route.matches(websocket) == (Match.NONE, {})
            with pytest.raises(NoMatchFound):
                route.url_path_for("anything")


@pytest.mark.anyio
async def test_health_before_startup_shows_no_block() -> None:
    app = build_app(settings_for("--upstream", "a=https://a.example"))
    transport = httpx.ASGITransport(app=app)  # no lifespan: no limiter yet
    async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
        health = (await client.get("/_retry_transport/healthz")).json()
        unknown = await client.get("/elsewhere")
    assert health["upstreams"]["a"]["blocked_for"] == 0.0
    assert unknown.status_code == 404


def test_the_log_handler_drops_only_the_http_libraries_debug_records() -> None:
    wire = _NoWireDebug()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", (), None)

    assert not wire.filter(record("httpcore.http11", logging.DEBUG))
    assert not wire.filter(record("httpx", logging.DEBUG))
    assert wire.filter(record("httpx", logging.INFO))
    assert wire.filter(record("retry_transport.proxy", logging.DEBUG))


def test_a_redis_url_is_logged_without_its_password() -> None:
    assert _redact("redis://h:6379/0") == "redis://h:6379/0"
    assert _redact("redis://user:pw@h:6379/0") == "redis://user:***@h:6379/0"
    assert _redact("redis://:pw@h/0") == "redis://:***@h/0"


def test_the_redis_timeout_option_reaches_each_upstreams_limiter() -> None:
    import redis.asyncio

    from retry_transport.proxy.app import _limiter
    from retry_transport.redis import RedisLimiter

    argv = ("--upstream", "http://upstream.test", "--redis", "redis://127.0.0.1:1/0")
    default, given = settings_for(*argv), settings_for(*argv, "--redis-timeout", "2.5")
    assert (default.redis_timeout, given.redis_timeout) == (0.1, 2.5)
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")  # never connected
    for settings, seconds in ((default, 0.1), (given, 2.5)):
        limiter = _limiter(settings, settings.upstreams[0], client)
        assert isinstance(limiter, RedisLimiter)
        assert limiter._redis_store._timeout == seconds
    asyncio.run(client.aclose())


def test_without_prometheus_client_the_counters_are_no_ops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    metrics = Metrics(["a"])
    counters = metrics.upstream("a")
    counters.request(200)
    counters.client_disconnect()
    counters(
        RetryEvent("retry", "GET", "https://a.example/v1", 1, 5, None, "r", 0.1, 503, None, 0.0)
    )
    metrics.watch_block("a", lambda: 0.0)
    assert metrics.render() is None


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Connection:
    def __init__(self, transport: _Transport | None) -> None:
        self.transport = transport


def test_a_stop_signal_held_back_while_uvicorn_starts_reaches_it_once_it_listens() -> None:
    """`_serve_one` blocks SIGTERM until uvicorn's handlers are in place (a worker starts with it
    blocked too): one sent in that window is delivered to uvicorn, which then shuts down."""
    server = _Server(
        uvicorn.Config(app=build_app(settings_for("--upstream", "https://a.example"))), 2.0
    )
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: seen.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        # to this thread: sent to the process, another thread of the test run would take it
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # pending: blocked
        assert not seen
        assert signal.SIGTERM in signal.sigpending()
        with server.capture_signals():
            assert server.should_exit  # uvicorn's handler took it
            assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert seen == [signal.SIGTERM]  # uvicorn raises it again once done, as always
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, previous)


def test_past_the_grace_period_the_connections_still_open_are_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = _Server(
        uvicorn.Config(app=build_app(settings_for("--upstream", "https://a.example"))), 2.0
    )
    with caplog.at_level(logging.WARNING, logger="retry_transport"):
        server._cut_off()  # none open: nothing to say
        assert caplog.records == []
        open_one = _Connection(_Transport())
        server.server_state.connections = {open_one, _Connection(None)}  # type: ignore[arg-type]
        server._cut_off()
    assert open_one.transport is not None
    assert open_one.transport.closed
    assert [r.getMessage() for r in caplog.records] == [
        "grace period of 2s over: closing 2 connections still open"
    ]
