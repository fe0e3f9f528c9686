"""The fault matrix: RetryTransport (asyncio and trio) and SyncRetryTransport against the real
loopback `Upstream` misbehaving on purpose, for httpx and httpx2.

Every test says what a broken transport would do and asserts against it: a request sent once
too often (the upstream's records), a connection left open (the wrapped pool's in-flight
requests, and ``filterwarnings = error`` for unclosed resources), a limiter slot kept (a later
request must still get through), a wait the injected sleep saw, memory (tracemalloc). Nothing
here sleeps to check timing: waits go through an injected sleep, and the few real-time bounds
(``anyio.fail_after``, an elapsed ceiling) only turn a hang into a failure.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from retry_transport import (
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
    Verdict,
)
from retry_transport.testing.upstream import Fault, Reply, Upstream

from ..transport_helpers import FLAVOURS, FakeClock, Sleeps, exc, lib

pytestmark = pytest.mark.anyio

SSE = (("content-type", "text/event-stream"),)
PREAMBLE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","content":[]}}\n\n'
)
DELTA = (  # content, then the end of the message: a complete answer
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OVERLOADED = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
MIB = 1 << 20

RATE_LIMITED = Reply.json(
    429,
    {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
    (("retry-after", "1"),),
)
DEGRADED = Reply.json(
    400, {"status": 400, "title": "Bad Request", "detail": "Function 'x': DEGRADED function"}
)
BAD_KEY = Reply.json(401, {"error": {"message": "bad key", "type": "authentication_error"}})
ODD_400 = Reply.json(400, {"error": {"message": "something odd happened"}})
OK = Reply.json(200, {"ok": True})


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# For the slowest tests, whose subject does not depend on the pairing: each backend and each
# flavour once, rather than every pair.
BACKEND_FLAVOUR_PAIRS = pytest.mark.parametrize(
    ("anyio_backend", "flavour"), [("asyncio", "httpx"), ("trio", "httpx2")]
)


# -- helpers ----------------------------------------------------------------------------------


class YieldingSleeps(Sleeps):
    """`Sleeps` that also lets other tasks run, as a real sleep would."""

    async def __call__(self, seconds: float) -> None:
        self.sync(seconds)
        await anyio.lowlevel.checkpoint()


class LockedClock(FakeClock):
    """A `FakeClock` that many threads may move on."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class HeldSleep:
    """An injected sleep that records its wait, says so, and never returns by itself."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.entered = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.entered.set()
        await anyio.sleep_forever()


def in_flight(inner: Any) -> int:
    """Responses the wrapped httpx/httpx2 transport's connection pool still has open."""
    return len(inner._pool._requests)


def make_async(
    flavour: str,
    policy: RetryPolicy | None = None,
    *,
    sleeps: Sleeps | None = None,
    limiter: SharedLimiter | None = None,
    inner: Any = None,
    **inner_options: Any,
) -> tuple[RetryTransport, Sleeps]:
    sleeps = sleeps or Sleeps()
    inner = lib(flavour).AsyncHTTPTransport(**inner_options) if inner is None else inner
    transport = RetryTransport(
        inner,
        policy=policy,
        limiter=limiter,
        sleep=sleeps,
        clock=sleeps.clock,
        random=lambda: 0.5,
    )
    return transport, sleeps


def make_sync(
    flavour: str,
    policy: RetryPolicy | None = None,
    *,
    sleeps: Sleeps | None = None,
    limiter: SharedLimiter | None = None,
    **inner_options: Any,
) -> tuple[SyncRetryTransport, Sleeps]:
    sleeps = sleeps or Sleeps()
    transport = SyncRetryTransport(
        lib(flavour).HTTPTransport(**inner_options),
        policy=policy,
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
    )
    return transport, sleeps


def async_client(transport: RetryTransport, up: Upstream, timeout: Any = 5.0) -> Any:
    return transport._flavour.module.AsyncClient(
        transport=transport, base_url=up.url, timeout=timeout
    )


def sync_client(transport: SyncRetryTransport, up: Upstream, timeout: Any = 5.0) -> Any:
    return transport._flavour.module.Client(transport=transport, base_url=up.url, timeout=timeout)


def assert_slots_free(limiter: SharedLimiter, count: int) -> None:
    """Exactly ``count`` concurrency slots are free: none leaked, none released twice."""
    for _ in range(count):
        assert limiter.acquire_slot_sync(timeout=0)
    assert not limiter.acquire_slot_sync(timeout=0)
    for _ in range(count):
        limiter.release_slot()


# -- connection lost: before the response, mid-headers, mid-body ------------------------------

LOST_BEFORE_RESPONSE: list[Fault] = ["drop", "drop_mid_headers", "reset"]


@pytest.mark.parametrize("fault", LOST_BEFORE_RESPONSE)
async def test_connection_lost_before_the_response_is_retried(
    flavour: str, fault: Fault, upstream: Upstream
) -> None:
    upstream.script("/f", Reply(fault=fault), Reply(body=b"ok"))
    transport, sleeps = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/f", content=b"payload")
    assert response.content == b"ok"
    assert [r.content for r in upstream.received("/f")] == [b"payload", b"payload"]
    first = response.extensions["retry_history"][0]
    assert first.verdict is Verdict.TRANSIENT
    assert first.exception in {"RemoteProtocolError", "ReadError"}
    assert sleeps.waits == [0.25]
    assert in_flight(transport.transport) == 0


@pytest.mark.parametrize("fault", LOST_BEFORE_RESPONSE)
def test_connection_lost_before_the_response_is_retried_sync(
    flavour: str, fault: Fault, upstream: Upstream
) -> None:
    upstream.script("/f", Reply(fault=fault), Reply(body=b"ok"))
    transport, sleeps = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        response = client.post("/f", content=b"payload")
    assert response.content == b"ok"
    assert [r.content for r in upstream.received("/f")] == [b"payload", b"payload"]
    assert response.extensions["retry_history"][0].verdict is Verdict.TRANSIENT
    assert sleeps.waits == [0.25]
    assert in_flight(transport.transport) == 0


async def test_connection_lost_mid_error_body_is_retried(flavour: str, upstream: Upstream) -> None:
    upstream.script("/f", Reply(503, body=b"busy " * 100, fault="drop_mid_body"), Reply(body=b"ok"))
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/f", content=b"payload")
    assert response.content == b"ok"
    assert upstream.count("/f") == 2
    first = response.extensions["retry_history"][0]
    assert (first.status, first.exception) == (503, "RemoteProtocolError")
    assert in_flight(transport.transport) == 0


