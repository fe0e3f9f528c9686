"""RedisLimiter against a real Redis-protocol server (Valkey; Redis too when CI names it)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import redis
import redis.asyncio

from retry_transport._budget import RetryBudget
from retry_transport._limiter import Limiter, SharedLimiter
from retry_transport.redis import RedisLimiter, RedisStore, _seconds_left

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

pytestmark = pytest.mark.redis

# The limiter's Redis timeout where a live server must answer: generous, so that a loaded
# machine is not taken for an outage (the default, 0.1 s, is for production).
LIVE_TIMEOUT = 5.0
# The timeout in the outage tests: a frozen server costs each one this long; a live reply (before
# and after the outage) must still come within it.
OUTAGE_TIMEOUT = 0.5
# Generous wall-clock bound for one limiter call while Redis is dead or frozen (the timeout and
# then some; redis-py's default retries alone would take 2.5-5 s).
BOUND = OUTAGE_TIMEOUT + 1.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex}"


Client = redis.Redis | redis.asyncio.Redis


def make_client(server: RedisServer, kind: str) -> Client:
    if kind == "async":
        return redis.asyncio.Redis.from_url(server.url)
    return redis.Redis.from_url(server.url)


async def close_client(client: Client) -> None:
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    else:
        client.close()


@asynccontextmanager
async def replicas(
    server: RedisServer, kind: str, clocks: list[FakeClock], **kwargs: Any
) -> AsyncIterator[list[RedisLimiter]]:
    """One RedisLimiter per clock, each with its own client (as separate replicas would be).

    Pacing off unless asked for: these tests are of the limiter-wide block and Redis failures.
    """
    kwargs.setdefault("name", unique_name())
    kwargs.setdefault("random", lambda: 0.0)
    kwargs.setdefault("pacing", False)
    kwargs.setdefault("timeout", LIVE_TIMEOUT)
    clients = [make_client(server, kind) for _ in clocks]
    limiters = [RedisLimiter(c, clock=k, **kwargs) for c, k in zip(clients, clocks, strict=True)]
    try:
        yield limiters
    finally:
        for limiter in limiters:
            limiter.close()
        for client in clients:
            await close_client(client)


@contextmanager
def sync_replicas(
    server: RedisServer, clocks: list[FakeClock], **kwargs: Any
) -> Iterator[list[RedisLimiter]]:
    kwargs.setdefault("name", unique_name())
    kwargs.setdefault("random", lambda: 0.0)
    kwargs.setdefault("pacing", False)
    kwargs.setdefault("timeout", LIVE_TIMEOUT)
    clients = [redis.Redis.from_url(server.url) for _ in clocks]
    limiters = [RedisLimiter(c, clock=k, **kwargs) for c, k in zip(clients, clocks, strict=True)]
    try:
        yield limiters
    finally:
        for limiter in limiters:
            limiter.close()
        for client in clients:
            client.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``kind``: which redis-py client the limiters get, on the event loops it works on.

    A sync client serves async code on asyncio and trio; redis.asyncio runs on asyncio only
    (`test_asyncio_client_on_trio_raises_type_error`).
    """
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", "kind"),
            [("asyncio", "sync"), ("trio", "sync"), ("asyncio", "async")],
            ids=["asyncio-sync", "trio-sync", "asyncio-async"],
        )


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client for looking at the server directly."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "retry_transport" and r.levelno == logging.WARNING
    ]


def infos_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "retry_transport" and r.levelno == logging.INFO]


# -- construction ------------------------------------------------------------------------


