"""The fast-path gate: runs of first attempts sent with no question to the limiter, closed by
anything that could hold a request, counted for the budget, with the header scan between runs.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from retry_transport import (
    RetryBudget,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport._common import is_event_stream
from retry_transport._desk import Desk
from retry_transport._gate import FastGate
from retry_transport._ratelimit_headers import RATE_LIMIT_NAMES, parse_headroom

from .transport_helpers import FLAVOURS, FakeClock, R, Script, Sleeps, exc, lib

URL = "http://up.test/v1/chat/completions"
SSE_ERROR = (
    b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
    b'"message": "Overloaded"}}\n\n'
)
HEADROOM = (
    ("x-ratelimit-limit-requests", "100"),
    ("x-ratelimit-remaining-requests", "99"),
    ("x-ratelimit-reset-requests", "600ms"),
)


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def quiet_limiter(clock: FakeClock, budget: RetryBudget | None = None, **kw: Any) -> SharedLimiter:
    return SharedLimiter(budget, clock=clock, random=lambda: 0.0, **kw)


def is_open(gate: FastGate) -> bool:
    return gate.is_open


def is_busy(desk: Desk) -> bool:
    return desk.busy


def open_up(limiter: SharedLimiter, admissions: int) -> None:
    """Admissions by the limiter, each using up the run it opens (as the fast path would)."""
    gate = limiter.fast_gate
    for _ in range(admissions):
        assert limiter.try_admit()
        gate.used = gate.limit


# -- the gate itself ------------------------------------------------------------------------


def test_a_gate_is_closed_until_opened_and_its_runs_double_up_to_the_cap() -> None:
    gate = FastGate(cap=8)
    assert not is_open(gate)
    runs = []
    for _ in range(6):
        gate.open()
        runs.append(gate.limit - gate.used)
        gate.used = gate.limit
    assert runs == [1, 2, 4, 8, 8, 8]
    gate.open()
    assert is_open(gate)
    gate.close()
    assert not is_open(gate)
    gate.open()
    assert gate.limit - gate.used == 1  # a closed gate starts again with short runs


# -- the limiter's admission opens and closes it ----------------------------------------------


def test_try_admit_opens_the_gate_and_a_block_closes_it_at_once() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock, pacing=False)
    gate = limiter.fast_gate
    assert not is_open(gate)
    open_up(limiter, 3)
    assert limiter.try_admit()
    assert gate.limit - gate.used == 8
    limiter.block_sync(5.0)
    assert not is_open(gate)
    assert not limiter.try_admit()  # the block holds: the gate stays closed
    assert not is_open(gate)
    clock.now += 5.0
    assert limiter.try_admit()
    assert gate.limit - gate.used == 1


def test_a_gate_never_opens_with_a_concurrency_cap_or_a_store_elsewhere() -> None:
    capped = SharedLimiter(max_concurrency=4, pacing=False)
    assert not capped.try_admit()
    assert not is_open(capped.fast_gate)

    class Elsewhere:
        """A store that is reachable elsewhere (a shared one answers only there)."""

        def answers_locally(self) -> bool:
            return False

    limiter = SharedLimiter(store=Elsewhere(), pacing=False)  # type: ignore[arg-type]
    assert not limiter.try_admit()
    assert not is_open(limiter.fast_gate)


def test_first_attempts_through_the_gate_count_for_the_budget() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock, RetryBudget(ratio=1.0, min_per_second=0.0), pacing=False)
    open_up(limiter, 4)  # 4 admissions, then 1 + 2 + 4 + 8 attempts through the gate
    assert [limiter.allow_retry() for _ in range(20)] == [True] * 19 + [False]
    limiter.note_first_attempt()
    assert limiter.allow_retry()
    assert not limiter.allow_retry()


def test_a_lost_increment_of_the_gate_counts_nothing_twice() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock, RetryBudget(ratio=1.0, min_per_second=0.0), pacing=False)
    open_up(limiter, 3)
    assert limiter.allow_retry()  # counted: 3 admissions, 1 + 2 + 4 through the gate
    gate = limiter.fast_gate
    gate.used -= 1  # a thread wrote back a stale count
    assert limiter.try_admit()
    gate.used += 1  # back at a count already counted
    # 3 + 7 + 1 first attempts, one retry spent: 10 left, none counted twice.
    assert [limiter.allow_retry() for _ in range(11)] == [True] * 10 + [False]


def test_the_desk_closes_the_gate_when_it_turns_busy_or_records_a_block() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock)
    desk = limiter.desk
    assert desk is not None
    gate = limiter.fast_gate
    assert not limiter.try_admit()  # nothing answered yet: pacing is busy
    desk.busy = False
    assert limiter.try_admit()
    assert is_open(gate)
    desk.busy = True
    assert not is_open(gate)
    desk.busy = False
    assert limiter.try_admit()
    desk.record_block("default|https://up.test|k|m", 2.0)
    assert desk.blocking
    assert not is_open(gate)
    assert not limiter.try_admit()
    clock.now += 2.0
    assert limiter.try_admit()
    assert not desk.blocking


def test_a_desk_without_a_limiter_has_a_gate_of_its_own() -> None:
    desk = Desk(None, headers=True, prefix="p", clock=FakeClock(), wall_clock=lambda: 0.0)
    assert desk.busy
    desk.blocking = True
    assert desk.blocking


def test_an_admission_that_finds_the_gate_closed_meanwhile_leaves_it_closed() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock)
    board = limiter.desk
    assert board is not None
    board.busy = False

    class TurnsBusy:
        """The block's end noted just as pacing turned busy in another thread."""

        def __init__(self) -> None:
            self.inner = limiter._block_lock

        def __enter__(self) -> None:
            assert board is not None
            board.busy = True
            self.inner.acquire()

        def __exit__(self, *exc_info: object) -> None:
            self.inner.release()

    limiter.block_sync(1.0)
    clock.now += 1.0
    limiter._block_lock = TurnsBusy()  # type: ignore[assignment]
    assert limiter.try_admit()  # admitted: pacing turned busy after it looked
    assert not is_open(limiter.fast_gate)


