"""The adaptive rate through the driver, on virtual time: an upstream that refuses with 429s
and sends no rate-limit headers, many callers, an injected clock, sleep and random source.

The virtual clock moves only when every task is blocked: then it jumps to the earliest sleeper
and wakes it, so a minute of traffic plays in a fraction of a second and nothing sleeps for real.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import anyio
import httpx
import pytest

from retry_transport import RetryTransport, SharedLimiter

from .virtual_time import VirtualTime

pytestmark = pytest.mark.anyio

URL = "http://up.test/v1/chat/completions"


@dataclass
class Bucket:
    """An upstream's rate limit: ``rate`` requests a second, a burst of one second's worth;
    a refusal is a bare 429 (no header, no named wait) unless ``retry_after`` is set."""

    clock: VirtualTime
    rate: float
    retry_after: str | None = None
    level: float = 0.0
    updated: float = 0.0
    sent: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.level = self.rate

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = self.clock.now
        self.level = min(self.rate, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1.0:
            self.level -= 1.0
            status = 200
        else:
            status = 429
        self.sent.append((now, status))
        headers = {} if status == 200 or self.retry_after is None else {"retry-after": "1"}
        return httpx.Response(status, headers=headers, json={"ok": status == 200})

    def served(self, start: float, end: float) -> int:
        return sum(1 for at, status in self.sent if start <= at < end and status == 200)

    def quiet_after_refusals(self) -> list[float]:
        """Seconds from each 429 to the next request."""
        return [b[0] - a[0] for a, b in itertools.pairwise(self.sent) if a[1] == 429]


async def flood(
    clock: VirtualTime,
    limiter: SharedLimiter,
    handler: Bucket,
    callers: int,
    seconds: float,
    drop: tuple[float, float] | None = None,
    model: str = "m",
) -> list[float]:
    """``callers`` callers sending one request after another for ``seconds``; optionally the
    upstream's rate changes to ``drop[1]`` at ``drop[0]``. Answers what `blocked_for` said
    after each answer."""
    transport = RetryTransport(
        httpx.MockTransport(handler),
        limiter=limiter,
        clock=clock,
        sleep=clock.sleep,
        random=random.Random(5).random,
    )
    blocked: list[float] = []
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=transport) as client:

        async def caller() -> None:
            while clock.now < seconds:
                await client.post(URL, json=body, headers={"authorization": "Bearer k"})
                blocked.append(limiter.blocked_for())
                await anyio.lowlevel.checkpoint()

        async def dropper(at: float, rate: float) -> None:
            await clock.sleep(at)
            handler.rate = rate
            handler.level = min(handler.level, rate)

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)
            if drop is not None:
                group.start_soon(dropper, *drop)
            await clock.run()
    return blocked


def _limiter(clock: VirtualTime) -> SharedLimiter:
    return SharedLimiter(clock=clock, random=random.Random(3).random)


async def test_without_headers_few_429s_and_the_rate_is_still_used() -> None:
    clock = VirtualTime()
    upstream = Bucket(clock, rate=10.0)
    limiter = _limiter(clock)
    blocked = await flood(clock, limiter, upstream, callers=30, seconds=40.0, drop=(20.0, 5.0))
    refused = sum(1 for _, status in upstream.sent if status == 429)
    assert refused <= 0.1 * len(upstream.sent), (refused, len(upstream.sent))
    # The rate is found again after the drop, and most of each half's capacity is used.
    assert upstream.served(5.0, 20.0) >= 0.8 * 10.0 * 15.0
    assert upstream.served(25.0, 40.0) >= 0.8 * 5.0 * 15.0
    assert upstream.served(25.0, 40.0) <= 5.0 * 15.0 + 5.0
    # The rate, not a pause of the scope, answered every 429: no block was ever set, and the
    # next request always came within a few spacings.
    assert max(blocked) == 0.0
    assert max(upstream.quiet_after_refusals()) < 0.5


async def test_a_named_wait_still_blocks_a_scope_under_an_adaptive_rate() -> None:
    clock = VirtualTime()
    upstream = Bucket(clock, rate=10.0, retry_after="1")
    limiter = _limiter(clock)
    await flood(clock, limiter, upstream, callers=30, seconds=5.0)
    quiet = upstream.quiet_after_refusals()
    assert quiet
    assert min(quiet) >= 1.0 - 1e-9  # the whole scope waited out the second the server named


async def test_a_scope_never_throttled_is_never_slowed() -> None:
    clock = VirtualTime()
    upstream = Bucket(clock, rate=10.0)
    limiter = _limiter(clock)
    await flood(clock, limiter, upstream, callers=30, seconds=5.0, model="busy")
    free = Bucket(clock, rate=1000.0)
    transport = RetryTransport(
        httpx.MockTransport(free), limiter=limiter, clock=clock, sleep=clock.sleep
    )
    body = {"model": "quiet", "messages": []}
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(20):
            response = await client.post(URL, json=body, headers={"authorization": "Bearer k"})
            assert response.status_code == 200
            history = response.extensions.get("retry_history")
            assert history is None or all(attempt.paced == 0.0 for attempt in history)
    assert [at for at, _ in free.sent] == [clock.now] * 20  # none of them waited


def test_a_sync_transport_answers_a_bare_429_with_the_rate_not_a_block() -> None:
    from retry_transport import RetryEvent, SyncRetryTransport

    now = [0.0]
    statuses = iter([200] * 10 + [429] + [200] * 10)
    events: list[RetryEvent] = []

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        now[0] += 0.01
        return httpx.Response(next(statuses), json={})

    limiter = SharedLimiter(clock=clock, random=random.Random(3).random)
    transport = SyncRetryTransport(
        httpx.MockTransport(handler),
        limiter=limiter,
        clock=clock,
        sleep=sleep,
        random=random.Random(5).random,
        hooks=[events.append],
    )
    body = {"model": "m", "messages": []}
    with httpx.Client(transport=transport) as client:
        answers = [client.post(URL, json=body).status_code for _ in range(20)]
    assert answers == [200] * 20
    assert [event.kind for event in events] == ["retry"]
    assert events[0].blocked_for == 0.0  # the scope was not paused
    assert limiter.desk is not None
    assert any(state.rate is not None for state in limiter.desk.pacer._scopes.values())
