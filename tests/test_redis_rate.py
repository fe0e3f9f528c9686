"""A declared `RateLimit` on `RedisLimiter` holds across the fleet: one rolling window kept in
a real Redis-protocol server (Valkey), by the server's clock.

Each test books attempts through two limiters with separate connections (as two processes
would have) and never sleeps: a booking answers how long its attempt must wait, and the
attempts' send times are those answers.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import redis
import redis.asyncio

from retry_transport import RateLimit, RetryTransport, SyncRetryTransport
from retry_transport.redis import RedisLimiter

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

URL = "http://up.test/v1/chat/completions"


def request(max_tokens: int = 8) -> httpx.Request:
    body = {"model": "m", "max_tokens": max_tokens, "messages": []}
    return httpx.Request("POST", URL, content=json.dumps(body).encode())


@asynccontextmanager
async def fleet(
    server: RedisServer, rate: RateLimit, kind: str = "sync"
) -> AsyncIterator[list[RedisLimiter]]:
    """Two limiters on one name, each with its own client; header pacing off (no probe)."""
    if kind == "sync":
        with sync_fleet(server, rate) as limiters:
            yield limiters
        return
    clients = [redis.asyncio.Redis.from_url(server.url) for _ in range(2)]
    name = f"rate-{uuid.uuid4().hex}"
    try:
        yield [
            RedisLimiter(client, name=name, rate=rate, pacing=False, timeout=1.0)
            for client in clients
        ]
    finally:
        for client in clients:
            await client.aclose()


@contextmanager
def sync_fleet(
    server: RedisServer, rate: RateLimit, pacing: bool = False
) -> Iterator[list[RedisLimiter]]:
    name = f"rate-{uuid.uuid4().hex}"
    clients = [redis.Redis.from_url(server.url) for _ in range(2)]
    limiters = [
        RedisLimiter(client, name=name, rate=rate, pacing=pacing, timeout=1.0) for client in clients
    ]
    try:
        yield limiters
    finally:
        for limiter in limiters:
            limiter.close()
        for client in clients:
            client.close()


async def book(limiter: RedisLimiter, left: float | None = None, tokens: int = 8) -> float:
    """Book one attempt (with ``left`` seconds to its deadline); when (monotonic) it goes, or
    inf."""
    asked = time.monotonic()
    wait = await limiter.ticket(request(tokens)).gate(left)
    return asked + wait


def most_in_a_window(times: list[float], per: float) -> int:
    """The most of ``times`` in any window of ``per`` seconds (10 ms slack for the times the
    bookings were asked at)."""
    ordered = sorted(times)
    return max(sum(1 for t in ordered if at <= t < at + per - 0.01) for at in ordered)


async def test_two_limiters_sharing_a_declared_window_never_exceed_it_together(
    redis_server: RedisServer,
) -> None:
    rate = RateLimit(requests=3, per=60.0)
    async with fleet(redis_server, rate) as (first, second):
        turns = itertools.islice(itertools.cycle([first, second]), 9)
        times = [await book(limiter) for limiter in turns]
    start = times[0]
    waits = [round(t - start) for t in times]
    assert waits == [0, 0, 0, 61, 61, 61, 122, 122, 122]  # 60 s and its 1 s margin
    assert most_in_a_window(times, 60.0) == 3


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_clients_share_the_window_too(redis_server: RedisServer) -> None:
    rate = RateLimit(requests=2, per=30.0)
    async with fleet(redis_server, rate, kind="async") as (first, second):
        times = [await book(limiter) for limiter in (first, second, first, second)]
    assert [round(t - times[0]) for t in times] == [0, 0, 31, 31]  # 30 s and 0.6 s


def test_sync_callers_share_the_window_too(redis_server: RedisServer) -> None:
    rate = RateLimit(requests=2, per=30.0)
    with sync_fleet(redis_server, rate) as (first, second):
        waits = [
            limiter.ticket(request()).gate_sync(None) for limiter in (first, second, first, second)
        ]
    assert [round(w) for w in waits] == [0, 0, 31, 31]


async def test_declared_tokens_hold_across_the_fleet(redis_server: RedisServer) -> None:
    # Each attempt is estimated at about 520 tokens (its body / 4 and max_tokens): one per
    # window of 1000.
    rate = RateLimit(requests=100, per=10.0, tokens=1000)
    async with fleet(redis_server, rate) as (first, second):
        times = [await book(limiter, tokens=500) for limiter in (first, second, first)]
    assert [round(t - times[0]) for t in times] == [0, 10, 20]


async def test_an_attempt_past_its_deadline_is_not_booked_fleet_wide(
    redis_server: RedisServer,
) -> None:
    rate = RateLimit(requests=1, per=60.0)
    async with fleet(redis_server, rate) as (first, second):
        assert await book(first) < time.monotonic() + 1.0
        assert await book(second, left=30.0) == float("inf")  # its slot is 61 s away
        # Nothing was booked for it: the next attempt still gets the slot 61 s away.
        assert round(await book(first) - time.monotonic()) == 61


async def test_with_redis_down_each_limiter_keeps_the_window_alone_without_errors(
    own_redis_server: RedisServer,
) -> None:
    rate = RateLimit(requests=2, per=60.0)
    async with fleet(own_redis_server, rate) as (first, second):
        own_redis_server.kill()
        started = time.monotonic()
        waits = [
            round(await book(limiter) - time.monotonic())
            for limiter in (first, second, first, second, first)
        ]
        assert time.monotonic() - started < 5.0  # bounded calls, then Redis left alone
    # Each process alone: two now each, then its own window's next slot.
    assert waits == [0, 0, 0, 0, 61]


def test_sync_callers_keep_the_header_pace_and_the_window_together(
    redis_server: RedisServer,
) -> None:
    # 60 a minute, 30 left, refilling one a second: each booking keeps the next about a
    # second back, fleet-wide; the declared window (1000 a minute) holds nobody.
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "30",
        "x-ratelimit-reset-requests": "30s",
    }
    with sync_fleet(redis_server, RateLimit(requests=1000, per=60.0), pacing=True) as fleet_:
        first, second = fleet_
        for limiter in fleet_:
            limiter.ticket(request(), first=httpx.Response(200, headers=headers))
        assert first.ticket(request()).gate_sync(None) == 0.0
        # The second process's next attempt is a spacing away by the fleet's pace: not
        # within 1 ms, so not booked at all.
        assert second.ticket(request()).gate_sync(0.001) == float("inf")
        assert 0.0 < second.ticket(request()).gate_sync(None) <= 2.0


async def test_an_attempt_held_past_its_booking_gives_it_back_and_is_booked_again(
    redis_server: RedisServer,
) -> None:
    """An attempt held past its booking (a block, a slot wait) is booked again for when it
    goes: its old place in the fleet's window is given back, not left to count there."""
    rate = RateLimit(requests=1, per=60.0)
    now = [1000.0]
    name = f"rate-{uuid.uuid4().hex}"
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    held = RedisLimiter(
        clients[0], name=name, rate=rate, pacing=False, timeout=1.0, clock=lambda: now[0]
    )
    other = RedisLimiter(clients[1], name=name, rate=rate, pacing=False, timeout=1.0)
    try:
        ticket = held.ticket(request())
        assert await ticket.gate(None) == 0.0
        first = ticket.ticket.shared
        assert first is not None
        now[0] += 5.0  # held for 5 s: its booking has passed
        assert ticket.late()
        assert await ticket.gate(None) == 0.0  # booked again, for now: the old place is free
        assert ticket.ticket.shared not in (None, first)
        assert not ticket.late()
        ticket.sent()
        # One booking in the fleet's window, not two: the next goes a window (and its margin)
        # after it.
        assert round(await book(other) - time.monotonic()) == 61
    finally:
        for limiter in (held, other):
            limiter.close()
        for client in clients:
            client.close()