async def test_connection_lost_mid_error_body_every_time_raises_the_last_error(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/f", Reply(503, body=b"busy " * 100, fault="drop_mid_body"))
    transport, _ = make_async(flavour, RetryPolicy(max_attempts=3))
    async with async_client(transport, upstream) as client:
        with pytest.raises(exc(flavour, "RemoteProtocolError")) as raised:
            await client.post("/f", content=b"payload")
    assert upstream.count("/f") == 3
    assert "retry_transport: gave up after 3 attempts" in raised.value.__notes__
    assert in_flight(transport.transport) == 0


def test_connection_lost_mid_error_body_every_time_raises_the_last_error_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/f", Reply(503, body=b"busy " * 100, fault="drop_mid_body"))
    transport, _ = make_sync(flavour, RetryPolicy(max_attempts=3))
    with (
        sync_client(transport, upstream) as client,
        pytest.raises(exc(flavour, "RemoteProtocolError")) as raised,
    ):
        client.post("/f", content=b"payload")
    assert upstream.count("/f") == 3
    assert "retry_transport: gave up after 3 attempts" in raised.value.__notes__
    assert in_flight(transport.transport) == 0


async def test_connection_lost_mid_success_body_reaches_the_caller_unretried(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/f", Reply(body=b"0123456789", fault="drop_mid_body"), Reply(body=b"again"))
    transport, sleeps = make_async(flavour)
    received: list[bytes] = []

    async def read(response: Any) -> None:
        async for chunk in response.aiter_raw():
            received.append(chunk)

    async with async_client(transport, upstream) as client, client.stream("GET", "/f") as response:
        with pytest.raises(exc(flavour, "RemoteProtocolError")):
            await read(response)
    assert b"".join(received) == b"01234"
    assert upstream.count("/f") == 1
    assert sleeps.waits == []


async def test_stream_lost_before_content_is_resent_for_an_inference_post(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script(
        "/s",
        Reply(200, headers=SSE, chunks=[PREAMBLE, PREAMBLE], fault="drop_mid_body"),
        Reply(200, headers=SSE, chunks=[PREAMBLE, DELTA]),
    )
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/s", content=b"{}")
    assert response.content == PREAMBLE + DELTA
    assert upstream.count("/s") == 2
    assert response.extensions["retry_history"][0].reason == (
        "stream truncated before its first content"
    )
    assert in_flight(transport.transport) == 0


async def test_stream_lost_before_content_surfaces_from_iteration_when_not_resent(
    flavour: str, upstream: Upstream
) -> None:
    path = "/v1/threads/runs"  # creates server-side state: not re-sent without a key
    upstream.script(
        path, Reply(200, headers=SSE, chunks=[PREAMBLE, PREAMBLE], fault="drop_mid_body")
    )
    transport, sleeps = make_async(flavour)
    async with async_client(transport, upstream) as client:
        request = client.build_request("POST", path, content=b"{}")
        response = await client.send(request, stream=True)  # the 200 comes back, as unwrapped
        assert response.status_code == 200
        with pytest.raises(exc(flavour, "RemoteProtocolError")):
            await response.aread()
        await response.aclose()
    assert upstream.count(path) == 1
    assert sleeps.waits == []
    assert in_flight(transport.transport) == 0


async def test_stream_lost_before_content_is_resent_with_an_idempotency_key(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script(
        "/s",
        Reply(200, headers=SSE, chunks=[PREAMBLE, PREAMBLE], fault="drop_mid_body"),
        Reply(200, headers=SSE, chunks=[PREAMBLE, DELTA]),
    )
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/s", content=b"{}", headers={"Idempotency-Key": "k"})
    assert response.content == PREAMBLE + DELTA
    assert upstream.count("/s") == 2


# -- an upstream that accepts and never answers --------------------------------------------------


@pytest.mark.parametrize("capped", [False, True], ids=["fast-path", "concurrency-capped"])
async def test_a_hanging_upstream_is_cut_off_at_the_deadline(
    flavour: str, capped: bool, upstream: Upstream
) -> None:
    upstream.script("/h", Reply(fault="hang"))
    limiter = SharedLimiter(max_concurrency=2) if capped else None
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(), policy=RetryPolicy(deadline=0.15), limiter=limiter
    )
    async with async_client(transport, upstream, timeout=None) as client:
        # No timeout of the client's own: only the deadline can end this request.
        with anyio.fail_after(5), pytest.raises(exc(flavour, "ReadTimeout")):
            await client.get("/h")
    assert upstream.count("/h") == 1
    assert in_flight(transport.transport) == 0


@pytest.mark.parametrize("capped", [False, True], ids=["fast-path", "concurrency-capped"])
def test_a_hanging_upstream_is_cut_off_at_the_deadline_sync(
    flavour: str, capped: bool, upstream: Upstream
) -> None:
    upstream.script("/h", Reply(fault="hang"))
    limiter = SharedLimiter(max_concurrency=2) if capped else None
    transport = SyncRetryTransport(
        lib(flavour).HTTPTransport(), policy=RetryPolicy(deadline=0.15), limiter=limiter
    )
    start = time.monotonic()
    # The client's 10 s timeout is only a safety net: the deadline must end it long before.
    with (
        sync_client(transport, upstream, timeout=10.0) as client,
        pytest.raises(exc(flavour, "ReadTimeout")),
    ):
        client.get("/h")
    assert time.monotonic() - start < 5.0
    assert upstream.count("/h") == 1


async def test_a_retry_that_hangs_gets_only_the_deadlines_remainder(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/h", Reply(503, headers=(("retry-after", "0"),)), Reply(fault="hang"))
    sleeps = Sleeps()
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(), policy=RetryPolicy(deadline=0.15), sleep=sleeps
    )
    async with async_client(transport, upstream, timeout=None) as client:
        with anyio.fail_after(5), pytest.raises(exc(flavour, "ReadTimeout")):
            await client.get("/h")
    assert upstream.count("/h") == 2
    assert sleeps.waits == [0.0]


async def test_a_hanging_upstream_costs_max_attempts_read_timeouts_for_a_get(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/h", Reply(fault="hang"))
    transport, sleeps = make_async(flavour, RetryPolicy(max_attempts=3))
    async with async_client(transport, upstream, timeout=0.05) as client:
        with anyio.fail_after(5), pytest.raises(exc(flavour, "ReadTimeout")) as raised:
            await client.get("/h")
    assert upstream.count("/h") == 3
    assert sleeps.waits == [0.25, 0.5]
    assert "retry_transport: gave up after 3 attempts" in raised.value.__notes__


async def test_a_hanging_upstream_is_not_resent_for_a_post(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/h", Reply(fault="hang"))
    transport, sleeps = make_async(flavour)
    async with async_client(transport, upstream, timeout=0.05) as client:
        with anyio.fail_after(5), pytest.raises(exc(flavour, "ReadTimeout")):
            await client.post("/h", content=b"charge the card")
    assert upstream.count("/h") == 1
    assert sleeps.waits == []


# -- a slow trickle of an error body ---------------------------------------------------------


async def test_trickling_error_body_is_peeked_only_up_to_peek_limit(
    flavour: str, upstream: Upstream
) -> None:
    # 400 chunks 5 ms apart: two seconds to read it all; the peek must stop after 64 bytes.
    upstream.script("/t", Reply(503, chunks=[b"x" * 16] * 400, chunk_delay=0.005), Reply())
    transport, _ = make_async(flavour, RetryPolicy(peek_limit=64))
    async with async_client(transport, upstream) as client:
        with anyio.fail_after(1.5):
            response = await client.get("/t")
    assert response.status_code == 200
    assert upstream.count("/t") == 2


async def test_stalled_error_body_is_bounded_by_the_read_timeout(
    flavour: str, upstream: Upstream
) -> None:
    stalled = Reply(503, chunks=[b'{"error": ', b'"busy"}'], chunk_delay=30.0)
    upstream.script("/t", stalled, Reply(body=b"ok"))
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream, timeout=0.1) as client:
        with anyio.fail_after(5):
            response = await client.post("/t", content=b"x")
    assert response.content == b"ok"
    first = response.extensions["retry_history"][0]
    assert (first.status, first.exception, first.verdict) == (
        503,
        "ReadTimeout",
        Verdict.CONGESTION,
    )
    assert in_flight(transport.transport) == 0


async def test_trickling_error_body_does_not_hold_the_request_past_the_deadline(
    flavour: str, upstream: Upstream
) -> None:
    # 100 chunks 20 ms apart (two seconds), under peek_limit: only the deadline can cut it.
    chunks = [b"%03d-trickle\n" % n for n in range(100)]
    upstream.script("/t", Reply(503, chunks=chunks, chunk_delay=0.02))
    transport = RetryTransport(lib(flavour).AsyncHTTPTransport(), policy=RetryPolicy(deadline=0.2))
    async with async_client(transport, upstream) as client:
        with anyio.fail_after(1.0):
            async with client.stream("GET", "/t") as response:
                pass  # handed back (at the deadline) without reading the rest
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert response.extensions["retry_history"][0].elapsed < 1.0
    assert upstream.count("/t") == 1


def test_trickling_error_body_does_not_hold_the_request_past_the_deadline_sync(
    flavour: str, upstream: Upstream
) -> None:
    chunks = [b"%03d-trickle\n" % n for n in range(100)]
    upstream.script("/t", Reply(503, chunks=chunks, chunk_delay=0.02))
    transport = SyncRetryTransport(lib(flavour).HTTPTransport(), policy=RetryPolicy(deadline=0.2))
    start = time.monotonic()
    with sync_client(transport, upstream) as client, client.stream("GET", "/t") as response:
        assert time.monotonic() - start < 1.0
        assert response.status_code == 503
        first = next(response.iter_bytes())
    assert first.startswith(chunks[0])
    assert upstream.count("/t") == 1


async def test_a_trickling_stream_preamble_is_handed_on_at_the_deadline(
    flavour: str, upstream: Upstream
) -> None:
    # Keep-alive comments 20 ms apart for two seconds, never content: only the deadline ends
    # the hold (no retry could follow it anyway).
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=[b": keep-alive\n\n"] * 100, chunk_delay=0.02)
    )
    transport = RetryTransport(lib(flavour).AsyncHTTPTransport(), policy=RetryPolicy(deadline=0.15))
    async with async_client(transport, upstream) as client:
        with anyio.fail_after(1.0):
            async with client.stream("POST", "/sse", content=b"{}") as response:
                pass  # handed back without reading the rest
    assert response.status_code == 200
    assert response.extensions["retry_history"][0].verdict is None
    assert upstream.count("/sse") == 1


def test_a_trickling_stream_preamble_is_handed_on_at_the_deadline_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=[b": keep-alive\n\n"] * 100, chunk_delay=0.02)
    )
    transport = SyncRetryTransport(lib(flavour).HTTPTransport(), policy=RetryPolicy(deadline=0.15))
    start = time.monotonic()
    with sync_client(transport, upstream) as client, client.stream("POST", "/sse") as response:
        assert time.monotonic() - start < 1.0
        assert next(response.iter_bytes()).startswith(b": keep-alive\n\n")
    assert upstream.count("/sse") == 1


