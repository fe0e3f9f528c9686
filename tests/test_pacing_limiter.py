"""SharedLimiter's per-scope pacing as the drivers use it: tickets, per-scope blocks through
a store in process or elsewhere, pacing from header truth, and the drivers around them."""

from __future__ import annotations

import math

import httpx
import pytest

from retry_transport import RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport.testing import ScriptedTransport, Step

from .test_store import FakeClock, RemoteStore
from .transport_helpers import Sleeps

URL = "https://api.test/v1/chat/completions"
KEY = b"k" * 32  # one fingerprint key: limiters that share it name the same scopes alike
HEADERS = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "10"}


def chat(model: str = "m") -> httpx.Request:
    return httpx.Request("POST", URL, json={"model": model}, headers={"authorization": "Bearer a"})


def limiter(clock: FakeClock, store: RemoteStore | None = None) -> SharedLimiter:
    return SharedLimiter(store=store, clock=clock, random=lambda: 0.0, fingerprint_key=KEY)


# -- a first attempt that failed on the fast path --------------------------------------------


@pytest.mark.anyio
async def test_async_a_paced_first_attempt_failing_on_the_fast_path_is_retried() -> None:
    # The first request answers the new origin's probe; the second goes on the fast path.
    script = ScriptedTransport([200, Step.raising("ConnectError"), 200])
    sleeps = Sleeps()
    transport = RetryTransport(script, sleep=sleeps, clock=sleeps.clock, random=lambda: 0.5)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post(URL, json={})
        response = await client.post(URL, json={})
    assert response.status_code == 200
    assert script.call_count == 3
    history = response.extensions["retry_history"]
    assert [(a.status, a.exception) for a in history] == [(None, "ConnectError"), (200, None)]


def test_sync_a_paced_first_attempt_failing_on_the_fast_path_is_retried() -> None:
    script = ScriptedTransport([200, Step.raising("ConnectError"), 200])
    sleeps = Sleeps()
    transport = SyncRetryTransport(
        script, sleep=sleeps.sync, clock=sleeps.clock, random=lambda: 0.5
    )
    with httpx.Client(transport=transport) as client:
        client.post(URL, json={})
        response = client.post(URL, json={})
    assert response.status_code == 200
    assert script.call_count == 3
    history = response.extensions["retry_history"]
    assert [(a.status, a.exception) for a in history] == [(None, "ConnectError"), (200, None)]


# -- per-scope blocks through a store elsewhere ----------------------------------------------


def rate_limited(limiter: SharedLimiter) -> None:
    """A 429 for ``chat()`` through ``limiter``: its scope is blocked for 3 s."""
    paced = limiter.ticket(chat())
    paced.sent()
    paced.observe(httpx.Response(429))
    paced.block_sync(3.0)


@pytest.mark.anyio
async def test_a_scope_blocked_by_another_limiter_through_the_store_holds_this_one() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    rate_limited(limiter(clock, store))
    other = limiter(clock, store)
    assert await other.ticket(chat()).gate(None) == 3.0
    assert other.ticket(chat()).gate_sync(None) == 3.0  # known locally now
    later = limiter(clock, store)
    assert later.ticket(chat()).gate_sync(None) == 3.0  # read from the store, sync
    assert later.ticket(chat("another-model")).gate_sync(None) == 0.0


@pytest.mark.anyio
async def test_a_scope_block_is_kept_locally_while_the_store_cannot_be_reached() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    store.up = False
    paced = limiter(clock, store)
    rate_limited(paced)
    ticket = paced.ticket(chat())
    ticket.sent()
    ticket.observe(httpx.Response(429))
    await ticket.block(5.0)
    assert [c[0] for c in store.calls] == ["extend", "extend"]  # asked, no answer
    assert paced.ticket(chat()).gate_sync(None) == 5.0


@pytest.mark.anyio
@pytest.mark.parametrize("seconds", [0.0, -1.0, math.inf, math.nan])
async def test_a_ticket_value_that_is_no_block_blocks_nothing(seconds: float) -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    paced = limiter(clock, store)
    for block in ("async", "sync"):
        ticket = paced.ticket(chat())
        ticket.sent()
        ticket.observe(httpx.Response(429))
        if block == "async":
            await ticket.block(seconds)
        else:
            ticket.block_sync(seconds)
    assert [c for c in store.calls if c[0] == "extend"] == []
    assert paced.blocked_for() == 0.0


# -- pacing from header truth, in process --------------------------------------------------


@pytest.mark.anyio
async def test_async_and_sync_callers_are_paced_alike_by_header_truth() -> None:
    waits = {}
    for mode in ("async", "sync"):
        clock = FakeClock()
        paced = limiter(clock)
        first = paced.ticket(chat())
        assert first.gate_sync(None) == 0.0  # the new origin's probe
        first.sent()
        first.observe(httpx.Response(200, headers=HEADERS))
        gates = []
        for _ in range(3):
            ticket = paced.ticket(chat())
            wait = await ticket.gate(None) if mode == "async" else ticket.gate_sync(None)
            ticket.sent()
            gates.append(wait)
        waits[mode] = gates
    assert waits["async"] == waits["sync"]
    assert waits["async"][0] == 0.0
    assert 0.0 < waits["async"][1] < waits["async"][2]  # spread, not a burst


def test_fast_path_successes_shown_to_the_limiter_start_pacing_on_their_headers() -> None:
    paced = limiter(FakeClock())
    for _ in range(16):  # scanned now and then, not every time
        paced.desk_observe_fast(chat(), httpx.Response(200, headers=HEADERS))
    assert [(h.model, h.dimension, h.remaining) for h in paced.headroom()] == [
        ("m", "requests", 10.0)
    ]
