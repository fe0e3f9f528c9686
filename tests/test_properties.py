"""Property-based tests (hypothesis) of the pure core: backoff, Retry-After parsing, and the
retry machine's waits, deadline and stop decision over arbitrary sequences of outcomes.

tests/test_machine.py, tests/test_policy.py and tests/test_waits.py already check that a
backoff delay lies in [0, cap], that attempts never exceed ``max_attempts`` for plain statuses,
that retry-after-ms waits never run past the deadline, and that `server_wait` returns None or a
finite non-negative number. This module goes further: mixed responses, exceptions and event
streams, attempts and reads that take time, shared-block waits, a budget that runs out, and
the exact values the parsers must return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from retry_transport import Backoff, RetryPolicy, Verdict
from retry_transport._machine import (
    Action,
    Block,
    Close,
    Fail,
    Finish,
    Gate,
    Read,
    Report,
    RetryMachine,
    Send,
    Sleep,
    Spend,
)
from retry_transport._waits import server_wait

from .machine_helpers import FakeClock, FakeLimiter

NOW = 1_700_000_000.0

# -- backoff -------------------------------------------------------------------------------------

positive = st.floats(min_value=1e-6, max_value=1e6)


@given(base=positive, cap=positive, retry=st.integers(min_value=1, max_value=2000))
def test_backoff_ceiling_doubles_up_to_the_cap_and_never_shrinks(
    base: float, cap: float, retry: int
) -> None:
    backoff = Backoff(base=base, cap=cap)
    ceiling = backoff.ceiling(retry)
    assert 0.0 < ceiling <= cap
    assert backoff.ceiling(retry + 1) >= ceiling
    if retry <= 1000:
        assert ceiling == min(cap, base * 2.0 ** (retry - 1))


@given(
    base=positive,
    cap=positive,
    retry=st.integers(min_value=1, max_value=2000),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_delay_is_full_jitter_over_the_ceiling(
    base: float, cap: float, retry: int, draw: float
) -> None:
    backoff = Backoff(base=base, cap=cap)
    delay = backoff.delay(retry, lambda: draw)
    assert delay == backoff.ceiling(retry) * draw
    assert 0.0 <= delay < cap or delay == 0.0


# -- Retry-After parsing -------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**15))
def test_retry_after_delta_seconds_are_read_exactly(seconds: int) -> None:
    assert server_wait({"retry-after": str(seconds)}, now=NOW) == float(seconds)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=999))
def test_retry_after_decimal_seconds_are_read_exactly(whole: int, fraction: int) -> None:
    value = f"{whole}.{fraction:03d}"
    assert server_wait({"retry-after": value}, now=NOW) == float(value)


@given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["5", "x", "3600"]))
def test_millisecond_headers_are_read_and_preferred(millis: int, other: str) -> None:
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        headers = {name: str(millis), "retry-after": other}
        assert server_wait(headers, now=NOW) == millis / 1000.0


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),  # naive: made aware (UTC) below
        max_value=datetime(9999, 12, 30),
    ),
    st.floats(min_value=0.0, max_value=4e9),
)
def test_retry_after_http_dates_are_read_relative_to_now(when: datetime, now: float) -> None:
    when = when.replace(microsecond=0, tzinfo=UTC)
    wait = server_wait({"retry-after": format_datetime(when, usegmt=True)}, now=now)
    assert wait is not None
    assert math.isclose(wait, max(when.timestamp() - now, 0.0), rel_tol=1e-12, abs_tol=1e-6)


@given(
    st.integers(min_value=1, max_value=10**15), st.sampled_from(["retry-after", "retry-after-ms"])
)
def test_negative_waits_are_ignored(value: int, name: str) -> None:
    assert server_wait({name: f"-{value}"}, now=NOW) is None


@given(
    st.text(min_size=1, max_size=30).filter(lambda text: not text.isascii()),
    st.sampled_from(["retry-after", "retry-after-ms", "x-ms-retry-after-ms"]),
)
def test_non_ascii_waits_are_ignored(value: str, name: str) -> None:
    assert server_wait({name: value}, now=NOW) is None


@given(
    st.text(alphabet="0123456789. eE+-", min_size=65, max_size=400),
    st.sampled_from(["retry-after", "retry-after-ms"]),
)
def test_overlong_waits_are_ignored_unparsed_or_read_up_to_too_long(value: str, name: str) -> None:
    wait = server_wait({name: value}, now=NOW)
    number = value.strip()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", number):
        # However long, a number is read as its value, at most 1e20 s (a float's overflow too).
        seconds = min(float(number), 1e20)
        assert wait == seconds / (1000.0 if name.endswith("ms") else 1.0)
        if re.fullmatch(r"0*[1-9][0-9]{20,}(?:\.[0-9]+)?", number):
            assert wait is not None
            assert wait >= 1e17  # more than 20 integer digits: longer than any cap
    else:
        assert wait is None


@given(
    st.integers(min_value=21, max_value=2000),
    st.sampled_from(["retry-after", "retry-after-ms", "x-ms-retry-after-ms"]),
)
def test_every_all_digit_wait_of_more_than_20_digits_is_too_long(digits: int, name: str) -> None:
    wait = server_wait({name: "7" * digits}, now=NOW)
    assert wait is not None
    assert wait >= 1e17


# -- the retry machine ---------------------------------------------------------------------------

DEGRADED = b'{"status":400,"title":"Bad Request","detail":"Function \'x\': DEGRADED function"}'
CONTEXT = b'{"error":{"message":"This model\'s maximum context length is 8192 tokens"}}'
OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n'
)
CONTENT_EVENT = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
PREAMBLE_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'

EXCEPTIONS: dict[str, Callable[[], Exception]] = {
    "ConnectError": lambda: httpx.ConnectError("refused"),
    "PoolTimeout": lambda: httpx.PoolTimeout("pool"),
    "ReadTimeout": lambda: httpx.ReadTimeout("slow"),
    "RemoteProtocolError": lambda: httpx.RemoteProtocolError("dropped"),
    "ReadError": lambda: httpx.ReadError("reset"),
    "ValueError": lambda: ValueError("a bug"),
}


@dataclass(frozen=True)
class Reply:
    """One scripted attempt: a response (status, headers, body; ``cut``: the connection drops
    after the body's last chunk) or an exception's name."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    exception: str | None = None
    cut: bool = False

    def outcome(self) -> httpx.Response | Exception:
        if self.exception is not None:
            return EXCEPTIONS[self.exception]()
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)