# -- Retry-After and its kin: malformed, huge, negative, non-ASCII, far-future ------------------

BACKOFF = [1.0]  # congestion backoff of the first retry, uniform(0, 2.0) drawn at 0.5
RETURNED_AT_ONCE: list[float] = []

RETRY_AFTER_CASES: list[tuple[str, tuple[tuple[str, str], ...], bytes, list[float]]] = [
    ("garbage", (("retry-after", "soon"),), b"", BACKOFF),
    ("negative", (("retry-after", "-5"),), b"", BACKOFF),
    ("exponent", (("retry-after", "1e3"),), b"", RETURNED_AT_ONCE),
    ("exponent under the cap", (("retry-after", "3e1"),), b"", [30.0]),
    ("overflowing exponent", (("retry-after", "1e999"),), b"", RETURNED_AT_ONCE),
    ("overflowing exponent, capital", (("retry-after", "1E400"),), b"", RETURNED_AT_ONCE),
    ("nan", (("retry-after", "NaN"),), b"", BACKOFF),
    ("infinity", (("retry-after", "inf"),), b"", BACKOFF),
    ("non-ascii digit", (("retry-after", "\xb2"),), b"", BACKOFF),
    ("non-ascii space", (("retry-after", "5\xa0"),), b"", BACKOFF),
    ("overlong", (("retry-after", "1" * 70 + "s"),), b"", BACKOFF),
    ("21 digits", (("retry-after", "9" * 21),), b"", RETURNED_AT_ONCE),
    ("70 digits", (("retry-after", "1" * 70),), b"", RETURNED_AT_ONCE),
    ("400 digits of ms", (("retry-after-ms", "9" * 400),), b"", RETURNED_AT_ONCE),
    ("two values", (("retry-after", "1"), ("retry-after", "3600")), b"", BACKOFF),
    ("year 10000", (("retry-after", "Fri, 31 Dec 10000 23:59:59 GMT"),), b"", BACKOFF),
    ("bad zone", (("retry-after", "Fri, 31 Dec 2100 23:59:59 +9999"),), b"", BACKOFF),
    ("huge seconds", (("retry-after", "9" * 20),), b"", RETURNED_AT_ONCE),
    ("an hour", (("retry-after", "3600"),), b"", RETURNED_AT_ONCE),
    ("far future", (("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),), b"", RETURNED_AT_ONCE),
    ("long past", (("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT"),), b"", [0.0]),
    ("just under the cap", (("retry-after", "59.5"),), b"", [59.5]),
    ("zero", (("retry-after", "0"),), b"", [0.0]),
    ("ms negative", (("retry-after-ms", "-1"),), b"", BACKOFF),
    ("ms exponent", (("retry-after-ms", "1e5"),), b"", RETURNED_AT_ONCE),
    ("ms overflowing exponent", (("retry-after-ms", "1e999"),), b"", RETURNED_AT_ONCE),
    ("ms huge", (("retry-after-ms", "9" * 20),), b"", RETURNED_AT_ONCE),
    ("ms an hour", (("x-ms-retry-after-ms", "3600001"),), b"", RETURNED_AT_ONCE),
    ("ms valid", (("retry-after-ms", "250"),), b"", [0.25]),
    ("ms garbage falls back", (("retry-after-ms", "NaN"), ("retry-after", "2")), b"", [2.0]),
    ("body huge", (), b'{"error": "try again in 999999999999h"}', RETURNED_AT_ONCE),
    ("body phrase", (), b'{"error": "try again in 7.5s"}', [7.5]),
    ("body field exponent", (), b'{"error": {"retry_after": 1e5}}', RETURNED_AT_ONCE),
    ("body field overflow", (), b'{"error": {"retry_after": 1e999}}', RETURNED_AT_ONCE),
]


@BACKEND_FLAVOUR_PAIRS
@pytest.mark.parametrize(
    ("headers", "body", "waits"),
    [case[1:] for case in RETRY_AFTER_CASES],
    ids=[case[0] for case in RETRY_AFTER_CASES],
)
async def test_server_named_waits_are_honoured_ignored_or_refused_never_overlong(
    flavour: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    waits: list[float],
    upstream: Upstream,
) -> None:
    upstream.script("/w", Reply(503, body, headers), Reply(body=b"ok"))
    policy = RetryPolicy(max_attempts=2)
    transport, sleeps = make_async(flavour, policy)
    async with async_client(transport, upstream) as client:
        response = await client.get("/w")
    assert sleeps.waits == waits
    assert all(0.0 <= wait <= policy.max_retry_after for wait in sleeps.waits)
    if waits:
        assert response.status_code == 200
        assert upstream.count("/w") == 2
    else:  # a wait that long means a quota: the 503 is handed back at once, blocking nobody
        assert response.status_code == 503
        assert upstream.count("/w") == 1
        assert transport.limiter.blocked_for() == 0.0


@pytest.mark.parametrize(
    ("headers", "body", "waits"),
    [case[1:] for case in RETRY_AFTER_CASES],
    ids=[case[0] for case in RETRY_AFTER_CASES],
)
def test_server_named_waits_are_honoured_ignored_or_refused_never_overlong_sync(
    headers: tuple[tuple[str, str], ...], body: bytes, waits: list[float], upstream: Upstream
) -> None:
    upstream.script("/w", Reply(503, body, headers), Reply(body=b"ok"))
    transport, sleeps = make_sync("httpx", RetryPolicy(max_attempts=2))
    with sync_client(transport, upstream) as client:
        response = client.get("/w")
    assert sleeps.waits == waits
    assert upstream.count("/w") == (2 if waits else 1)
    assert response.status_code == (200 if waits else 503)


async def test_a_server_wait_past_the_deadline_returns_at_once(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/w", Reply(429, headers=(("retry-after", "30"),)), Reply())
    transport, sleeps = make_async(flavour, RetryPolicy(deadline=10.0))
    async with async_client(transport, upstream) as client:
        response = await client.get("/w")
    assert response.status_code == 429
    assert sleeps.waits == []
    assert upstream.count("/w") == 1


async def test_a_server_wait_ending_at_the_deadline_returns_at_once(
    flavour: str, upstream: Upstream
) -> None:
    # Waiting would leave no time to send in: a zero timeout makes httpx fail after writing
    # the request (the upstream may act on it) and the 503 would be lost for a bogus error.
    upstream.script("/w", Reply(503, b"busy", (("retry-after", "10"),)), Reply())
    transport, sleeps = make_async(flavour, RetryPolicy(deadline=10.0))
    async with async_client(transport, upstream) as client:
        response = await client.get("/w")
    assert (response.status_code, response.content) == (503, b"busy")
    assert sleeps.waits == []
    assert upstream.count("/w") == 1


def blocks_the_limiter(limiter: SharedLimiter) -> Callable[[RetryEvent], None]:
    """A hook that, as another request's 429 would, blocks the limiter for 100 s at a retry."""

    def hook(event: RetryEvent) -> None:
        if event.kind == "retry":
            limiter.block_sync(100.0)

    return hook


async def test_a_block_past_the_deadline_hands_back_the_last_response_readable(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/w", Reply(503, body=b"busy, closed before the retry"), Reply())
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(),
        policy=RetryPolicy(deadline=10.0),
        limiter=limiter,
        sleep=sleeps,
        clock=sleeps.clock,
        random=lambda: 0.5,
        hooks=[blocks_the_limiter(limiter)],
    )
    async with async_client(transport, upstream) as client:
        response = await client.get("/w")
    assert response.status_code == 503
    assert response.content == b"busy, closed before the retry"
    assert response.headers["x-should-retry"] == "false"
    assert upstream.count("/w") == 1
    assert in_flight(transport.transport) == 0


def test_a_block_past_the_deadline_hands_back_the_last_response_readable_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/w", Reply(503, body=b"busy, closed before the retry"), Reply())
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)
    transport = SyncRetryTransport(
        lib(flavour).HTTPTransport(),
        policy=RetryPolicy(deadline=10.0),
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
        hooks=[blocks_the_limiter(limiter)],
    )
    with sync_client(transport, upstream) as client:
        response = client.get("/w")
    assert response.content == b"busy, closed before the retry"
    assert upstream.count("/w") == 1


# -- huge bodies and headers: memory stays bounded ------------------------------------------------


def big_chunks(seed: int) -> Callable[[], Iterator[bytes]]:
    """8 MiB in 128 chunks of 64 KiB, each of its own byte, made lazily (flat server memory)."""
    return lambda: (bytes([(seed + n) % 256]) * 65536 for n in range(128))


def big_digest(seed: int) -> str:
    digest = hashlib.sha256()
    for chunk in big_chunks(seed)():
        digest.update(chunk)
    return digest.hexdigest()


# The peek may hold peek_limit plus one chunk; everything else here (the server thread's
# chunk, the client's read buffers) is a few hundred KiB. A transport that buffered the
# 8 MiB body would pass 8 MiB.
MEMORY_CEILING = 2 * MIB


async def test_8_mib_error_bodies_are_peeked_in_bounded_memory_and_handed_back_whole(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/big", Reply(500, chunks=big_chunks(0)), Reply(404, chunks=big_chunks(7)))
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        tracemalloc.start()
        try:
            async with client.stream("GET", "/big") as response:
                _, peak_at_hand_back = tracemalloc.get_traced_memory()
                digest = hashlib.sha256()
                size = 0
                async for chunk in response.aiter_raw():
                    digest.update(chunk)
                    size += len(chunk)
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 404
    assert upstream.count("/big") == 2  # the first 8 MiB 500 was discarded and retried
    assert peak_at_hand_back < MEMORY_CEILING
    assert peak < MEMORY_CEILING
    assert size == 8 * MIB
    assert digest.hexdigest() == big_digest(7)
    assert in_flight(transport.transport) == 0


def test_8_mib_error_bodies_are_peeked_in_bounded_memory_and_handed_back_whole_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/big", Reply(500, chunks=big_chunks(0)), Reply(404, chunks=big_chunks(7)))
    transport, _ = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        tracemalloc.start()
        try:
            with client.stream("GET", "/big") as response:
                digest = hashlib.sha256()
                for chunk in response.iter_raw():
                    digest.update(chunk)
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 404
    assert upstream.count("/big") == 2
    assert peak < MEMORY_CEILING
    assert digest.hexdigest() == big_digest(7)


async def test_a_1_mib_header_fails_in_the_http_library_and_is_retried_as_a_dropped_connection(
    flavour: str, upstream: Upstream
) -> None:
    # h11 refuses a response head over 100 KiB (httpcore's limit): the wrapped transport raises
    # RemoteProtocolError, which is a dropped connection to us; retried, then re-raised as is.
    upstream.script("/hdr", Reply(503, b"busy", (("x-big", "v" * MIB),)))
    transport, sleeps = make_async(flavour, RetryPolicy(max_attempts=3))
    async with async_client(transport, upstream) as client:
        with anyio.fail_after(10), pytest.raises(exc(flavour, "RemoteProtocolError")):
            await client.get("/hdr")
    assert upstream.count("/hdr") == 3
    assert sleeps.waits == [0.25, 0.5]
    assert in_flight(transport.transport) == 0


async def test_a_1_mib_header_once_is_recovered_from(flavour: str, upstream: Upstream) -> None:
    upstream.script("/hdr", Reply(200, b"huge", (("x-big", "v" * MIB),)), Reply(body=b"ok"))
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/hdr", content=b"x")
    assert response.content == b"ok"
    assert upstream.count("/hdr") == 2


def test_a_1_mib_header_fails_in_the_http_library_and_is_retried_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/hdr", Reply(503, b"busy", (("x-big", "v" * MIB),)))
    transport, _ = make_sync(flavour, RetryPolicy(max_attempts=3))
    with (
        sync_client(transport, upstream) as client,
        pytest.raises(exc(flavour, "RemoteProtocolError")),
    ):
        client.get("/hdr")
    assert upstream.count("/hdr") == 3


# -- garbage event streams ----------------------------------------------------------------------


async def test_10_mib_stream_without_a_newline_is_handed_on_in_bounded_memory(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=lambda: (b"a" * 65536 for _ in range(160)))
    )
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        tracemalloc.start()
        try:
            async with client.stream("POST", "/sse", content=b"{}") as response:
                _, peak_at_hand_back = tracemalloc.get_traced_memory()
                size = 0
                async for chunk in response.aiter_raw():
                    assert chunk.count(b"a") == len(chunk)
                    size += len(chunk)
        finally:
            tracemalloc.stop()
    assert size == 10 * MIB
    assert peak_at_hand_back < MEMORY_CEILING
    assert upstream.count("/sse") == 1


def test_10_mib_stream_without_a_newline_is_handed_on_in_bounded_memory_sync(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=lambda: (b"a" * 65536 for _ in range(160)))
    )
    transport, _ = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        tracemalloc.start()
        try:
            with client.stream("POST", "/sse", content=b"{}") as response:
                size = sum(len(chunk) for chunk in response.iter_raw())
                _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert size == 10 * MIB
    assert peak < MEMORY_CEILING
    assert upstream.count("/sse") == 1


BINARY = bytes(range(256)) * 64 + b"\r\n\x00\xff\xfe" + bytes(range(255, -1, -1)) * 64
GARBAGE_STREAMS = {
    "binary": [BINARY[i : i + 1000] for i in range(0, len(BINARY), 1000)],
    "binary data field": [b"data: \xff\xfe\x00\x01\n\n", b"data: {\xc3\x28}\n\n", BINARY],
    "bad utf-8 event name": [b"event: \xff\xfe\ndata: {}\n\n", BINARY],
    "endless preamble": [b'event: ping\ndata: {"type":"ping"}\n\n'] * 3000 + [OVERLOADED],
}


@pytest.mark.parametrize("chunks", list(GARBAGE_STREAMS.values()), ids=list(GARBAGE_STREAMS))
async def test_garbage_streams_are_handed_on_byte_for_byte_and_never_retried(
    flavour: str, chunks: list[bytes], upstream: Upstream
) -> None:
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=chunks), Reply(200, headers=SSE, chunks=[DELTA])
    )
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/sse", content=b"{}")
    assert response.content == b"".join(chunks)
    assert upstream.count("/sse") == 1


