"""Pacing through the driver on virtual time: a declared `RateLimit` counts the times attempts
are actually sent (across congestion blocks, retries and slot waits), and the Azure dialect's
remaining headers are read over Azure's own windows.

The virtual clock moves only when every task is blocked: then it jumps to the earliest sleeper
and wakes it, so many seconds of traffic play at once and nothing sleeps for real.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Coroutine

import anyio
import httpx
import pytest

from retry_transport import RateLimit, RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport._pacing import declared_margin
from retry_transport.testing import Received
from retry_transport.testing.upstream import ProviderRateLimit

from .virtual_time import VirtualTime

pytestmark = pytest.mark.anyio

URL = "http://up.test/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def most_in_any_window(times: list[float], per: float) -> int:
    """The most of ``times`` in any half-open window of ``per`` seconds."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, at + per) - i for i, at in enumerate(ordered))


async def flood(
    clock: VirtualTime,
    limiter: SharedLimiter,
    handler: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    callers: int,
    seconds: float,
    url: str = URL,
    headers: dict[str, str] | None = None,
) -> list[httpx.Response]:
    """``callers`` callers sending one request after another for ``seconds`` virtual seconds."""
    transport = RetryTransport(
        httpx.MockTransport(handler),
        limiter=limiter,
        clock=clock,
        sleep=clock.sleep,
        random=random.Random(7).random,
    )
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(transport=transport) as client:

        async def caller() -> None:
            while clock.now < seconds:
                answers.append(await client.post(url, json=BODY, headers=headers))

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)
            await clock.run()
    return answers


def overloaded_every_other(
    clock: VirtualTime, sent: list[float], latency: float = 0.02
) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    """An upstream that answers every other request with an overloaded 503 (a congestion
    verdict: it blocks the origin for retries), the others with a 200."""
    counter = itertools.count()

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        await clock.sleep(latency)
        if next(counter) % 2 == 0:
            error = {"message": "overloaded, try again", "type": "server_error"}
            return httpx.Response(503, json={"error": error})
        return httpx.Response(200, json={"ok": True})

    return handler


async def test_a_declared_window_holds_for_send_times_across_congestion_blocks() -> None:
    """Issue 14's QA run: RateLimit(5, per=2.0), 20 callers, an upstream failing every other
    request with an overloaded 503. Attempts booked before a block must not all go when it
    ends (they used to: 7 in 1.3 s, 12 in 2 s)."""
    clock = VirtualTime()
    sent: list[float] = []
    limiter = SharedLimiter(
        rate=RateLimit(requests=5, per=2.0), clock=clock, random=random.Random(3).random
    )
    answers = await flood(clock, limiter, overloaded_every_other(clock, sent), 20, 16.0)
    assert any(len(answer.extensions["retry_history"]) > 1 for answer in answers)
    assert most_in_any_window(sent, 2.0) <= 5, sent
    # Not stalled: the slots that fell in a block are lost (their attempts could not go), the
    # others used.
    assert len(sent) / (sent[-1] - sent[0]) >= 0.5 * 5 / 2.0, sent


async def test_bookings_are_spaced_by_the_window_and_its_margin() -> None:
    clock = VirtualTime()
    sent: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(400 if len(sent) % 2 else 200, json={"error": {"type": "x"}})

    limiter = SharedLimiter(rate=RateLimit(requests=5, per=2.0), clock=clock)
    await flood(clock, limiter, handler, 20, 8.0)
    window = 2.0 + declared_margin(2.0)
    assert declared_margin(2.0) == pytest.approx(0.1)
    # The upstream's own count may see arrivals a little closer than they were sent: five in
    # any window of 2 s and most of the margin still holds.
    assert most_in_any_window(sent, window - 0.01) <= 5, sent


