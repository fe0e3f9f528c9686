"""The fast-path gate with header truth: while every scope's reported headroom is ample, first
attempts go unbooked, never more of them than the last report left above its reserve (those
still unanswered when it was made included) nor faster than the scopes' pace; low headroom, a
429, a declared limit or a store elsewhere keep every request on the paced path. The gate counts
attempts, not scopes: a scope never seen before rides the known scopes' headroom, up to a bound.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import httpx
import pytest

from retry_transport import (
    RateLimit,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport._desk import _BURST, _MIN_RUN, Desk
from retry_transport._gate import FastGate
from retry_transport._pacing import FAST_TOKENS, Pacer
from retry_transport._scope import CostEstimate, Scope

from .transport_helpers import FLAVOURS, FakeClock, R, Sleeps, exc, lib
from .transport_helpers import Script as _Script

URL = "http://up.test/v1/chat/completions"
JSON = (("content-type", "application/json"),)


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def room_headers(
    remaining: int, limit: int = 1000, reset: str = "1ms", tokens: int | None = None
) -> tuple[tuple[str, str], ...]:
    """OpenAI's headers: ``remaining`` of ``limit`` requests (and of 10x as many tokens)."""
    left = remaining * 10_000 if tokens is None else tokens
    return (
        ("x-ratelimit-limit-requests", str(limit)),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", reset),
        ("x-ratelimit-limit-tokens", str(limit * 10_000)),
        ("x-ratelimit-remaining-tokens", str(left)),
        ("x-ratelimit-reset-tokens", reset),
    )


def limiter_on(clock: FakeClock, **kw: Any) -> tuple[SharedLimiter, Desk]:
    limiter = SharedLimiter(clock=clock, random=lambda: 0.0, **kw)
    desk = limiter.desk
    assert desk is not None
    return limiter, desk


def request() -> httpx.Request:
    return httpx.Request("POST", URL, json={"model": "m", "messages": []})


def report(desk: Desk, headers: tuple[tuple[str, str], ...], mark: int | None) -> None:
    """A scanned success reporting ``headers``; ``mark``: the gate's answers when it went."""
    desk.observe_fast(request(), httpx.Response(200, headers=headers), mark)


def drain(limiter: SharedLimiter) -> int:
    """First attempts let through unbooked (fast path or admission), none of them answered,
    until the limiter sends one to the paced path."""
    gate = limiter.fast_gate
    admitted = 0
    while True:
        if gate.used < gate.limit:
            gate.used += 1
        elif not limiter.try_admit():
            return admitted
        admitted += 1
        assert admitted < 100_000


def is_busy(desk: Desk) -> bool:
    return desk.busy


def is_open(gate: FastGate) -> bool:
    return gate.is_open


def reserve(limit: int) -> float:
    return max(0.1 * limit, 2.0)


# -- the bound --------------------------------------------------------------------------------


@pytest.mark.parametrize("remaining", [100, 101, 108, 109, 150, 400, 999])
def test_an_open_run_never_exceeds_the_reported_headroom(remaining: int) -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    report(desk, room_headers(remaining), mark=0)
    admitted = drain(limiter)
    room = remaining - reserve(1000)
    assert admitted <= max(room, 0.0)
    if room >= 8:
        assert admitted >= room - 1  # and the gate did open for (nearly) all of it
    else:
        assert admitted == 0
        assert desk.busy


def test_attempts_in_flight_when_the_report_went_count_against_it() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    report(desk, room_headers(900), mark=0)
    gate = limiter.fast_gate
    mark = gate.answered
    first = drain(limiter)  # all of them still out: the next report may not cover them
    assert 0 < first <= 800
    report(desk, room_headers(900), mark=mark)  # says 900 left, made before any answer
    assert drain(limiter) == 0  # the 800 above the reserve are spent by those out
    gate.answered += first  # they are all answered now; a report after that covers them
    clock.now += 1.0
    report(desk, room_headers(600), mark=gate.answered)
    second = drain(limiter)
    assert 0 < second <= 600 - reserve(1000)


def test_unbooked_attempts_keep_the_scopes_pace() -> None:
    # 100 of 1000 used in the last 6 s: a refill of ~16.7/s plus the surplus over the
    # reserve spread over the minute, ~30 per second: far less than the 800 above the reserve.
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    gate = limiter.fast_gate
    report(desk, room_headers(900, reset="6s"), mark=0)
    first = drain(limiter)
    assert 8 <= first <= 30
    gate.answered = gate.used
    assert drain(limiter) == 0  # no report since: no more
    report(desk, room_headers(900 - first, reset="6s"), mark=gate.answered)
    assert drain(limiter) == 0  # nor with one at once: the second's pace is spent
    clock.now += 0.5
    report(desk, room_headers(900 - first, reset="6s"), mark=gate.answered)
    _room, rate = desk.pacer.allowance(clock.now)
    assert 8 <= drain(limiter) <= 0.5 * rate + 1