@pytest.mark.parametrize("chunks", list(GARBAGE_STREAMS.values()), ids=list(GARBAGE_STREAMS))
def test_garbage_streams_are_handed_on_byte_for_byte_and_never_retried_sync(
    flavour: str, chunks: list[bytes], upstream: Upstream
) -> None:
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=chunks), Reply(200, headers=SSE, chunks=[DELTA])
    )
    transport, _ = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        response = client.post("/sse", content=b"{}")
    assert response.content == b"".join(chunks)
    assert upstream.count("/sse") == 1


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


async def test_events_split_into_one_byte_chunks_are_read_as_whole_events(
    flavour: str, upstream: Upstream
) -> None:
    error = one_byte_chunks(PREAMBLE + OVERLOADED)
    content = one_byte_chunks(PREAMBLE + DELTA + b"event: message_stop\ndata: {}\n\n")
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=error), Reply(200, headers=SSE, chunks=content)
    )
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/sse", content=b"{}")
    assert upstream.count("/sse") == 2  # the error event was recognised across 200+ chunks
    assert response.extensions["retry_history"][0].verdict is Verdict.CONGESTION
    assert response.content == b"".join(content)


def test_events_split_into_one_byte_chunks_are_read_as_whole_events_sync(
    flavour: str, upstream: Upstream
) -> None:
    error = one_byte_chunks(PREAMBLE + OVERLOADED)
    content = one_byte_chunks(PREAMBLE + DELTA)
    upstream.script(
        "/sse", Reply(200, headers=SSE, chunks=error), Reply(200, headers=SSE, chunks=content)
    )
    transport, _ = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        response = client.post("/sse", content=b"{}")
    assert upstream.count("/sse") == 2
    assert response.content == PREAMBLE + DELTA