wait_values = st.one_of(
    st.integers(min_value=-5, max_value=500).map(str),
    st.floats(min_value=0.0, max_value=200.0).map(lambda f: f"{f:.3f}"),
    st.sampled_from(["soon", "nan", "1e9", "9" * 20, "Fri, 31 Dec 9999 23:59:59 GMT"]),
)
wait_headers = st.lists(
    st.tuples(st.sampled_from(["retry-after", "retry-after-ms", "x-should-retry"]), wait_values)
    | st.tuples(st.just("x-should-retry"), st.sampled_from(["true", "false"])),
    max_size=2,
).map(tuple)
error_replies = st.builds(
    Reply,
    status=st.sampled_from([400, 401, 404, 408, 409, 422, 429, 500, 502, 503, 504, 529]),
    headers=wait_headers,
    body=st.sampled_from([b"", b"something odd", DEGRADED, CONTEXT, b'{"error":"wait 3.5s"}']),
    cut=st.booleans(),
)
stream_replies = st.builds(
    Reply,
    status=st.just(200),
    headers=st.just((("content-type", "text/event-stream"),)),
    body=st.lists(
        st.sampled_from([PREAMBLE_EVENT, OVERLOADED_EVENT, CONTENT_EVENT]), max_size=4
    ).map(b"".join),
    cut=st.booleans(),
)
replies = st.one_of(
    error_replies,
    stream_replies,
    st.just(Reply()),
    st.sampled_from(sorted(EXCEPTIONS)).map(lambda name: Reply(exception=name)),
)
# Scripts drawn from a small pool of replies, so that the same failure repeats (as upstream
# failures do) and the attempt limits are reached.
scripts = st.lists(replies, min_size=1, max_size=3).flatmap(
    lambda pool: st.lists(st.sampled_from(pool), max_size=8)
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(min_value=1, max_value=7),
    unclassified_400_attempts=st.integers(min_value=1, max_value=7),
    max_retry_after=st.floats(min_value=0.0, max_value=120.0),
    deadline=st.none() | st.floats(min_value=0.5, max_value=200.0),
    congestion_backoff=st.builds(Backoff, base=st.floats(0.01, 10.0), cap=st.floats(0.01, 90.0)),
    transient_backoff=st.builds(Backoff, base=st.floats(0.01, 10.0), cap=st.floats(0.01, 90.0)),
    peek_limit=st.integers(min_value=1, max_value=4096),
    retry_read_errors=st.booleans(),
)