def window_size(server: RedisServer, limiter: RedisLimiter) -> int:
    """How many bookings the fleet's declared window of ``limiter`` holds in Redis."""
    with redis.Redis.from_url(server.url) as client:
        size: object = client.zcard(f"retry_transport:rate:{limiter.name}")
    assert isinstance(size, int)
    return size


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


async def test_a_request_cancelled_while_paced_gives_its_fleet_booking_back(
    redis_server: RedisServer,
) -> None:
    """Before, the booking stayed in the fleet's window until it expired (a window later),
    holding a place no attempt would use."""
    rate = RateLimit(requests=1, per=60.0)
    async with fleet(redis_server, rate) as (first, second):
        assert await book(first) < time.monotonic() + 1.0  # the window's one place, taken
        pacing = anyio.Event()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            pacing.set()
            await anyio.sleep_forever()

        transport = RetryTransport(httpx.MockTransport(ok), limiter=second, sleep=sleep)
        async with (
            httpx.AsyncClient(transport=transport) as client,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(client.post, URL)
            await pacing.wait()
            assert [round(wait) for wait in waits] == [61]  # booked a window away
            assert window_size(redis_server, second) == 2
            tasks.cancel_scope.cancel()
        assert window_size(redis_server, second) == 1
        # The place it had is free: the next attempt gets it, not the one after.
        assert round(await book(first) - time.monotonic()) == 61


class Interrupted(Exception):
    pass


def test_a_sync_request_interrupted_while_paced_gives_its_fleet_booking_back(
    redis_server: RedisServer,
) -> None:
    def sleep(seconds: float) -> None:
        raise Interrupted

    rate = RateLimit(requests=1, per=60.0)
    with sync_fleet(redis_server, rate) as (first, second):
        assert first.ticket(request()).gate_sync(None) == 0.0
        transport = SyncRetryTransport(httpx.MockTransport(ok), limiter=second, sleep=sleep)
        with httpx.Client(transport=transport) as client, pytest.raises(Interrupted):
            client.post(URL)
        assert window_size(redis_server, second) == 1
        assert round(first.ticket(request()).gate_sync(None)) == 61


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_asyncio_client_gives_a_booking_back_too(redis_server: RedisServer) -> None:
    rate = RateLimit(requests=1, per=60.0)
    async with fleet(redis_server, rate, kind="async") as (first, second):
        assert await book(first) < time.monotonic() + 1.0
        waiting = second.ticket(request())
        assert round(await waiting.gate(None)) == 61
        assert window_size(redis_server, second) == 2
        await waiting.done()  # given up before its turn
        assert window_size(redis_server, second) == 1