class SlowSlots(SharedLimiter):
    """A limiter whose every wait for a concurrency slot takes ``hold`` virtual seconds (as if
    other attempts held them): the attempt goes well after its booking."""

    def __init__(
        self, clock: VirtualTime, hold: float, rate: RateLimit, others: bool = False
    ) -> None:
        super().__init__(rate=rate, clock=clock)
        self._virtual = clock
        self._hold = hold
        self._others = others
        self.waits = 0

    async def acquire_slot(self) -> None:
        self.waits += 1
        if self.waits % 3 == 0:
            await self._virtual.sleep(self._hold)

    def acquire_slot_sync(self, timeout: float | None = None) -> bool:
        self.waits += 1
        if self.waits % 3 == 0:
            self._virtual.now += self._hold
            if self._others:
                # Other requests took the window's places meanwhile (booked, never sent).
                for _ in range(2):
                    self.ticket(httpx.Request("POST", URL, json=BODY)).gate_sync(None)
        return True


async def test_an_attempt_held_past_its_booking_by_a_slot_wait_is_booked_again() -> None:
    clock = VirtualTime()
    sent: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200, json={})

    limiter = SlowSlots(clock, hold=3.0, rate=RateLimit(requests=2, per=2.0))
    await flood(clock, limiter, handler, 1, 12.0)
    assert limiter.waits >= 6  # attempts were held past their bookings, more than once
    assert most_in_any_window(sent, 2.0) <= 2, sent


async def test_an_attempt_booked_again_after_a_slot_wait_lets_the_slot_go_while_it_waits() -> None:
    clock = VirtualTime()
    sent: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200, json={})

    limiter = SlowSlots(clock, hold=3.0, rate=RateLimit(requests=1, per=2.0))
    await flood(clock, limiter, handler, 2, 12.0)
    # More slots taken than attempts sent: held past its booking, an attempt found the
    # window's next place taken, let the slot go while it waited for it, then took one again.
    assert limiter.waits > len(sent)
    assert most_in_any_window(sent, 2.0) <= 1, sent


@pytest.mark.parametrize("others", [False, True])
def test_a_sync_attempt_held_past_its_booking_by_a_slot_wait_is_booked_again(
    others: bool,
) -> None:
    clock = VirtualTime()
    sent: list[float] = []

    def sleep(seconds: float) -> None:
        clock.now += seconds

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock.now)
        return httpx.Response(200, json={})

    limiter = SlowSlots(clock, hold=3.0, rate=RateLimit(requests=2, per=2.0), others=others)
    transport = SyncRetryTransport(
        httpx.MockTransport(handler), limiter=limiter, clock=clock, sleep=sleep
    )
    with httpx.Client(transport=transport) as client:
        for _ in range(12):
            assert client.post(URL, json=BODY).status_code == 200
    assert limiter.waits >= 6
    assert (limiter.waits > len(sent)) is others  # a slot let go while it waits
    assert most_in_any_window(sent, 2.0) <= 2, sent


def azure_upstream(
    clock: VirtualTime, limit: ProviderRateLimit, latency: float = 0.05
) -> Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]:
    """The loopback upstream's Azure rate limiter, answering through a MockTransport."""

    async def handler(request: httpx.Request) -> httpx.Response:
        received = Received(
            request.method,
            str(request.url),
            tuple((name.lower(), value) for name, value in request.headers.items()),
            request.content,
        )
        headers, refusal = limit.admit(received)
        await clock.sleep(latency)
        if refusal is not None:
            return httpx.Response(refusal.status, headers=refusal.headers, content=refusal.body)
        return httpx.Response(200, headers=headers, json={"choices": []})

    return handler


async def test_the_azure_dialect_paces_at_its_real_rate() -> None:
    """A 120 RPM Azure deployment: 20 requests per 10 s, told only as what remains. Read as a
    minute's quota, it was paced at a sixth of its rate (17-23% used)."""
    clock = VirtualTime()
    limit = ProviderRateLimit(requests=20, window_seconds=10.0, dialect="azure", clock=clock)
    limiter = SharedLimiter(clock=clock, random=random.Random(3).random)
    seconds = 60.0
    url = "http://up.test/openai/deployments/d1/chat/completions?api-version=2024-10-21"
    answers = await flood(
        clock, limiter, azure_upstream(clock, limit), 50, seconds, url, {"api-key": "k"}
    )
    totals = limit.totals()
    assert totals.limited <= max(1, totals.requests // 100), totals  # at most ~1% refused
    served = sum(1 for answer in answers if answer.status_code == 200)
    capacity = 20 + 2.0 * clock.now  # a full bucket, then 2 a second
    assert served >= 0.85 * capacity, (served, capacity)