class ScriptedLimiter(FakeLimiter):
    """A `FakeLimiter` whose budget answers come from a list (the last repeats) and which
    records the blocks it is asked for."""

    def __init__(self, answers: list[bool], gate_waits: list[float]) -> None:
        super().__init__(gate_waits=gate_waits)
        self.answers = answers
        self.asked = 0
        self.granted = 0
        self.denied = False
        self.blocks: list[float] = []

    def allow_retry(self) -> bool:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        self.granted += answer
        self.denied = self.denied or not answer
        return answer

    async def block(self, seconds: float) -> None:
        self.blocks.append(seconds)

    def block_sync(self, seconds: float) -> None:
        self.blocks.append(seconds)


@dataclass
class Trace:
    """What one run of the machine did, checked as it went."""

    end: Finish | Fail
    sends: int
    sleeps: list[float]
    retried_after: list[Reply]


def drive(
    script: list[Reply],
    policy: RetryPolicy,
    limiter: ScriptedLimiter,
    *,
    method: str,
    replayable: bool,
    fast_path: bool,
    attempt_costs: list[float],
    read_cost: float,
    chunk: int,
    draw: float,
) -> Trace:
    """Run a machine over ``script`` (a 200 once it runs out), moving the clock as attempts and
    reads take time, and check every action against the deadline and the budget."""
    clock = FakeClock()
    machine = RetryMachine(
        policy,
        method=method,
        url="https://api.example.com/v1/x",
        idempotency_key=False,
        replayable=replayable,
        clock=clock,
        wall_clock=lambda: NOW,
        random=lambda: draw,
    )
    start = clock.now
    deadline = None if policy.deadline is None else start + policy.deadline
    pending = list(script)
    sent: list[Reply] = []
    sleeps: list[float] = []
    body: list[bytes | Exception] = []
    late_reads = 0

    def attempt() -> httpx.Response | Exception:
        nonlocal body, late_reads
        reply = pending.pop(0) if pending else Reply()
        sent.append(reply)
        clock.advance(attempt_costs[min(len(sent), len(attempt_costs)) - 1])
        body = [reply.body[i : i + chunk] for i in range(0, len(reply.body), chunk)]
        if reply.cut:
            body.append(httpx.RemoteProtocolError("peer closed the connection"))
        late_reads = 0
        return reply.outcome()

    # On the fast path the driver sent the first attempt itself, and says when it started.
    steps = machine.run(attempt(), start) if fast_path else machine.run()
    action: Action = next(steps)
    while not isinstance(action, Finish | Fail):
        answer: object = None
        if isinstance(action, Gate):
            answer = limiter.gate_sync()
        elif isinstance(action, Send):
            assert len(sent) < policy.max_attempts
            assert not limiter.denied, "a retry was sent after the budget said no"
            if deadline is None:
                assert action.timeout is None
            else:
                assert action.timeout is not None
                assert 0.0 < action.timeout <= deadline - clock.now, "no time left to send in"
            answer = attempt()
        elif isinstance(action, Read):
            if deadline is not None and clock.now >= deadline:
                late_reads += 1
                assert late_reads <= 1, "the peek went on reading past the deadline"
            clock.advance(read_cost)
            answer = body.pop(0) if body else None
        elif isinstance(action, Sleep):
            assert math.isfinite(action.seconds)
            assert action.seconds >= 0.0
            if deadline is not None:
                assert clock.now + action.seconds <= deadline + 1e-9, "a wait ran past the deadline"
            sleeps.append(action.seconds)
            clock.advance(action.seconds)
        elif isinstance(action, Block):
            limiter.block_sync(action.seconds)
        elif isinstance(action, Spend):
            answer = limiter.allow_retry()
        else:
            assert isinstance(action, Close | Report)
        action = steps.send(answer)
    return Trace(action, len(sent), sleeps, sent[:-1])