# -- the drivers ------------------------------------------------------------------------------


def scripted(flavour: str, *steps: R) -> tuple[Script, Sleeps]:
    return Script(flavour, list(steps)), Sleeps()


@pytest.mark.anyio
async def test_successes_go_through_the_gate_and_one_per_run_is_scanned(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200, "{}", (("content-type", "application/json"),)))
    limiter = quiet_limiter(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(40):
            assert (await client.post(URL, json={"model": "m"})).status_code == 200
    gate = limiter.fast_gate
    # The first request paced (a ticket), then admissions (requests 2, 4, 7, 12, 21, 38)
    # opening runs of 1, 2, 4, 8, 16 and 32 of which 2 were used; with pacing, the
    # admissions count in ``used`` too (6), and each one's answer in ``answered``.
    assert gate.used == 39
    assert gate.answered == 39
    assert script.count == 40


@pytest.mark.anyio
async def test_rate_limit_headers_on_a_scanned_success_start_pacing(flavour: str) -> None:
    plain = R(200, "{}", (("content-type", "application/json"),))
    script, sleeps = scripted(flavour, plain, plain, R(200, "{}", HEADROOM))
    limiter = quiet_limiter(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    desk = limiter.desk
    assert desk is not None
    async with lib(flavour).AsyncClient(transport=transport) as client:
        # Paced (a ticket), admitted and scanned, through the gate (not scanned): not yet.
        for _ in range(3):
            await client.post(URL, json={"model": "m"})
        assert not is_busy(desk)
        await client.post(URL, json={"model": "m"})  # admitted and scanned: headers
    assert desk.busy
    assert len(desk.pacer) == 1
    assert not is_open(limiter.fast_gate)


@pytest.mark.anyio
async def test_an_event_stream_through_the_gate_is_still_peeked(flavour: str) -> None:
    json_type = (("content-type", "application/json"),)
    script, sleeps = scripted(
        flavour,
        R(200, "{}", json_type),
        R(200, "{}", json_type),
        R(200, "{}", json_type),
        R(200, SSE_ERROR, (("Content-Type", "Text/Event-Stream; charset=utf-8"),)),
        R(200, "{}", json_type),
    )
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):  # admitted (a run of 1), through the gate, admitted (a run of 2)
            await client.post(URL, json={})
        gate = limiter.fast_gate
        assert is_open(gate)
        used = gate.used
        response = await client.post(URL, json={})
    assert gate.used == used + 1  # sent through the gate
    assert response.status_code == 200
    assert response.content == b"{}"  # the error event was retried
    assert script.count == 5


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [
        R(200, "hi", (("content-type", "text/plain"),)),
        R(200, "hi", (("content-type", "application/json; charset=utf-8"),)),
        R(200, "hi", (("x-request-id", "r1"), ("content-type", "text/html"))),
        R(200, "hi"),
        R(204),
        R(304),
    ],
)
async def test_other_successes_through_the_gate_are_handed_back_as_they_are(
    flavour: str, reply: R
) -> None:
    script, sleeps = scripted(flavour, R(200), R(200), R(200), reply)
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):
            await client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        response = await client.post(URL, json={})
    assert response.status_code == reply.status
    assert script.count == 4


