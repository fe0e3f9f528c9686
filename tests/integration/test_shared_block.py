"""A 429 seen by one transport holds back every transport sharing its limiter; a transient 400
holds back nobody. Real loopback upstream, injected clock and sleep: no real waiting."""

from __future__ import annotations

import httpx
import pytest

from retry_transport import RetryPolicy, RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport.testing.upstream import Reply, Upstream

from ..transport_helpers import FakeClock

pytestmark = pytest.mark.anyio

DEGRADED = {"status": 400, "detail": "Function id 'x': DEGRADED function cannot be invoked"}


class WatchfulSleep:
    """An injected sleep that moves the shared fake clock and records, for every wait, how
    many requests the upstream had received when the wait began."""

    def __init__(self, clock: FakeClock, upstream: Upstream) -> None:
        self.clock = clock
        self.upstream = upstream
        self.waits: list[tuple[float, int]] = []

    async def __call__(self, seconds: float) -> None:
        self.sync(seconds)

    def sync(self, seconds: float) -> None:
        self.waits.append((seconds, self.upstream.count()))
        self.clock.now += seconds


async def test_a_429_holds_back_another_transport_sharing_the_limiter(upstream: Upstream) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(clock=clock)
    sleep = WatchfulSleep(clock, upstream)
    upstream.script("/a", Reply(429, headers=(("retry-after", "30"),)))
    first = RetryTransport(
        httpx.AsyncHTTPTransport(),
        policy=RetryPolicy(max_attempts=1),
        limiter=limiter,
        sleep=sleep,
        clock=clock,
    )
    second = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter, sleep=sleep, clock=clock)
    async with (
        httpx.AsyncClient(transport=first) as one,
        httpx.AsyncClient(transport=second) as two,
    ):
        assert (await one.get(upstream.url + "/a")).status_code == 429
        assert (await two.get(upstream.url + "/b")).status_code == 200
    # the second transport waited out the whole block before its request was sent
    assert sum(seconds for seconds, _ in sleep.waits) >= 30.0
    assert all(received == 1 for _, received in sleep.waits)
    assert [r.path for r in upstream.received()] == ["/a", "/b"]


async def test_a_transient_400_holds_back_nobody(upstream: Upstream) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(clock=clock)
    sleep = WatchfulSleep(clock, upstream)
    upstream.script("/a", Reply.json(400, DEGRADED), Reply(200))
    first = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter, sleep=sleep, clock=clock)
    second = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter, sleep=sleep, clock=clock)
    async with (
        httpx.AsyncClient(transport=first) as one,
        httpx.AsyncClient(transport=second) as two,
    ):
        assert (await one.get(upstream.url + "/a")).status_code == 200
        waits_of_first = len(sleep.waits)
        assert (await two.get(upstream.url + "/b")).status_code == 200
    assert waits_of_first == 1  # the first transport's own backoff
    assert len(sleep.waits) == 1  # the second one never waited
    assert limiter.blocked_for() == 0.0


def test_a_429_holds_back_a_sync_transport_sharing_the_limiter(upstream: Upstream) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(clock=clock)
    sleep = WatchfulSleep(clock, upstream)
    upstream.script("/a", Reply(429, headers=(("retry-after", "12"),)))
    policy = RetryPolicy(max_attempts=1)
    first = SyncRetryTransport(policy=policy, limiter=limiter, sleep=sleep.sync, clock=clock)
    second = SyncRetryTransport(limiter=limiter, sleep=sleep.sync, clock=clock)
    with httpx.Client(transport=first) as one, httpx.Client(transport=second) as two:
        assert one.get(upstream.url + "/a").status_code == 429
        assert two.get(upstream.url + "/b").status_code == 200
    assert sum(seconds for seconds, _ in sleep.waits) >= 12.0
    assert all(received == 1 for _, received in sleep.waits)
    assert [r.path for r in upstream.received()] == ["/a", "/b"]