# -- cancellation: during backoff, a limiter wait, the peek, a hang --------------------------------


async def cancel_once_started(
    call: Callable[[], Awaitable[object]], started: Callable[[], Awaitable[object]]
) -> list[object]:
    """Run ``call``, cancel it once ``started`` returns; what it returned (nothing, if the
    cancellation propagated). Bounded: a cancellation that does not propagate fails here."""
    returned: list[object] = []
    scope = anyio.CancelScope()

    async def request() -> None:
        with scope:
            returned.append(await call())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request)
            await started()
            scope.cancel()
    assert scope.cancelled_caught
    return returned


async def a_later_request_gets_through(client: Any, path: str) -> None:
    with anyio.fail_after(5):
        response = await client.get(path)
    assert response.status_code == 200


async def test_cancel_during_backoff(flavour: str, upstream: Upstream) -> None:
    upstream.script("/c", Reply(503), Reply(body=b"ok"))
    upstream.script("/later", Reply())
    clock = FakeClock()
    limiter = SharedLimiter(max_concurrency=1, clock=clock)
    sleep = HeldSleep()
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(), limiter=limiter, sleep=sleep, clock=clock
    )
    async with async_client(transport, upstream) as client:
        returned = await cancel_once_started(lambda: client.get("/c"), sleep.entered.wait)
        assert returned == []
        assert in_flight(transport.transport) == 0
        assert_slots_free(limiter, 1)
        clock.now += 60.0  # past the block the 503 set
        await a_later_request_gets_through(client, "/later")
    assert upstream.count("/c") == 1  # nothing was resent after the cancellation
    assert len(sleep.waits) == 1