def test_importing_the_package_does_not_import_redis() -> None:
    code = (
        "import sys, retry_transport\n"
        "assert 'redis' not in sys.modules, 'redis imported'\n"
        "assert 'retry_transport.redis' not in sys.modules, 'retry_transport.redis imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_redis_limiter_satisfies_the_limiter_protocol(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    limiter: Limiter = RedisLimiter(client, name=unique_name(), timeout=LIVE_TIMEOUT)
    assert limiter.gate_sync() == 0.0
    assert isinstance(limiter, RedisLimiter)
    limiter.close()
    client.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"timeout": 0.0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"retry_interval": -1.0}, "retry_interval"),
        ({"retry_interval": float("inf")}, "retry_interval"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"timeout": "0.1"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"retry_interval": "5"}, "retry_interval"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(
    kwargs: dict[str, Any], field: str
) -> None:
    kwargs.setdefault("name", "upstream")
    client = redis.Redis(port=1)
    with pytest.raises(ValueError, match=field):
        RedisLimiter(client, **kwargs)
    client.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": 5}, "name"),
        ({"budget": "x"}, "budget"),
        ({"clock": 1.0}, "clock"),
        ({"random": None}, "random"),
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error_naming_them(
    kwargs: dict[str, Any], field: str
) -> None:
    kwargs.setdefault("name", "upstream")
    client = redis.Redis(port=1)
    with pytest.raises(TypeError, match=field):
        RedisLimiter(client, **kwargs)
    client.close()


def test_a_redis_limiter_is_a_shared_limiter_over_a_redis_store() -> None:
    client = redis.Redis(port=1)
    limiter = RedisLimiter(client, name="deepseek")
    assert isinstance(limiter, SharedLimiter)
    assert isinstance(limiter.store, RedisStore)
    assert limiter.scope == "deepseek"
    assert limiter.store.key("deepseek") == limiter.key
    limiter.close()
    client.close()


def test_redis_store_validates_its_arguments() -> None:
    client = redis.Redis(port=1)
    with pytest.raises(ValueError, match=r"RedisStore\.timeout"):
        RedisStore(client, timeout=0.0)
    with pytest.raises(TypeError, match="label"):
        RedisStore(client, label=3)  # type: ignore[arg-type]
    client.close()


def test_a_client_of_another_kind_raises_type_error() -> None:
    with pytest.raises(TypeError, match="redis_client"):
        RedisLimiter(object(), name="upstream")  # type: ignore[arg-type]


def test_a_sync_client_on_a_special_pool_raises_type_error() -> None:
    class SpecialPool(redis.ConnectionPool):
        pass

    client = redis.Redis(connection_pool=SpecialPool(port=1))
    with pytest.raises(TypeError, match="SpecialPool"):
        RedisLimiter(client, name="upstream")
    client.close()


def test_a_block_ending_within_the_millisecond_still_holds() -> None:
    client = redis.Redis(port=1)
    limiter = RedisLimiter(client, name="upstream", clock=FakeClock(), random=lambda: 0.0)
    assert limiter._learn(_seconds_left(-2)) == 0.0  # PTTL of a missing key
    assert limiter._learn(_seconds_left(0)) == pytest.approx(0.001)
    limiter.close()
    client.close()