@settings(max_examples=400, deadline=None)
@given(
    script=scripts,
    policy=policies,
    answers=st.lists(st.booleans(), min_size=1, max_size=8),
    gate_waits=st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=4),
    method=st.sampled_from(["GET", "POST"]),
    replayable=st.booleans(),
    fast_path=st.booleans(),
    attempt_costs=st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=1, max_size=8),
    read_cost=st.floats(min_value=0.0, max_value=5.0),
    chunk=st.integers(min_value=1, max_value=64),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_the_stop_decision_and_every_wait_hold_for_any_sequence_of_outcomes(
    script: list[Reply],
    policy: RetryPolicy,
    answers: list[bool],
    gate_waits: list[float],
    method: str,
    replayable: bool,
    fast_path: bool,
    attempt_costs: list[float],
    read_cost: float,
    chunk: int,
    draw: float,
) -> None:
    limiter = ScriptedLimiter(answers, list(gate_waits))
    trace = drive(
        script,
        policy,
        limiter,
        method=method,
        replayable=replayable,
        fast_path=fast_path,
        attempt_costs=attempt_costs,
        read_cost=read_cost,
        chunk=chunk,
        draw=draw,
    )
    history = trace.end.history
    # Attempts never exceed max_attempts; every attempt is in the history.
    assert 1 <= trace.sends <= policy.max_attempts or (trace.sends == 0 and not fast_path)
    assert len(history) == trace.sends
    # Every retry was paid for from the budget, and a refusal ended the loop. (A retry paid for
    # may still be lost to the deadline while waiting for the shared block to lift.)
    retries = max(trace.sends - 1, 0)
    assert limiter.granted in (retries, retries + 1)
    if limiter.granted > retries:
        assert history[-1].delay is not None
    assert limiter.asked - limiter.granted <= 1
    for entry in history:
        last = entry.number == len(history)
        if entry.verdict is Verdict.FATAL:  # never retried
            assert last
            assert entry.delay is None
        if entry.verdict is Verdict.UNRECOGNISED and not last:
            assert entry.number < policy.unclassified_400_attempts
        if not last:
            assert entry.delay is not None
            assert entry.verdict is not None
            cap = max(
                policy.max_retry_after,
                policy.congestion_backoff.cap
                if entry.verdict is Verdict.CONGESTION
                else policy.transient_backoff.cap,
            )
            assert 0.0 <= entry.delay <= cap
    # A body that cannot be replayed is only ever resent after a failure to connect.
    if not replayable:
        assert all(r.exception in ("ConnectError", "PoolTimeout") for r in trace.retried_after)
    # A read timeout on a POST is resent only when the policy opts in (there is no
    # Idempotency-Key): the upstream may have acted on it. A 200 stream cut before its content
    # is retried like any other pre-content error, POST included (tests/integration/test_faults.py).
    if method == "POST" and not policy.retry_read_errors:
        assert all(r.exception != "ReadTimeout" for r in trace.retried_after)
    # A block is never longer than a wait the policy would honour itself.
    assert all(
        0.0 < seconds <= max(policy.max_retry_after, policy.congestion_backoff.cap)
        for seconds in limiter.blocks
    )


@settings(max_examples=200, deadline=None)
@given(
    millis=st.integers(min_value=0, max_value=10**9),
    max_retry_after=st.floats(min_value=0.0, max_value=1000.0),
)
def test_a_server_named_wait_is_honoured_exactly_or_not_at_all(
    millis: int, max_retry_after: float
) -> None:
    wait = millis / 1000.0
    limiter = ScriptedLimiter([True], [])
    trace = drive(
        [Reply(503, (("retry-after-ms", str(millis)),))],
        RetryPolicy(max_retry_after=max_retry_after),
        limiter,
        method="GET",
        replayable=True,
        fast_path=False,
        attempt_costs=[0.0],
        read_cost=0.0,
        chunk=64,
        draw=0.5,
    )
    if wait <= max_retry_after:
        assert trace.sleeps == [wait]
        assert trace.sends == 2
        assert limiter.blocks == ([wait] if wait > 0 else [])
    else:  # a quota, not congestion: handed back at once, blocking nobody
        assert trace.sleeps == []
        assert trace.sends == 1
        assert limiter.blocks == []