async def test_cancel_while_waiting_for_a_concurrency_slot(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/c", Reply())
    limiter = SharedLimiter(max_concurrency=1)
    transport, _ = make_async(flavour, limiter=limiter)
    async with async_client(transport, upstream) as client:
        await limiter.acquire_slot()  # someone else holds the only slot
        returned = await cancel_once_started(lambda: client.get("/c"), anyio.wait_all_tasks_blocked)
        assert returned == []
        assert upstream.count("/c") == 0
        limiter.release_slot()
        assert_slots_free(limiter, 1)
        await a_later_request_gets_through(client, "/c")
    assert upstream.count("/c") == 1


async def test_cancel_while_waiting_out_a_shared_block(flavour: str, upstream: Upstream) -> None:
    upstream.script("/c", Reply())
    clock = FakeClock()
    limiter = SharedLimiter(max_concurrency=1, clock=clock)
    await limiter.block(30.0)
    sleep = HeldSleep()
    transport = RetryTransport(
        lib(flavour).AsyncHTTPTransport(), limiter=limiter, sleep=sleep, clock=clock
    )
    async with async_client(transport, upstream) as client:
        returned = await cancel_once_started(lambda: client.get("/c"), sleep.entered.wait)
        assert returned == []
        assert sleep.waits[0] >= 30.0
        assert upstream.count("/c") == 0
        clock.now += 31.0
        assert_slots_free(limiter, 1)
        await a_later_request_gets_through(client, "/c")
    assert upstream.count("/c") == 1


def signalling(flavour: str, arrived: anyio.Event) -> Any:
    """An httpx/httpx2 transport that sets ``arrived`` when a response's head has come in."""
    module = lib(flavour)

    class Signalling(module.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.inner = module.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            response = await self.inner.handle_async_request(request)
            arrived.set()
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Signalling()


@pytest.mark.parametrize("kind", ["error body", "stream preamble"])
async def test_cancel_during_the_peek(flavour: str, kind: str, upstream: Upstream) -> None:
    if kind == "error body":
        stalled = Reply(503, chunks=[b'{"error": ', b'"busy"}'], chunk_delay=30.0)
    else:
        stalled = Reply(200, headers=SSE, chunks=[PREAMBLE, DELTA], chunk_delay=30.0)
    upstream.script("/c", stalled, Reply(body=b"resent"))
    upstream.script("/later", Reply())
    arrived = anyio.Event()
    limiter = SharedLimiter(max_concurrency=1)
    transport, sleeps = make_async(flavour, limiter=limiter, inner=signalling(flavour, arrived))

    async def peeking() -> None:
        await arrived.wait()
        await anyio.wait_all_tasks_blocked()

    async with async_client(transport, upstream) as client:
        returned = await cancel_once_started(lambda: client.post("/c", content=b"x"), peeking)
        assert returned == []
        wrapped: Any = transport.transport
        assert in_flight(wrapped.inner) == 0  # the peeked response was closed
        assert_slots_free(limiter, 1)
        await a_later_request_gets_through(client, "/later")
    assert upstream.count("/c") == 1
    assert sleeps.waits == []


async def test_cancel_while_the_upstream_hangs(flavour: str, upstream: Upstream) -> None:
    upstream.script("/c", Reply(fault="hang"), Reply())
    upstream.script("/later", Reply())
    limiter = SharedLimiter(max_concurrency=1)
    transport, sleeps = make_async(flavour, limiter=limiter)

    async def hanging() -> None:
        await anyio.to_thread.run_sync(upstream.wait_received, 1)
        await anyio.wait_all_tasks_blocked()

    async with async_client(transport, upstream, timeout=None) as client:
        returned = await cancel_once_started(lambda: client.get("/c"), hanging)
        assert returned == []
        assert in_flight(transport.transport) == 0
        assert_slots_free(limiter, 1)
        await a_later_request_gets_through(client, "/later")
    assert upstream.count("/c") == 1
    assert sleeps.waits == []


# -- pool exhaustion -----------------------------------------------------------------------------

POOL_ROUNDS = 1000


def one_retry_each(up: Upstream, rounds: int) -> None:
    """``rounds`` requests to /p that each get a 503, then a 200."""
    up.script("/p", *[Reply(503, body=b'{"error": "busy"}'), Reply(body=b"ok")] * rounds)


@BACKEND_FLAVOUR_PAIRS
async def test_a_pool_of_one_survives_a_thousand_retried_requests(
    flavour: str, upstream: Upstream
) -> None:
    one_retry_each(upstream, POOL_ROUNDS)
    sleeps = Sleeps()
    # Pacing off: the 503s would otherwise slow the origin's rate, adding pacing waits to
    # the one backoff per round counted below.
    limiter = SharedLimiter(budget=None, clock=sleeps.clock, pacing=False)
    module = lib(flavour)
    limits = module.Limits(max_connections=1, max_keepalive_connections=1)
    transport, _ = make_async(flavour, limiter=limiter, sleeps=sleeps, limits=limits)
    # A discarded response left open holds the only connection: the next request would wait
    # for the pool and fail with PoolTimeout after a second.
    timeout = module.Timeout(5.0, pool=1.0)
    async with async_client(transport, upstream, timeout=timeout) as client:
        with anyio.fail_after(30):
            for _ in range(POOL_ROUNDS):
                response = await client.get("/p")
                assert response.content == b"ok"
        assert in_flight(transport.transport) == 0
    assert upstream.count("/p") == 2 * POOL_ROUNDS
    assert len(sleeps.waits) == POOL_ROUNDS
    assert upstream.connections_accepted == 1  # each error body was read out and reused


def test_a_pool_of_one_survives_a_thousand_retried_requests_sync(
    flavour: str, upstream: Upstream
) -> None:
    one_retry_each(upstream, POOL_ROUNDS)
    sleeps = Sleeps()
    limiter = SharedLimiter(budget=None, clock=sleeps.clock)
    module = lib(flavour)
    limits = module.Limits(max_connections=1, max_keepalive_connections=1)
    transport, _ = make_sync(flavour, limiter=limiter, sleeps=sleeps, limits=limits)
    timeout = module.Timeout(5.0, pool=1.0)
    with sync_client(transport, upstream, timeout=timeout) as client:
        for _ in range(POOL_ROUNDS):
            assert client.get("/p").content == b"ok"
        assert in_flight(transport.transport) == 0
    assert upstream.count("/p") == 2 * POOL_ROUNDS
    assert upstream.connections_accepted == 1


async def test_a_pool_of_one_survives_error_bodies_larger_than_the_peek(
    flavour: str, upstream: Upstream
) -> None:
    big = Reply(503, body=b"x" * 4096)
    upstream.script("/p", *[big, Reply(body=b"ok")] * 50)
    sleeps = Sleeps()
    limiter = SharedLimiter(budget=None, clock=sleeps.clock)
    module = lib(flavour)
    transport, _ = make_async(
        flavour,
        RetryPolicy(peek_limit=100),
        limiter=limiter,
        sleeps=sleeps,
        limits=module.Limits(max_connections=1),
    )
    async with async_client(transport, upstream, timeout=module.Timeout(5.0, pool=1.0)) as client:
        with anyio.fail_after(20):
            for _ in range(50):
                assert (await client.get("/p")).content == b"ok"
        assert in_flight(transport.transport) == 0
    assert upstream.count("/p") == 100


# -- request bodies that cannot be replayed, and files that can ----------------------------------


async def test_an_async_generator_body_is_sent_at_most_once(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/b", Reply(503), Reply())
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        sent.append(1)
        yield b"part one, "
        yield b"part two"

    transport, sleeps = make_async(flavour)
    async with async_client(transport, upstream) as client:
        response = await client.post("/b", content=body())
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert response.extensions["retry_history"][0].delay is None
    assert [r.content for r in upstream.received("/b")] == [b"part one, part two"]
    assert sent == [1]
    assert sleeps.waits == []


async def test_an_async_generator_body_is_not_resent_after_a_reset(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/b", Reply(fault="reset"), Reply())

    async def body() -> AsyncIterator[bytes]:
        yield b"once"

    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        with pytest.raises(exc(flavour, "TransportError")):
            await client.post("/b", content=body())
    assert upstream.count("/b") == 1


def refusing_once(flavour: str) -> Any:
    """A transport whose first attempt fails to connect (nothing sent), then the real one."""
    module = lib(flavour)

    class RefusingOnce(module.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.inner = module.AsyncHTTPTransport()
            self.refused = 0

        async def handle_async_request(self, request: Any) -> Any:
            if not self.refused:
                self.refused += 1
                raise module.ConnectError("connection refused", request=request)
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    return RefusingOnce()


async def test_an_async_generator_body_is_sent_after_a_connect_error(
    flavour: str, upstream: Upstream
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"intact"

    inner = refusing_once(flavour)
    transport, _ = make_async(flavour, inner=inner)
    async with async_client(transport, upstream) as client:
        response = await client.post("/b", content=body())
    assert response.status_code == 200
    assert inner.refused == 1
    assert [r.content for r in upstream.received("/b")] == [b"intact"]


class Unseekable(io.RawIOBase):
    """A file object that can be read once, like a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_sync_generator_and_read_once_file_bodies_are_sent_at_most_once(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/b", DEGRADED)  # a transient 400: retried if the body allowed it

    def generator() -> Iterator[bytes]:
        yield b"generated"

    transport, sleeps = make_sync(flavour)
    with sync_client(transport, upstream) as client:
        assert client.post("/b", content=generator()).status_code == 400
        assert client.post("/b", content=Unseekable(b"read once")).status_code == 400
        files = {"upload": ("a.txt", Unseekable(b"multipart once"), "text/plain")}
        assert client.post("/b", files=files).status_code == 400
    bodies = [r.content for r in upstream.received("/b")]
    assert bodies[:2] == [b"generated", b"read once"]
    assert b"multipart once" in bodies[2]
    assert len(bodies) == 3
    assert sleeps.waits == []


@pytest.mark.parametrize("kind", ["disk file", "BytesIO"])
def test_a_seekable_file_body_is_replayed_identically(
    flavour: str, kind: str, upstream: Upstream
) -> None:
    upstream.script("/b", Reply(503), Reply(502), Reply(body=b"ok"))
    data = bytes(range(256)) * 300  # 75 KiB: more than one read of the file
    with tempfile.TemporaryFile() if kind == "disk file" else io.BytesIO() as file:
        file.write(data)
        file.seek(0)
        transport, sleeps = make_sync(flavour)
        with sync_client(transport, upstream) as client:
            response = client.post("/b", content=file)
    assert response.content == b"ok"
    assert [r.content for r in upstream.received("/b")] == [data] * 3
    assert len(sleeps.waits) == 2


async def test_a_seekable_multipart_file_is_replayed_identically(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/b", Reply(503), Reply(body=b"ok"))
    data = b"file contents " * 5000
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        transport, _ = make_async(flavour)
        async with async_client(transport, upstream) as client:
            response = await client.post("/b", files={"upload": ("a.bin", file)})
    assert response.content == b"ok"
    first, second = (r.content for r in upstream.received("/b"))
    assert first == second
    assert data in first


async def test_an_unseekable_multipart_file_is_sent_at_most_once(
    flavour: str, upstream: Upstream
) -> None:
    upstream.script("/b", Reply(503), Reply())
    transport, _ = make_async(flavour)
    async with async_client(transport, upstream) as client:
        files = {"upload": ("a.txt", Unseekable(b"multipart once"), "text/plain")}
        response = await client.post("/b", files=files)
    assert response.status_code == 503
    assert upstream.count("/b") == 1


# -- concurrency: many requests, mixed verdicts, one limiter ------------------------------------

# kind: (its replies, the final status, the attempts it takes)
MIXED: dict[str, tuple[tuple[Reply, ...], int, int]] = {
    "ok": ((OK,), 200, 1),
    "rate-limited": ((RATE_LIMITED, OK), 200, 2),
    "degraded": ((DEGRADED, OK), 200, 2),
    "bad-key": ((BAD_KEY,), 401, 1),
    "odd-400": ((ODD_400,), 400, 3),
    "dropped": ((Reply(fault="drop"), OK), 200, 2),
}
KINDS = list(MIXED)


def script_mixed(up: Upstream, count: int) -> list[str]:
    paths = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        up.script(f"/{kind}/{n}", *MIXED[kind][0])
        paths.append(f"/{kind}/{n}")
    return paths


def expected_status(path: str) -> int:
    return MIXED[path.split("/")[1]][1]


def expected_attempts(paths: list[str]) -> int:
    return sum(MIXED[path.split("/")[1]][2] for path in paths)


async def test_200_concurrent_requests_with_mixed_verdicts_share_one_limiter(
    flavour: str, upstream: Upstream
) -> None:
    paths = script_mixed(upstream, 200)
    sleeps = YieldingSleeps()
    limiter = SharedLimiter(budget=None, max_concurrency=8, clock=sleeps.clock)
    # Two transports share the limiter, as two clients to one upstream would.
    transports = [make_async(flavour, limiter=limiter, sleeps=sleeps)[0] for _ in range(2)]
    clients = [async_client(transport, upstream) for transport in transports]
    statuses: dict[str, int] = {}

    async def send(client: Any, path: str) -> None:
        statuses[path] = (await client.post(path, json={"n": path})).status_code

    # A guard against a lost wake-up (a hang), not a timing check: generous, so that a loaded
    # machine serving 200 real connections is not taken for one.
    with anyio.fail_after(120):
        async with clients[0], clients[1], anyio.create_task_group() as tg:
            for n, path in enumerate(paths):
                tg.start_soon(send, clients[n % 2], path)
    assert statuses == {path: expected_status(path) for path in paths}
    assert upstream.count() == expected_attempts(paths)
    assert_slots_free(limiter, 8)
    assert all(in_flight(transport.transport) == 0 for transport in transports)


def test_200_concurrent_requests_with_mixed_verdicts_share_one_limiter_sync(
    flavour: str, upstream: Upstream
) -> None:
    paths = script_mixed(upstream, 200)
    clock = LockedClock()
    limiter = SharedLimiter(budget=None, max_concurrency=4, clock=clock)
    transport = SyncRetryTransport(
        lib(flavour).HTTPTransport(),
        limiter=limiter,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: 0.5,
    )
    with (
        sync_client(transport, upstream) as client,
        concurrent.futures.ThreadPoolExecutor(32) as pool,
    ):
        futures = {path: pool.submit(client.post, path, json={"n": path}) for path in paths}
        _, pending = concurrent.futures.wait(futures.values(), timeout=120)
        if pending:  # a lost wake-up: free the stuck threads, so that this fails, not hangs
            with contextlib.suppress(RuntimeError):
                for _ in range(1000):
                    limiter.release_slot()
        assert not pending
        statuses = {path: future.result().status_code for path, future in futures.items()}
    assert statuses == {path: expected_status(path) for path in paths}
    assert upstream.count() == expected_attempts(paths)
    assert_slots_free(limiter, 4)