@pytest.mark.anyio
async def test_a_failure_through_the_gate_is_retried_and_closes_it(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200), R(200), R(200), R(429, "slow down"), R(200, "ok"))
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):
            await client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        response = await client.post(URL, json={})
    assert response.content == b"ok"
    assert sleeps.waits  # backed off
    assert not is_open(limiter.fast_gate)  # the 429 blocked the limiter


def test_the_sync_driver_goes_through_the_gate_too(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200, "{}", (("content-type", "application/json"),)))
    limiter = quiet_limiter(sleeps.clock)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=sleeps.sync, clock=sleeps.clock
    )
    with lib(flavour).Client(transport=transport) as client:
        for _ in range(10):
            assert client.post(URL, json={}).status_code == 200
    # Paced (a ticket), then admissions (scanned, counted in ``used`` with pacing) opening
    # runs of 1, 2 and 4 (3 used).
    assert limiter.fast_gate.used == 9
    assert limiter.fast_gate.answered == 9


@pytest.mark.anyio
async def test_a_transport_with_a_deadline_asks_the_limiter_every_time(flavour: str) -> None:
    script, sleeps = scripted(flavour, R(200))
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(
        script.mock(),
        policy=RetryPolicy(deadline=3.0),
        limiter=limiter,
        sleep=sleeps,
        clock=sleeps.clock,
    )
    async with lib(flavour).AsyncClient(transport=transport, timeout=10.0) as client:
        for _ in range(4):
            await client.post(URL, json={})
    assert limiter.fast_gate.used == 0
    for request in script.seen:
        assert request.extensions["timeout"]["read"] == 3.0  # each attempt capped


@pytest.mark.anyio
async def test_a_limiter_with_its_own_admission_is_asked_every_time(flavour: str) -> None:
    asked: list[bool] = []

    class Counting(SharedLimiter):
        def try_admit(self) -> bool:
            admitted = super().try_admit()
            asked.append(admitted)
            return admitted

    script, sleeps = scripted(flavour, R(200))
    limiter = Counting(clock=sleeps.clock, pacing=False)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(5):
            await client.post(URL, json={})
    assert asked == [True] * 5


# -- the names the header scan looks for ------------------------------------------------------


def test_the_scanned_names_are_exactly_those_the_dialects_read() -> None:
    assert len(RATE_LIMIT_NAMES) == 6 + 12 + 5
    for name in RATE_LIMIT_NAMES:
        text = name.decode()
        assert text == text.lower()
        known = re.fullmatch(
            r"x-ratelimit-(limit|remaining|reset)-(requests|tokens)"
            r"|anthropic-ratelimit-(requests|tokens|input-tokens|output-tokens)-"
            r"(limit|remaining|reset)"
            r"|ratelimit(-limit|-remaining|-reset|-policy)?",
            text,
        )
        assert known is not None, text
    # A name outside the set tells nothing, so a response with none of them needs no parse.
    assert parse_headroom([("x-ratelimit-limit-widgets", "5")], now=0.0, wall_now=0.0) == {}
    assert parse_headroom([("x-ratelimit-limit-requests", "5")], now=0.0, wall_now=0.0) != {}


def test_the_header_scan_passes_over_unread_ratelimit_names() -> None:
    clock = FakeClock()
    limiter = quiet_limiter(clock)
    desk = limiter.desk
    assert desk is not None
    desk.busy = False
    request = httpx.Request("POST", URL, json={"model": "m"})
    desk.observe_fast(request, httpx.Response(200, headers={"x-ratelimit-limit-widgets": "5"}))
    assert desk.pacer.idle
    desk.observe_fast(request, httpx.Response(200, headers=dict(HEADROOM)))
    assert not desk.pacer.idle