def test_the_token_headroom_bounds_a_run_too() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    # Requests aplenty, tokens for ~50 unbooked attempts above the reserve.
    tokens = int(0.1 * 1000 * 10_000 + 50 * FAST_TOKENS)  # the reserve: 10% of the limit
    report(desk, room_headers(999, tokens=tokens), mark=0)
    admitted = drain(limiter)
    assert 8 <= admitted <= 50


def test_the_pacer_allowance_of_nothing_and_of_what_else_paces() -> None:
    pacer = Pacer()
    assert pacer.allowance(0.0) == (math.inf, math.inf)
    declared = Pacer(RateLimit(requests=1000, per=1.0))
    assert declared.allowance(0.0) == (0.0, 0.0)
    scope = Scope("http://up.test", "k", "m")
    pacer.reserve((scope, scope.origin_scope), CostEstimate(1.0, 0.0, 0.0), 0.0, None)
    assert pacer.allowance(0.0) == (0.0, 0.0)  # the first attempt to the origin is out
    pacer.answered(scope.origin)
    assert pacer.congestion(scope, 0.0, 0.0, 100.0)
    assert pacer.allowance(0.0) == (0.0, 0.0)  # an adaptive rate
    assert pacer.allowance(700.0) == (math.inf, math.inf)  # its scope forgotten since


# -- what closes it ---------------------------------------------------------------------------


def test_a_report_of_low_headroom_closes_an_open_run() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    report(desk, room_headers(999), mark=0)
    assert limiter.try_admit()
    gate = limiter.fast_gate
    assert is_open(gate)
    report(desk, room_headers(105), mark=gate.answered)
    assert is_busy(desk)
    assert not is_open(gate)
    assert not limiter.try_admit()
    report(desk, room_headers(0, reset="2s"), mark=gate.answered)  # on hold until the reset
    assert is_busy(desk)
    clock.now += 0.5
    report(desk, room_headers(900), mark=gate.answered)  # headroom again: opens
    assert not is_busy(desk)
    assert limiter.try_admit()


def test_a_declared_limit_or_a_store_elsewhere_keeps_the_gate_shut() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock, rate=RateLimit(requests=100_000, per=1.0))
    report(desk, room_headers(999), mark=0)
    assert desk.busy
    assert not limiter.try_admit()

    class Elsewhere:
        def answers_locally(self) -> bool:
            return False

    limiter, desk = limiter_on(clock)
    limiter._slow = True  # what a store elsewhere (RedisLimiter's) makes of it
    limiter._store = Elsewhere()  # type: ignore[assignment]
    report(desk, room_headers(999), mark=0)
    assert not desk.busy
    assert not limiter.try_admit()
    assert not limiter.fast_gate.is_open


def test_a_booking_takes_one_off_the_ceiling_and_the_credit() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    report(desk, room_headers(999), mark=0)
    gate = limiter.fast_gate
    ceiling = gate.ceiling
    credit = desk._credit
    ticket = desk.ticket(request())
    assert desk.pace(ticket, None) == 0.0
    assert gate.ceiling <= ceiling - 1
    assert desk._credit <= credit - 1.0  # and off the credit: booked and unbooked keep the pace


def test_a_gate_opens_no_further_than_its_ceiling() -> None:
    gate = FastGate(cap=64)
    gate.ceiling = 5
    gate.run = 16
    gate.open()
    assert gate.limit == 5
    gate.ceiling = math.inf
    gate.used = 5
    gate.open()
    assert gate.limit == 5 + 32


# -- through the drivers ----------------------------------------------------------------------


def scripted(flavour: str, *steps: R) -> tuple[_Script, Sleeps]:
    return _Script(flavour, list(steps)), Sleeps()


@pytest.mark.anyio
async def test_ample_headroom_keeps_the_gate_open(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200, "{}", JSON + room_headers(999_999, 1_000_000)))
    limiter, desk = limiter_on(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(300):
            assert (await client.post(URL, json={"model": "m"})).status_code == 200
    gate = limiter.fast_gate
    assert len(desk.pacer) == 1  # the headers were learnt
    assert not desk.busy
    # The first request paced (a ticket); every other one unbooked, counted in ``used``.
    assert gate.used == 299
    assert gate.answered == 299
    assert gate.cap == 1024  # scanned less often: the ceiling bounds the runs
    assert sleeps.waits == []
    assert script.count == 300


def test_ample_headroom_keeps_the_gate_open_sync(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200, "{}", JSON + room_headers(999_999, 1_000_000)))
    limiter, desk = limiter_on(sleeps.clock)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=sleeps.sync, clock=sleeps.clock
    )
    with lib(flavour).Client(transport=transport) as client:
        for _ in range(100):
            assert client.post(URL, json={"model": "m"}).status_code == 200
    assert not desk.busy
    assert limiter.fast_gate.used == 99