def test_key_is_derived_from_the_name() -> None:
    client = redis.Redis(port=1)
    limiter = RedisLimiter(client, name="deepseek")
    assert limiter.name == "deepseek"
    assert limiter.key == "retry_transport:block:deepseek"
    limiter.close()
    client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_asyncio_client_on_trio_raises_type_error(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    limiter = RedisLimiter(client, name=unique_name())
    with pytest.raises(TypeError, match="trio"):
        await limiter.gate()
    with pytest.raises(TypeError, match="trio"):
        await limiter.block(1.0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_client_refuses_sync_callers(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    limiter = RedisLimiter(client, name=unique_name())
    with pytest.raises(TypeError, match="sync"):
        limiter.gate_sync()
    with pytest.raises(TypeError, match="sync"):
        limiter.block_sync(1.0)
    await client.aclose()


# -- the shared block --------------------------------------------------------------------


@pytest.mark.anyio
async def test_block_set_by_one_replica_holds_the_other(
    redis_server: RedisServer, kind: str
) -> None:
    async with replicas(redis_server, kind, [FakeClock(), FakeClock()]) as (a, b):
        assert await b.gate() == 0.0
        await a.block(5.0)
        wait = await b.gate()
        assert 4.5 < wait <= 5.0
        assert 4.5 < b.blocked_for() <= 5.0


@pytest.mark.anyio
async def test_a_shorter_block_never_shortens_the_shared_one(
    redis_server: RedisServer, raw: redis.Redis, kind: str
) -> None:
    async with replicas(redis_server, kind, [FakeClock(), FakeClock()]) as (a, b):
        await a.block(10.0)
        await b.block(1.0)
        assert 9_000 < int(raw.pttl(a.key)) <= 10_000
        # b learnt the longer block from the script's answer.
        assert 9.0 < b.blocked_for() <= 10.0


@pytest.mark.anyio
async def test_a_waiter_rechecks_and_learns_an_extended_block(
    redis_server: RedisServer, kind: str
) -> None:
    clock_a = FakeClock()
    async with replicas(redis_server, kind, [clock_a, FakeClock()]) as (a, b):
        await a.block(1.0)
        assert await a.gate() == pytest.approx(1.0)
        await b.block(30.0)
        # a waits out the block it knows, then asks again and learns b's longer one.
        clock_a.now += 1.0
        assert 29.0 < await a.gate() <= 30.0


@pytest.mark.anyio
async def test_skewed_local_clocks_do_not_matter(redis_server: RedisServer, kind: str) -> None:
    clock_a, clock_b = FakeClock(now=5_000_000.0), FakeClock(now=-42.0)
    async with replicas(redis_server, kind, [clock_a, clock_b]) as (a, b):
        await a.block(3.0)
        assert 2.5 < await b.gate() <= 3.0
        clock_b.now += 3.0
        # b's local copy has run out by b's own clock, and Redis still holds: b learns again.
        assert 2.0 < await b.gate() <= 3.0


@pytest.mark.anyio
async def test_a_known_block_is_answered_without_asking_redis(
    redis_server: RedisServer, raw: redis.Redis, kind: str
) -> None:
    clock_b = FakeClock()
    async with replicas(redis_server, kind, [FakeClock(), clock_b]) as (a, b):
        await a.block(5.0)
        assert await b.gate() > 4.5
        raw.delete(a.key)
        clock_b.now += 2.0
        assert 2.5 < await b.gate() <= 3.0
        clock_b.now += 3.0
        assert await b.gate() == 0.0


@pytest.mark.anyio
async def test_gate_adds_release_jitter_to_a_learnt_block(
    redis_server: RedisServer, kind: str
) -> None:
    async with replicas(redis_server, kind, [FakeClock(), FakeClock()]) as (a, b):
        b._random = lambda: 0.5
        await a.block(20.0)
        wait = await b.gate()
        known = b.blocked_for()
        assert wait == pytest.approx(known + 0.5 * min(0.1 * known, 1.0))


@pytest.mark.anyio
async def test_block_ignores_zero_negative_and_non_finite(
    redis_server: RedisServer, raw: redis.Redis, kind: str
) -> None:
    async with replicas(redis_server, kind, [FakeClock()]) as (a,):
        for seconds in (0.0, -1.0, float("nan"), float("inf")):
            await a.block(seconds)
        assert raw.exists(a.key) == 0
        assert a.blocked_for() == 0.0


@pytest.mark.anyio
async def test_no_fast_path_while_redis_is_consulted(redis_server: RedisServer, kind: str) -> None:
    async with replicas(redis_server, kind, [FakeClock()]) as (a,):
        assert not a.try_admit()
        assert await a.gate() == 0.0


def test_sync_replicas_share_a_block(redis_server: RedisServer) -> None:
    clock_b = FakeClock(now=-7.0)
    with sync_replicas(redis_server, [FakeClock(), clock_b]) as (a, b):
        a.block_sync(4.0)
        b.block_sync(2.0)
        assert 3.5 < b.gate_sync() <= 4.0
        assert 3.5 < a.gate_sync() <= 4.0
        for seconds in (0.0, float("nan")):
            b.block_sync(seconds)
        assert 3.5 < b.blocked_for() <= 4.0


HEADROOM = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "10"}


def header_truth(limiter: RedisLimiter) -> None:
    """The limiter's first request to the origin is answered with rate-limit headers."""
    probe = limiter.ticket(chat_request())
    assert probe.gate_sync(None) == 0.0
    probe.sent()
    probe.observe(httpx.Response(200, headers=HEADROOM))


def chat_request() -> httpx.Request:
    return httpx.Request("POST", "https://api.test/v1/chat/completions", json={"model": "m"})


def test_sync_replicas_reading_the_same_headers_keep_one_pace(redis_server: RedisServer) -> None:
    with sync_replicas(redis_server, [FakeClock(), FakeClock()], pacing=True) as (a, b):
        header_truth(a)
        header_truth(b)
        first = a.ticket(chat_request())
        assert first.gate_sync(None) == 0.0
        first.sent()
        # b's own record is empty, so alone it would go at once: the fleet's pace holds it.
        second = b.ticket(chat_request())
        wait = second.gate_sync(None)
        assert wait > 0.0
        assert second.ticket.paced == pytest.approx(wait)
        # The next could go before its deadline by b's own record, not by the fleet's pace:
        # it is refused and keeps no booking.
        late = b.ticket(chat_request())
        assert late.gate_sync(wait * 1.5) == math.inf
        assert late.ticket.booking is None


@pytest.mark.anyio
async def test_async_replicas_reading_the_same_headers_keep_one_pace(
    redis_server: RedisServer, kind: str
) -> None:
    async with replicas(redis_server, kind, [FakeClock(), FakeClock()], pacing=True) as (a, b):
        for limiter in (a, b):
            probe = limiter.ticket(chat_request())
            assert await probe.gate(None) == 0.0
            probe.sent()
            probe.observe(httpx.Response(200, headers=HEADROOM))
        first = a.ticket(chat_request())
        assert await first.gate(None) == 0.0
        first.sent()
        second = b.ticket(chat_request())
        wait = await second.gate(None)
        assert wait > 0.0
        assert second.ticket.paced == pytest.approx(wait)


def test_the_block_key_expires_by_the_servers_clock(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    with sync_replicas(redis_server, [FakeClock()]) as (a,):
        a.block_sync(0.25)
        assert 0 < int(raw.pttl(a.key)) <= 250


def test_budget_and_concurrency_stay_local(redis_server: RedisServer) -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0)
    with sync_replicas(redis_server, [FakeClock(), FakeClock()], budget=budget) as (a, b):
        a.note_first_attempt()
        assert a.allow_retry()
        assert not a.allow_retry()
        assert not b.allow_retry()
    with sync_replicas(redis_server, [FakeClock(), FakeClock()], max_concurrency=1) as (a, b):
        assert a.acquire_slot_sync(timeout=0)
        assert not a.acquire_slot_sync(timeout=0)
        assert b.acquire_slot_sync(timeout=0)
        a.release_slot()
        assert a.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_async_slots_are_local(redis_server: RedisServer, kind: str) -> None:
    async with replicas(redis_server, kind, [FakeClock()], max_concurrency=1) as (a,):
        with anyio.fail_after(5):
            await a.acquire_slot()
        assert not a.acquire_slot_sync(timeout=0)
        a.release_slot()


# -- outages -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_killed_redis_costs_milliseconds_one_warning_and_recovers(
    own_redis_server: RedisServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock_a, clock_b = FakeClock(), FakeClock()
    async with replicas(
        own_redis_server, kind, [clock_a, clock_b], retry_interval=5.0, timeout=OUTAGE_TIMEOUT
    ) as (a, b):
        await a.block(0.001)  # loads the script: after the restart it is gone
        assert await b.gate() <= 0.002
        clock_a.now += 1.0
        clock_b.now += 1.0
        own_redis_server.kill()

        started = time.monotonic()
        assert await a.gate() == 0.0
        await a.block(3.0)
        assert await b.gate() == 0.0
        assert time.monotonic() - started < 2 * BOUND
        assert len(warnings_of(caplog)) == 2  # one per limiter: they are separate replicas

        # Meanwhile: in-process behaviour, no Redis call, no further warning.
        assert 2.9 < await a.gate() <= 3.0
        assert not a.try_admit()
        assert b.try_admit()
        started = time.monotonic()
        for _ in range(100):
            assert await b.gate() == 0.0
        assert time.monotonic() - started < BOUND
        assert len(warnings_of(caplog)) == 2
        assert infos_of(caplog) == []

        own_redis_server.start()
        for clock in (clock_a, clock_b):
            clock.now += 5.0
        await a.block(8.0)
        assert 7.5 < await b.gate() <= 8.0
        assert len(infos_of(caplog)) == 2
        assert len(warnings_of(caplog)) == 2
        assert not b.try_admit()


@pytest.mark.anyio
async def test_frozen_redis_is_given_up_on_within_the_timeout(
    own_redis_server: RedisServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    async with replicas(own_redis_server, kind, [clock], timeout=OUTAGE_TIMEOUT) as (a,):
        assert await a.gate() == 0.0
        own_redis_server.pause()
        try:
            started = time.monotonic()
            await a.block(2.0)
            assert time.monotonic() - started < BOUND
            assert 1.9 < a.blocked_for() <= 2.0
            clock.now += 2.0
            started = time.monotonic()
            assert await a.gate() == 0.0
            assert time.monotonic() - started < BOUND
        finally:
            own_redis_server.resume()
        assert len(warnings_of(caplog)) == 1
        assert "imeout" in warnings_of(caplog)[0].getMessage()
        clock.now += 5.0
        # The server may yet run the block sent before it froze (it is <= 2 s either way).
        assert 0.0 <= await a.gate() <= 2.0
        assert len(infos_of(caplog)) == 1


@pytest.mark.anyio
async def test_while_down_one_caller_probes_per_interval(
    own_redis_server: RedisServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    async with replicas(
        own_redis_server, kind, [clock], retry_interval=5.0, timeout=OUTAGE_TIMEOUT
    ) as (a,):
        own_redis_server.kill()
        assert await a.gate() == 0.0
        clock.now += 5.0
        # The probe claims the interval before it runs: a caller meanwhile stays local.
        assert a.store._claim()
        assert not a.store._claim()
        assert a.try_admit()
        assert await a.gate() == 0.0
        assert len(warnings_of(caplog)) == 1
        assert infos_of(caplog) == []


def test_killed_redis_with_sync_callers(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    with sync_replicas(own_redis_server, [clock], retry_interval=1.0, timeout=OUTAGE_TIMEOUT) as (
        a,
    ):
        a.block_sync(0.001)
        own_redis_server.kill()
        started = time.monotonic()
        a.block_sync(2.0)
        assert 1.9 < a.gate_sync() <= 2.0
        assert time.monotonic() - started < BOUND
        clock.now += 2.0
        assert a.gate_sync() == 0.0
        assert len(warnings_of(caplog)) == 1
        own_redis_server.start()
        clock.now += 1.0
        a.block_sync(6.0)
        raw = redis.Redis.from_url(own_redis_server.url)
        assert 5_500 < int(raw.pttl(a.key)) <= 6_000
        raw.close()
        assert len(infos_of(caplog)) == 1


def test_a_call_begun_before_a_failure_does_not_end_the_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    with sync_replicas(redis_server, [clock]) as (a,):
        started = clock.now
        clock.now += 1.0
        a.store._failed(ConnectionError("refused"))
        a.store._succeeded(started)
        assert a.try_admit()
        assert infos_of(caplog) == []
        a.store._succeeded(clock.now)
        assert len(infos_of(caplog)) == 1
        assert not a.try_admit()


def test_while_skipped_a_sync_store_answers_none_without_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    client = redis.Redis(port=1)  # nothing listens there: refused at once
    clock = FakeClock()
    store = RedisStore(client, clock=clock, retry_interval=5.0)
    assert store.read_sync("a") is None  # fails, and starts the skip
    assert store.answers_locally()
    assert store.read_sync("a") is None  # skipped: no call made
    assert store.extend_sync("a", 1.0) is None
    assert len(warnings_of(caplog)) == 1
    store.close()
    client.close()


def test_while_down_only_one_of_two_racing_callers_probes() -> None:
    client = redis.Redis(port=1)
    clock = FakeClock()
    store = RedisStore(client, clock=clock, retry_interval=5.0)
    store._failed(ConnectionError("refused"))
    clock.now += 5.0  # the interval is over: a probe is due
    real_lock = threading.Lock()

    class ClaimedFirst:
        """The state lock, taken just after another caller claimed the probe."""

        def __enter__(self) -> None:
            store._skip_until = clock.now + 5.0
            real_lock.acquire()

        def __exit__(self, *exc_info: object) -> None:
            real_lock.release()

    store._state_lock = ClaimedFirst()  # type: ignore[assignment]
    assert not store._claim()
    store.close()
    client.close()