@pytest.mark.parametrize(
    "kind",
    [
        "exception",
        "status",
        "event stream",
        "plain",
        "late type",
        "no type",
        "no content",
        "charset",
    ],
)
def test_the_sync_driver_through_the_gate_retries_what_the_async_one_does(
    flavour: str, kind: str
) -> None:
    json_type = (("content-type", "application/json"),)
    replies: dict[str, R | type[Exception]] = {
        "exception": exc(flavour, "ConnectError"),
        "status": R(503, "busy"),
        "event stream": R(200, SSE_ERROR, (("content-type", "text/event-stream"),)),
        "plain": R(200, "{}", json_type),
        "late type": R(200, "{}", (("x-request-id", "r1"), ("content-type", "text/plain"))),
        "no type": R(200, "{}"),
        "no content": R(204),
        "charset": R(200, "{}", (("content-type", "application/json; charset=utf-8"),)),
    }
    failing = replies[kind]
    handed_back = kind in ("plain", "late type", "no type", "no content", "charset")
    script = Script(flavour, [R(200, "{}", json_type)] * 3 + [failing, R(200, "ok")])
    sleeps = Sleeps()
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=sleeps.sync, clock=sleeps.clock
    )
    with lib(flavour).Client(transport=transport) as client:
        for _ in range(3):
            client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        response = client.post(URL, json={})
    assert response.content == (b"" if kind == "no content" else b"{}" if handed_back else b"ok")
    assert script.count == (4 if handed_back else 5)


@pytest.mark.anyio
async def test_an_exception_through_the_gate_is_retried(flavour: str) -> None:
    script = Script(flavour, [R(200)] * 3 + [exc(flavour, "ConnectError"), R(200, "ok")])
    sleeps = Sleeps()
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):
            await client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        response = await client.post(URL, json={})
    assert response.content == b"ok"
    assert script.count == 5


@pytest.mark.anyio
async def test_an_exception_through_the_gate_of_a_pacing_limiter_is_retried(flavour: str) -> None:
    script = Script(flavour, [R(200)] * 4 + [exc(flavour, "ConnectError"), R(200, "ok")])
    sleeps = Sleeps()
    limiter = quiet_limiter(sleeps.clock)
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(4):  # paced, admitted (a run of 1), through the gate, admitted (2)
            await client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        response = await client.post(URL, json={})
    assert response.content == b"ok"
    assert script.count == 6


def test_a_scan_while_a_new_origin_is_probed_notes_its_answer() -> None:
    board = Desk(None, headers=True, prefix="p", clock=FakeClock(), wall_clock=lambda: 0.0)
    probe = board.ticket(httpx.Request("POST", URL))
    assert board.pace(probe, None) == 0.0  # the first attempt to the origin: a probe
    assert board.busy
    board.observe_fast(httpx.Request("POST", URL), httpx.Response(200))
    assert not board.busy  # the origin has answered: nothing paces


def test_the_limiter_hands_an_admitted_success_to_its_desk() -> None:
    limiter = SharedLimiter(clock=FakeClock())
    desk = limiter.desk
    assert desk is not None
    desk.busy = False
    limiter.desk_observe_fast(httpx.Request("POST", URL), httpx.Response(200, headers=HEADROOM))
    assert is_busy(desk)


def test_the_event_stream_probe_reads_the_raw_header_list() -> None:
    def headers(content_type: str | None) -> Any:
        pairs = [("x-request-id", "r1")]
        if content_type is not None:
            pairs.append(("Content-Type", content_type))
        return httpx.Response(200, headers=pairs).headers

    assert is_event_stream(headers("Text/Event-Stream; charset=utf-8"))
    assert not is_event_stream(headers("application/json"))
    assert not is_event_stream(headers(None))