@pytest.mark.anyio
async def test_a_429_through_the_open_gate_closes_it(flavour: str) -> None:
    ample = R(200, "{}", JSON + room_headers(999_999, 1_000_000))
    refused = R(
        429,
        '{"error": {"type": "rate_limit_exceeded"}}',
        JSON + room_headers(0, 1_000_000, reset="2s"),
    )
    script, sleeps = scripted(flavour, ample, ample, ample, ample, refused, ample)
    limiter, desk = limiter_on(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(4):
            await client.post(URL, json={"model": "m"})
        assert not desk.busy
        assert limiter.fast_gate.is_open
        assert (await client.post(URL, json={"model": "m"})).status_code == 200  # retried
    assert script.count == 6
    assert sum(sleeps.waits) >= 1.0  # the retry waited for the reset


def admitted_then(flavour: str, which: int) -> tuple[_Script, Sleeps]:
    """A first request answered with plain 200s (pacing idle), then one admitted by the limiter
    whose attempt fails (an exception or a 503), then successes."""
    failures: list[R | type[Exception]] = [exc(flavour, "ConnectError"), R(503, "busy")]
    plain = R(200, "ok", JSON)
    return _Script(flavour, [plain, failures[which], plain]), Sleeps()


@pytest.mark.anyio
@pytest.mark.parametrize("which", [0, 1])
async def test_an_admitted_attempt_that_fails_is_counted_answered(flavour: str, which: int) -> None:
    script, sleeps = admitted_then(flavour, which)
    limiter, _ = limiter_on(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        await client.post(URL, json={"model": "m"})  # paced (the first): a ticket
        assert (await client.post(URL, json={"model": "m"})).content == b"ok"  # admitted
    gate = limiter.fast_gate
    assert (gate.used, gate.answered) == (1, 1)
    assert script.count == 3


@pytest.mark.parametrize("which", [0, 1])
def test_an_admitted_attempt_that_fails_is_counted_answered_sync(flavour: str, which: int) -> None:
    script, sleeps = admitted_then(flavour, which)
    limiter, _ = limiter_on(sleeps.clock)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=sleeps.sync, clock=sleeps.clock
    )
    with lib(flavour).Client(transport=transport) as client:
        client.post(URL, json={"model": "m"})
        assert client.post(URL, json={"model": "m"}).content == b"ok"
    gate = limiter.fast_gate
    assert (gate.used, gate.answered) == (1, 1)


def test_a_scope_with_nothing_to_pace_leaves_the_gate_unbounded() -> None:
    clock = FakeClock()
    limiter, desk = limiter_on(clock)
    ticket = desk.ticket(request())
    desk.sent(ticket)
    desk.observe(ticket, httpx.Response(429))
    # A trickle's 429: no adaptive rate, but the scope is now known (with nothing to pace).
    assert not desk.congestion(ticket, 0.1)
    assert len(desk.pacer) == 1
    assert not is_busy(desk)
    assert limiter.fast_gate.ceiling == math.inf


# -- a scope never seen before ----------------------------------------------------------------
#
# The gate counts attempts, not scopes: while it is open on the known scopes' headroom, the
# first attempts of a scope never seen before go unbooked like any others. The bound: in a
# burst sent before any answer, at most ``ceiling - used`` of them (never more than the known
# scopes' room above their reserve, nor than `_BURST` seconds of their slowest pace); one at a
# time, at most what the new scope has left and one more, that one answered 429. Either way
# the first 429 among them is read in full and closes the gate; from then on every request
# takes a ticket and the new scope is paced by its own headers.

BIG_ROOM = room_headers(900, reset="6s")  # ~30 attempts a second, 800 above the reserve
SMALL_LIMIT = 5  # the new model's own limit: far below what the known scope leaves


class TwoModels:
    """An upstream that knows two models: "big" with ample room and "small", which allows
    `SMALL_LIMIT` requests and refuses the rest with a 429 (both say so in OpenAI's headers).
    With ``hold``, every answer to "small" waits for ``release``: a burst that is all sent
    before any of it is answered. Requests are counted as they arrive, as an upstream does."""

    def __init__(self, flavour: str, hold: bool = False) -> None:
        self.module = lib(flavour)
        self.release = anyio.Event() if hold else None
        self.small = 0  # requests for "small" received
        self.refused = 0  # of those, answered 429

    def answer(self, request: Any) -> Any:
        if b'"big"' in request.content:
            return self.module.Response(200, headers=list(JSON + BIG_ROOM), content=b"{}")
        self.small += 1
        left = SMALL_LIMIT - self.small
        if left < 0:
            self.refused += 1
            refused = JSON + room_headers(0, SMALL_LIMIT, reset="12s")
            return self.module.Response(429, headers=list(refused), content=b'{"error": {}}')
        headers = JSON + room_headers(left, SMALL_LIMIT, reset="12s")
        return self.module.Response(200, headers=list(headers), content=b"{}")

    async def __call__(self, request: Any) -> Any:
        response = self.answer(request)
        if self.release is not None and b'"small"' in request.content:
            await self.release.wait()
        return response


def first_attempts_only(sleeps: Sleeps) -> dict[str, Any]:
    """A pacing limiter on the injected clock, and a policy that never retries: what the gate
    lets through is every attempt there is."""
    return {
        "limiter": SharedLimiter(clock=sleeps.clock, random=lambda: 0.0),
        "policy": RetryPolicy(max_attempts=1),
        "sleep": sleeps,
        "clock": sleeps.clock,
    }


def known_scope_bound(limiter: SharedLimiter, desk: Desk, now: float) -> int:
    """How many attempts the open gate lets through unbooked from here, before any answer
    (the bound a new scope's burst rides on), checked against what it derives from."""
    gate = limiter.fast_gate
    assert not desk.busy
    bound = int(gate.ceiling) - gate.used
    room, rate = desk.pacer.allowance(now)  # the known scope's alone
    assert _MIN_RUN <= bound <= min(room, rate * _BURST)
    return bound


@pytest.mark.anyio
async def test_a_new_scopes_burst_goes_unbooked_up_to_the_known_scopes_ceiling(
    flavour: str,
) -> None:
    sleeps = Sleeps()
    upstream = TwoModels(flavour, hold=True)
    kw = first_attempts_only(sleeps)
    limiter: SharedLimiter = kw["limiter"]
    desk = limiter.desk
    assert desk is not None
    gate = limiter.fast_gate
    transport = RetryTransport(lib(flavour).MockTransport(upstream), **kw)
    statuses: list[int] = []
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):  # the known scope: its headers open the gate on ample room
            assert (await client.post(URL, json={"model": "big"})).status_code == 200
        bound = known_scope_bound(limiter, desk, sleeps.clock.now)
        used = gate.used
        assert bound > SMALL_LIMIT  # the edge: more than the new model allows

        async def small() -> None:
            statuses.append((await client.post(URL, json={"model": "small"})).status_code)

        async with anyio.create_task_group() as tasks:
            for _ in range(bound + 1):
                tasks.start_soon(small)
            await anyio.wait_all_tasks_blocked()  # every one of them sent, none answered
            assert upstream.small == bound + 1
            # Exactly ``bound`` went unbooked; the one past the ceiling took a ticket (the
            # new scope's probe, booked as the paced path books a scope it does not know).
            assert gate.used - used == bound
            assert len(desk.pacer) == 1  # "small" is not known yet
            assert upstream.release is not None
            upstream.release.set()
    # Every one past the new model's limit was refused: the 429s the edge costs.
    assert upstream.refused == bound + 1 - SMALL_LIMIT
    assert statuses.count(429) == upstream.refused
    # Its first 429 was read: the new scope is known, on hold, and the gate is shut.
    assert len(desk.pacer) == 2
    assert desk.busy
    assert not gate.is_open
    assert not limiter.try_admit()
    assert sleeps.waits == []


