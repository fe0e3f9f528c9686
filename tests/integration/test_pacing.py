"""Pacing against a loopback upstream that enforces a rate per key and model and sends the
provider's rate-limit headers (`retry_transport.testing.upstream.ProviderRateLimit`).

The flood tests run the upstream in real time with short windows (a per-minute limit played in
two seconds); the tests of one scope against another and of declared limits run on an injected
clock and sleep.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import redis

from retry_transport import (
    Backoff,
    DeadlineExceeded,
    RateLimit,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
)
from retry_transport._pacing import declared_margin
from retry_transport.redis import RedisLimiter
from retry_transport.testing.upstream import ProviderRateLimit, Upstream
from retry_transport.testing.upstream.ratelimit import Dialect, ScopeCounts
from retry_transport.testing.upstream.ratelimit import Scope as UpstreamScope

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

pytestmark = pytest.mark.anyio

KEY = "sk-pacing-test"
WINDOW = 2.0
CALLERS = 20


@pytest.fixture
def limited() -> Iterator[Upstream]:
    with Upstream() as upstream:
        yield upstream


def chat(model: str = "m1", tokens: int = 8) -> dict[str, object]:
    return {"model": model, "max_tokens": tokens, "messages": [{"role": "user", "content": "hi"}]}


async def flood(
    upstream: Upstream, limiter: SharedLimiter, seconds: float, path: str, model: str = "m1"
) -> list[httpx.Response]:
    """``CALLERS`` callers sending one request after another for ``seconds`` seconds."""
    transport = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter)
    answers: list[httpx.Response] = []
    stop_at = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as client:

        async def caller() -> None:
            while time.monotonic() < stop_at:
                answers.append(await client.post(path, json=chat(model), headers=headers))

        with anyio.fail_after(seconds + 30):
            async with anyio.create_task_group() as group:
                for _ in range(CALLERS):
                    group.start_soon(caller)
    return answers


@pytest.mark.parametrize(
    ("dialect", "path"),
    [
        ("openai", "/v1/chat/completions"),
        ("anthropic", "/v1/messages"),
        ("groq", "/v1/chat/completions"),
    ],
)
async def test_concurrent_callers_get_almost_no_429s_and_still_use_the_limit(
    limited: Upstream, dialect: Dialect, path: str
) -> None:
    # 10 requests per second; Anthropic's resets come in whole seconds, too coarse to read a
    # short window's refill from: its window is a real minute.
    window = 60.0 if dialect == "anthropic" else WINDOW
    limit = int(10 * window)
    limited.rate_limit = ProviderRateLimit(requests=limit, window_seconds=window, dialect=dialect)
    seconds = 4.0
    started = time.monotonic()
    answers = await flood(limited, SharedLimiter(), seconds, path)
    elapsed = time.monotonic() - started
    totals = limited.rate_limit.totals()
    assert totals.requests > 0
    assert totals.limited <= max(1, totals.requests // 50), totals  # at most ~2% refused
    assert all(answer.status_code == 200 for answer in answers)
    served = totals.requests - totals.limited
    # The bucket starts full and refills at limit / window per second: at least that rate is
    # used (the full bucket is spread out, not spent in a burst).
    sustained = elapsed * limit / window
    assert served >= 0.8 * sustained, (served, sustained)


async def test_without_pacing_the_same_callers_are_refused_often(limited: Upstream) -> None:
    limited.rate_limit = ProviderRateLimit(requests=20, window_seconds=WINDOW)
    policy = RetryPolicy(max_attempts=1)
    # The reactive limiter of before: it only acts once refused.
    limiter = SharedLimiter(pacing=False)
    transport = RetryTransport(httpx.AsyncHTTPTransport(), policy=policy, limiter=limiter)
    async with (
        httpx.AsyncClient(transport=transport, base_url=limited.url) as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(40):
            group.start_soon(client.post, "/v1/chat/completions")
    assert limited.rate_limit.totals().limited >= 15


class FakeTime:
    """A clock moved by the transport's sleeps, and the send times an inner transport saw."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class HeldSleeps:
    """A transport's injected sleep that records every wait asked for and never returns (the
    caller it holds is cancelled by the test); ``asleep`` is set once one wait was asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.asleep = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.asleep.set()
        await anyio.sleep_forever()


async def test_a_429_for_one_model_never_delays_another_models_requests(
    limited: Upstream,
) -> None:
    # Nothing waits for real: the transport's and the upstream's clocks stand still, and the
    # spent model's wait is recorded by a sleep that holds it until the test is done.
    limited.rate_limit = ProviderRateLimit(requests=1, window_seconds=30.0, clock=lambda: 1e9)
    clock = FakeTime()
    sleeps = HeldSleeps()
    limiter = SharedLimiter(clock=clock)
    transport = RetryTransport(
        httpx.AsyncHTTPTransport(),
        limiter=limiter,
        policy=RetryPolicy(deadline=60.0),
        clock=clock,
        sleep=sleeps,
    )
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url=limited.url) as client:
        first = await client.post("/v1/chat/completions", json=chat("a"), headers=headers)
        assert first.status_code == 200

        async def spent_model() -> None:
            await client.post("/v1/chat/completions", json=chat("a"), headers=headers)

        async with anyio.create_task_group() as group:
            # Model a is spent for 30 s: its next request is held back, paced to its reset.
            group.start_soon(spent_model)
            with anyio.fail_after(30):  # a bound on a hang, not a timing check
                await sleeps.asleep.wait()
            other = await client.post("/v1/chat/completions", json=chat("b"), headers=headers)
            group.cancel_scope.cancel()
    assert other.status_code == 200
    assert len(sleeps.waits) == 1  # model a's wait, and none for model b
    assert sleeps.waits[0] > 10.0
    assert clock.now == 0.0
    history = other.extensions["retry_history"]
    assert [attempt.paced for attempt in history] == [0.0]
    counts = limited.rate_limit.counts()
    assert counts[UpstreamScope(KEY, "a")] == ScopeCounts(requests=1)  # paced, never refused
    assert counts[UpstreamScope(KEY, "b")] == ScopeCounts(requests=1)


async def test_a_new_model_of_an_origin_that_sends_headers_is_not_burst_into_429s(
    limited: Upstream,
) -> None:
    """A model first used once the origin is known: its requests wait for the first one's
    headers instead of all going at once on no truth (before: 10 of 20 refused)."""
    limited.rate_limit = ProviderRateLimit(requests=10, window_seconds=60.0)
    # Requests that cannot go within a second fail at once with DeadlineExceeded, unsent:
    # the test waits for no refill.
    policy = RetryPolicy(max_attempts=1, deadline=1.0)
    transport = RetryTransport(httpx.AsyncHTTPTransport(), limiter=SharedLimiter(), policy=policy)
    headers = {"authorization": f"Bearer {KEY}"}
    outcomes: list[int | str] = []
    async with httpx.AsyncClient(transport=transport, base_url=limited.url) as client:
        known = await client.post("/v1/chat/completions", json=chat("known"), headers=headers)
        assert known.status_code == 200

        async def new_model() -> None:
            try:
                answer = await client.post(
                    "/v1/chat/completions", json=chat("new"), headers=headers
                )
            except DeadlineExceeded:
                outcomes.append("not sent")
            else:
                outcomes.append(answer.status_code)

        with anyio.fail_after(30):  # a bound on a hang, not a timing check
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(new_model)
    counts = limited.rate_limit.counts()[UpstreamScope(KEY, "new")]
    assert counts.limited == 0, counts
    assert 429 not in outcomes
    assert 2 <= outcomes.count(200) <= 10  # some of the bucket used, never more than it holds


async def test_a_429_blocks_its_scope_not_the_other_model(limited: Upstream) -> None:
    # No headers, so no pacing: model a's second request is refused, and the 429 blocks its
    # scope for the backoff (10 s, held by the recording sleep), not model b's.
    limited.rate_limit = ProviderRateLimit(
        requests=1, window_seconds=30.0, dialect="none", clock=lambda: 1e9
    )
    clock = FakeTime()
    sleeps = HeldSleeps()
    limiter = SharedLimiter(clock=clock)
    policy = RetryPolicy(max_attempts=2, congestion_backoff=Backoff(base=10.0, cap=10.0))
    transport = RetryTransport(
        httpx.AsyncHTTPTransport(),
        limiter=limiter,
        policy=policy,
        random=lambda: 0.99,
        clock=clock,
        sleep=sleeps,
    )
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url=limited.url) as client:
        assert (
            await client.post("/v1/chat/completions", json=chat("a"), headers=headers)
        ).status_code == 200

        async def refused_model() -> None:
            await client.post("/v1/chat/completions", json=chat("a"), headers=headers)

        async with anyio.create_task_group() as group:
            group.start_soon(refused_model)
            with anyio.fail_after(30):  # a bound on a hang, not a timing check
                await sleeps.asleep.wait()
            assert limiter.blocked_for() > 0.0  # model a's scope is blocked
            other = await client.post("/v1/chat/completions", json=chat("b"), headers=headers)
            group.cancel_scope.cancel()
    assert other.status_code == 200
    assert sleeps.waits == [pytest.approx(9.9)]  # model a's backoff only
    history = other.extensions["retry_history"]
    assert [attempt.paced for attempt in history] == [0.0]
    counts = limited.rate_limit.counts()
    assert counts[UpstreamScope(KEY, "a")] == ScopeCounts(requests=2, limited=1)
    assert counts[UpstreamScope(KEY, "b")] == ScopeCounts(requests=1)


@pytest.mark.parametrize("requests", [1, 3])
async def test_a_declared_rate_holds_for_every_attempt_retries_included(requests: int) -> None:
    clock = FakeTime()
    statuses = iter([503, 503, 200] * 20)

    def handler(request: httpx.Request) -> httpx.Response:
        clock.sent.append(clock.now)
        clock.now += 0.01
        return httpx.Response(next(statuses), json={})

    limiter = SharedLimiter(rate=RateLimit(requests=requests, per=5.0), clock=clock)
    transport = RetryTransport(
        httpx.MockTransport(handler), limiter=limiter, clock=clock, sleep=clock.sleep
    )
    async with httpx.AsyncClient(transport=transport) as client, anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(client.post, "http://up.test/v1/chat/completions")
    assert len(clock.sent) == 18
    for index, at in enumerate(clock.sent):
        in_window = [t for t in clock.sent if at <= t < at + 5.0]
        assert len(in_window) <= requests, (index, clock.sent)


async def test_a_declared_rate_of_one_per_five_seconds_sends_no_burst() -> None:
    """The regression of issue 14: with 1 per 5 s, the upstream saw 3 requests in 0.4 s."""
    clock = FakeTime()
    statuses = iter([429, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        clock.sent.append(clock.now)
        return httpx.Response(next(statuses), json={"error": {"type": "rate_limit_error"}})

    limiter = SharedLimiter(rate=RateLimit(requests=1, per=5.0), clock=clock)
    transport = RetryTransport(
        httpx.MockTransport(handler), limiter=limiter, clock=clock, sleep=clock.sleep
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("http://up.test/", content=json.dumps(chat()).encode())
    assert response.status_code == 200
    # 5 s apart and the margin that keeps the upstream's own count whole.
    assert [b - a for a, b in zip(clock.sent, clock.sent[1:], strict=False)] == [
        pytest.approx(5.0 + declared_margin(5.0), abs=1e-6)
    ] * 2
    history = response.extensions["retry_history"]
    assert history[1].paced > 0.0


async def test_the_history_and_the_events_say_when_and_how_long_each_attempt_was_paced() -> None:
    from prometheus_client import CollectorRegistry

    from retry_transport import RetryEvent
    from retry_transport.prometheus import PrometheusHook

    clock = FakeTime()
    statuses = iter([429, 429, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        clock.sent.append(clock.now)
        return httpx.Response(next(statuses), json={"error": {"type": "rate_limit_error"}})

    events: list[RetryEvent] = []
    registry = CollectorRegistry()
    limiter = SharedLimiter(rate=RateLimit(requests=1, per=5.0), clock=clock)
    transport = RetryTransport(
        httpx.MockTransport(handler),
        limiter=limiter,
        clock=clock,
        sleep=clock.sleep,
        random=lambda: 0.5,
        hooks=[events.append, PrometheusHook(registry=registry)],
    )
    async with httpx.AsyncClient(transport=transport) as client:
        retried = await client.post("http://up.test/", content=b"{}")
        queued = await client.post("http://up.test/", content=b"{}")
    window = 5.0 + declared_margin(5.0)  # 5.1 s
    assert clock.sent == pytest.approx([0.0, window, 2 * window, 3 * window])
    history = retried.extensions["retry_history"]
    # Each retry waited its backoff (the delay after the attempt before), then was paced (the
    # wait before it was sent) for the rest of the declared 5 s (and its margin).
    assert [attempt.elapsed for attempt in history] == pytest.approx([0.0, window, 2 * window])
    assert [history[n].delay + history[n + 1].paced for n in (0, 1)] == pytest.approx(
        [window, window]
    )
    assert history[0].paced == 0.0
    assert all(attempt.paced > 0.0 for attempt in history[1:])
    assert [(event.attempt, event.paced) for event in events] == [
        (attempt.number, attempt.paced) for attempt in history[:2]
    ]
    # A first attempt paced behind the other request: it went 5.1 s after it arrived.
    (first,) = queued.extensions["retry_history"]
    assert (first.elapsed, first.paced) == pytest.approx((window, window))
    paced = registry.get_sample_value(
        "retry_transport_paced_seconds_total", {"host": "up.test", "name": ""}
    )
    assert paced == pytest.approx(history[1].paced)


async def test_a_request_that_cannot_be_admitted_before_its_deadline_fails_at_once() -> None:
    clock = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        clock.sent.append(clock.now)
        return httpx.Response(200, json={})

    limiter = SharedLimiter(rate=RateLimit(requests=1, per=60.0), clock=clock)
    transport = RetryTransport(
        httpx.MockTransport(handler),
        limiter=limiter,
        clock=clock,
        sleep=clock.sleep,
        policy=RetryPolicy(deadline=10.0),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://up.test/")).status_code == 200
        with pytest.raises(httpx.PoolTimeout):
            await client.get("http://up.test/")
    assert clock.sent == [0.0]
    assert clock.now == 0.0  # it did not wait for a slot it could never use


# -- a fleet through Redis ---------------------------------------------------------------------


async def _replica_flood(
    upstream: Upstream, limiter: SharedLimiter, seconds: float, callers: int
) -> None:
    transport = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter)
    stop_at = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as client:

        async def caller() -> None:
            while time.monotonic() < stop_at:
                await client.post("/v1/chat/completions", json=chat(), headers=headers)

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "alone"])
async def test_two_replicas_sharing_a_redis_limiter_stay_under_one_limit(
    limited: Upstream, redis_server: RedisServer, shared: bool
) -> None:
    """Two replicas (each its own limiter and Redis client, as two processes would have) on
    one key: through Redis they keep one pace and are almost never refused; each pacing
    alone from the same headers, they spend the key twice as fast and are refused."""
    limit = 20
    limited.rate_limit = ProviderRateLimit(requests=limit, window_seconds=WINDOW)
    name = f"fleet-{uuid.uuid4().hex}"
    clients = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    replicas: list[SharedLimiter] = (
        # A generous timeout: on a loaded machine a 100 ms one makes a replica pace alone.
        [RedisLimiter(client, name=name, timeout=1.0) for client in clients]
        if shared
        else [SharedLimiter(fingerprint_key=b"k") for _ in clients]
    )
    seconds = 4.0
    try:
        with anyio.fail_after(seconds + 30):
            async with anyio.create_task_group() as group:
                for replica in replicas:
                    group.start_soon(_replica_flood, limited, replica, seconds, 10)
    finally:
        for replica in replicas:
            if isinstance(replica, RedisLimiter):
                replica.close()
        for client in clients:
            client.close()
    totals = limited.rate_limit.totals()
    served = totals.requests - totals.limited
    if shared:
        assert totals.limited <= max(1, totals.requests // 50), totals
        assert served >= 0.8 * seconds * limit / WINDOW, totals
    else:
        assert totals.limited > totals.requests // 50, totals