def first_replies(flavour: str) -> list[R | type[Exception]]:
    return [
        exc(flavour, "ConnectError"),
        R(503, "busy"),
        R(200, SSE_ERROR, (("content-type", "text/event-stream"),)),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("which", [0, 1, 2])
async def test_a_failure_of_an_admitted_attempt_is_retried(flavour: str, which: int) -> None:
    script = Script(flavour, [first_replies(flavour)[which], R(200, "ok")])
    sleeps = Sleeps()
    limiter = quiet_limiter(sleeps.clock, pacing=False)  # the first request: admitted
    transport = RetryTransport(script.mock(), limiter=limiter, sleep=sleeps, clock=sleeps.clock)
    async with lib(flavour).AsyncClient(transport=transport) as client:
        response = await client.post(URL, json={})
    assert response.content == b"ok"
    assert script.count == 2
    assert limiter.fast_gate.used == 0


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_failure_of_an_admitted_attempt_is_retried_sync(flavour: str, which: int) -> None:
    script = Script(flavour, [first_replies(flavour)[which], R(200, "ok")])
    sleeps = Sleeps()
    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=sleeps.sync, clock=sleeps.clock
    )
    with lib(flavour).Client(transport=transport) as client:
        response = client.post(URL, json={})
    assert response.content == b"ok"
    assert script.count == 2


# -- no clock read before a first attempt sent at once ------------------------------------------


class CountingClock(FakeClock):
    """A `FakeClock` that counts its readings."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


@pytest.mark.anyio
async def test_a_success_through_the_gate_reads_no_clock(flavour: str) -> None:
    clock = CountingClock()
    script = Script(flavour, [R(200, "{}", (("content-type", "application/json"),))])
    limiter = quiet_limiter(clock, pacing=False)
    transport = RetryTransport(
        script.mock(), limiter=limiter, sleep=Sleeps(clock), clock=clock, wall_clock=clock
    )
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(3):  # admitted (a run of 1), through the gate, admitted (a run of 2)
            await client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        reads, used = clock.reads, limiter.fast_gate.used
        for _ in range(2):
            assert (await client.post(URL, json={})).status_code == 200
    assert limiter.fast_gate.used == used + 2  # both through the gate
    assert clock.reads == reads


def test_a_success_through_the_gate_reads_no_clock_sync(flavour: str) -> None:
    clock = CountingClock()
    script = Script(flavour, [R(200, "{}", (("content-type", "application/json"),))])
    limiter = quiet_limiter(clock, pacing=False)
    transport = SyncRetryTransport(
        script.mock(), limiter=limiter, sleep=Sleeps(clock).sync, clock=clock, wall_clock=clock
    )
    with lib(flavour).Client(transport=transport) as client:
        for _ in range(3):
            client.post(URL, json={})
        assert is_open(limiter.fast_gate)
        reads, used = clock.reads, limiter.fast_gate.used
        for _ in range(2):
            assert client.post(URL, json={}).status_code == 200
    assert limiter.fast_gate.used == used + 2
    assert clock.reads == reads


@pytest.mark.anyio
@pytest.mark.parametrize("through_gate", [False, True])
@pytest.mark.parametrize("deadline", [None, 60.0])
async def test_a_first_attempt_sent_at_once_is_timed_from_its_answer(
    flavour: str, through_gate: bool, deadline: float | None
) -> None:
    # The first attempt takes 5 s to fail. Sent at once, no clock was read before it, so the
    # history counts from its answer; with a deadline (which counts from the send) it does not.
    sleeps = Sleeps()
    primes = 3 if through_gate else 0
    script = Script(flavour, [*[R(200)] * primes, R(503, "busy"), R(200, "ok")])

    def handler(request: Any) -> Any:
        if script.count == primes:
            sleeps.clock.now += 5.0
        return script(request)

    limiter = quiet_limiter(sleeps.clock, pacing=False)
    transport = RetryTransport(
        lib(flavour).MockTransport(handler),
        policy=RetryPolicy(deadline=deadline),
        limiter=limiter,
        sleep=sleeps,
        clock=sleeps.clock,
    )
    async with lib(flavour).AsyncClient(transport=transport) as client:
        for _ in range(primes):
            await client.post(URL, json={})
        # (A transport with a deadline never takes the gate, open or not: it is admitted.)
        assert is_open(limiter.fast_gate) == through_gate
        response = await client.post(URL, json={})
    assert response.content == b"ok"
    (wait,) = sleeps.waits
    taken = 0.0 if deadline is None else 5.0
    assert [a.elapsed for a in response.extensions["retry_history"]] == pytest.approx(
        [taken, taken + wait]
    )