def test_a_new_scope_one_at_a_time_costs_at_most_one_429_sync(flavour: str) -> None:
    sleeps = Sleeps()
    upstream = TwoModels(flavour)
    kw = first_attempts_only(sleeps)
    kw["sleep"] = sleeps.sync
    limiter: SharedLimiter = kw["limiter"]
    desk = limiter.desk
    assert desk is not None
    transport = SyncRetryTransport(lib(flavour).MockTransport(upstream.answer), **kw)
    with lib(flavour).Client(transport=transport) as client:
        gate = limiter.fast_gate
        while gate.limit - gate.used <= SMALL_LIMIT:  # the known scope's run, well under way
            assert client.post(URL, json={"model": "big"}).status_code == 200
            assert gate.used < 20
        known_scope_bound(limiter, desk, sleeps.clock.now)
        used = gate.used
        statuses = [client.post(URL, json={"model": "small"}).status_code for _ in range(7)]
    # Its successes went unbooked and unread (inside the run: none was an admission's, whose
    # success is scanned), so the first request past its limit went too, and was refused;
    # that 429 shut the gate, and the next was paced by the new scope's own headers (held
    # until their reset).
    assert statuses[: SMALL_LIMIT + 1] == [200] * SMALL_LIMIT + [429]
    assert gate.used - used == SMALL_LIMIT + 1
    assert desk.busy
    assert len(desk.pacer) == 2
    assert sum(sleeps.waits) >= 10.0
    assert statuses[-1] == 429  # (this upstream's count never resets)