ODD_400 = Reply(400, body=b"something odd")
BUSY = Reply(503)


@settings(max_examples=200, deadline=None)
@given(
    script=st.lists(st.sampled_from([ODD_400, BUSY]), min_size=1, max_size=10),
    max_attempts=st.integers(min_value=1, max_value=8),
    unclassified=st.integers(min_value=1, max_value=8),
)
def test_an_unrecognised_400_is_tried_at_most_unclassified_400_attempts_times(
    script: list[Reply], max_attempts: int, unclassified: int
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, unclassified_400_attempts=unclassified)
    trace = drive(
        script,
        policy,
        ScriptedLimiter([True], []),
        method="POST",
        replayable=True,
        fast_path=False,
        attempt_costs=[0.0],
        read_cost=0.0,
        chunk=64,
        draw=0.5,
    )
    history = trace.end.history
    # The attempt that met an unrecognised 400 at or past the limit was the last one.
    stops = [a.number for a in history if a.verdict is Verdict.UNRECOGNISED]
    assert all(number < unclassified for number in stops[:-1])
    if stops and stops[-1] >= unclassified:
        assert history[-1].number == stops[-1]
    if all(reply == ODD_400 for reply in script):
        assert trace.sends == min(max_attempts, unclassified, len(script) + 1)


@settings(max_examples=200, deadline=None)
@given(
    waits=st.lists(st.none() | st.integers(min_value=0, max_value=90_000), min_size=1, max_size=8),
    deadline=st.floats(min_value=0.5, max_value=120.0),
    fast_path=st.booleans(),
    attempt_costs=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=8),
    gate_waits=st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=4),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_no_wait_runs_past_the_deadline_counted_from_the_first_attempt(
    waits: list[int | None],
    deadline: float,
    fast_path: bool,
    attempt_costs: list[float],
    gate_waits: list[float],
    draw: float,
) -> None:
    # Every attempt is retryable; drive() fails if a Sleep would end past start + deadline or
    # an attempt is allowed more time than the deadline leaves.
    script = [
        Reply(503, () if millis is None else (("retry-after-ms", str(millis)),)) for millis in waits
    ]
    policy = RetryPolicy(deadline=deadline, max_attempts=10, max_retry_after=100.0)
    drive(
        script,
        policy,
        ScriptedLimiter([True], list(gate_waits)),
        method="GET",
        replayable=True,
        fast_path=fast_path,
        attempt_costs=attempt_costs,
        read_cost=0.0,
        chunk=64,
        draw=draw,
    )


@settings(max_examples=200, deadline=None)
@given(
    reply=st.sampled_from(
        [
            Reply(503, body=b"x" * 3000),
            Reply(200, (("content-type", "text/event-stream"),), PREAMBLE_EVENT * 100),
        ]
    ),
    deadline=st.floats(min_value=0.5, max_value=30.0),
    attempt_cost=st.floats(min_value=0.0, max_value=30.0),
    read_cost=st.floats(min_value=0.01, max_value=3.0),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_the_peek_stops_reading_at_the_deadline(
    reply: Reply, deadline: float, attempt_cost: float, read_cost: float, chunk: int
) -> None:
    # A trickling error body or event-stream preamble: drive() fails if the machine asks for a
    # second chunk once the deadline has passed.
    drive(
        [reply],
        RetryPolicy(deadline=deadline, peek_limit=65536),
        ScriptedLimiter([True], []),
        method="GET",
        replayable=True,
        fast_path=False,
        attempt_costs=[attempt_cost],
        read_cost=read_cost,
        chunk=chunk,
        draw=0.5,
    )
