"""The pure retry machine: every decision, without a network, a clock or a sleep."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retry_transport import Backoff, Classification, Outcome, RetryPolicy, Verdict
from retry_transport._machine import (
    Action,
    Fail,
    Finish,
    Gate,
    Read,
    Report,
    RetryMachine,
    Send,
    Sleep,
    Spend,
    Stalled,
)

from .machine_helpers import FakeClock, FakeLimiter, response, run_machine, sse

POLICY = RetryPolicy()
OVERLOADED = (
    "event: error\n"
    'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
)
DELTA = (
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}'
)
START = 'event: message_start\ndata: {"type":"message_start","message":{"id":"m","content":[]}}'
PING = 'event: ping\ndata: {"type": "ping"}'


def finished(run_end: Finish | Fail) -> Finish:
    assert isinstance(run_end, Finish), run_end
    return run_end


def failed(run_end: Finish | Fail) -> Fail:
    assert isinstance(run_end, Fail), run_end
    return run_end


def test_503_then_200_retries_once_with_congestion_backoff_and_blocks() -> None:
    run = run_machine([response(503), response(200, "ok")], random=lambda: 0.5)
    end = finished(run.end)
    assert end.response.status_code == 200
    assert run.sends == 2
    assert run.sleeps == [1.0]  # uniform(0, 2.0) drawn at 0.5
    assert run.blocks == [1.0]
    assert run.closes == 1
    assert [a.status for a in end.history] == [503, 200]
    assert end.history[0].verdict is Verdict.CONGESTION
    assert end.history[0].delay == 1.0
    assert end.mark is False


def test_success_on_first_try_has_one_history_entry_and_no_mark() -> None:
    run = run_machine([response(200)])
    end = finished(run.end)
    assert run.sends == 1
    assert run.sleeps == []
    assert len(end.history) == 1
    assert end.history[0].verdict is None


def test_retry_after_seconds_is_honoured_exactly_and_blocks_for_it() -> None:
    run = run_machine([response(429, headers={"retry-after": "3"}), response(200)])
    assert run.sleeps == [3.0]
    assert run.blocks == [3.0]


def test_retry_after_ms_is_honoured() -> None:
    run = run_machine([response(503, headers={"retry-after-ms": "1500"}), response(200)])
    assert run.sleeps == [1.5]


def test_retry_after_http_date_is_relative_to_the_wall_clock() -> None:
    run = run_machine(
        [response(503, headers={"retry-after": "Tue, 14 Nov 2023 22:13:25 GMT"}), response(200)],
        wall_clock=1_699_999_995.0,  # 2023-11-14T22:13:15Z, ten seconds before
    )
    assert run.sleeps == [pytest.approx(10.0)]


def test_retry_after_above_max_retry_after_returns_at_once_without_blocking() -> None:
    run = run_machine([response(429, headers={"retry-after": "3600"}), response(200)])
    end = finished(run.end)
    assert run.sends == 1
    assert end.response.status_code == 429
    assert run.blocks == []
    assert end.mark is True


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    run = run_machine([response(503, headers={"retry-after": "soon-ish"}), response(200)])
    assert run.sleeps == [1.0]


def test_fatal_status_is_returned_at_once_marked() -> None:
    run = run_machine([response(404, '{"error": "nope"}'), response(200)])
    end = finished(run.end)
    assert run.sends == 1
    assert end.response.status_code == 404
    assert end.mark is True
    assert end.held == b'{"error": "nope"}'


def test_exhaustion_returns_the_last_response_marked() -> None:
    run = run_machine([response(503, f"attempt {n}") for n in range(1, 6)])
    end = finished(run.end)
    assert run.sends == 5
    assert end.held == b"attempt 5"
    assert end.mark is True
    assert len(end.history) == 5
    assert end.history[-1].delay is None


def test_unrecognised_400_gets_three_tries_in_total() -> None:
    run = run_machine([response(400, "something odd happened")] * 5)
    assert run.sends == 3
    assert finished(run.end).history[0].verdict is Verdict.UNRECOGNISED


def test_unrecognised_400_never_blocks_other_requests() -> None:
    run = run_machine([response(400, "something odd happened")] * 3)
    assert run.blocks == []


def test_unrecognised_400_uses_the_transient_backoff() -> None:
    run = run_machine([response(400, "something odd"), response(200)], random=lambda: 0.5)
    assert run.sleeps == [0.25]


def test_x_should_retry_false_overrides_a_retryable_status() -> None:
    run = run_machine([response(503, headers={"x-should-retry": "false"}), response(200)])
    assert run.sends == 1
    assert finished(run.end).history[0].reason == "x-should-retry: false"


def test_x_should_retry_true_overrides_a_fatal_status() -> None:
    run = run_machine([response(404, headers={"x-should-retry": "true"}), response(200)])
    assert run.sends == 2
    end = finished(run.end)
    assert end.response.status_code == 200
    assert end.history[0].reason == "x-should-retry: true"


def test_connect_error_is_retried_even_when_the_body_cannot_be_replayed() -> None:
    steps: list[httpx.Response | Exception] = [httpx.ConnectError("refused"), response(200)]
    run = run_machine(steps, replayable=False)
    assert run.sends == 2
    assert finished(run.end).history[0].exception == "ConnectError"


def test_dropped_connection_is_retried_for_a_replayable_post() -> None:
    steps: list[httpx.Response | Exception] = [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        response(200),
    ]
    run = run_machine(steps)
    assert run.sends == 2


def test_dropped_connection_is_not_retried_when_the_body_cannot_be_replayed() -> None:
    error = httpx.RemoteProtocolError("Server disconnected")
    run = run_machine([error, response(200)], replayable=False)
    assert run.sends == 1
    assert failed(run.end).exception is error


def test_read_timeout_on_post_is_not_retried_by_default() -> None:
    error = httpx.ReadTimeout("timed out")
    run = run_machine([error, response(200)])
    assert run.sends == 1
    assert failed(run.end).exception is error


def test_read_timeout_on_post_with_idempotency_key_is_retried() -> None:
    run = run_machine([httpx.ReadTimeout("timed out"), response(200)], idempotency_key=True)
    assert run.sends == 2


def test_read_timeout_on_get_is_retried() -> None:
    run = run_machine([httpx.ReadTimeout("timed out"), response(200)], method="GET")
    assert run.sends == 2


def test_read_timeout_on_post_is_retried_when_the_policy_opts_in() -> None:
    policy = RetryPolicy(retry_read_errors=True)
    run = run_machine([httpx.ReadTimeout("timed out"), response(200)], policy)
    assert run.sends == 2


def test_exhausted_exceptions_re_raise_the_last_one() -> None:
    errors = [httpx.ConnectError(f"refused {n}") for n in range(5)]
    run = run_machine(list(errors))
    assert failed(run.end).exception is errors[-1]
    assert run.sends == 5


def test_an_unknown_exception_is_not_retried() -> None:
    error = ValueError("bug")
    run = run_machine([error, response(200)])
    assert run.sends == 1
    assert failed(run.end).exception is error


def test_no_wait_runs_past_the_deadline() -> None:
    policy = RetryPolicy(deadline=5.0)
    run = run_machine([response(429, headers={"retry-after": "6"}), response(200)], policy)
    end = finished(run.end)
    assert run.sends == 1
    assert end.response.status_code == 429
    assert end.mark is True


def test_deadline_counts_time_spent_in_earlier_attempts() -> None:
    clock = FakeClock()
    policy = RetryPolicy(deadline=10.0)
    steps = [response(503, headers={"retry-after": "4"})] * 4 + [response(200)]
    run = run_machine(steps, policy, clock=clock)
    # 0 + 4 + 4 = 8 s elapsed after two waits; a third 4 s wait would end at 12 s.
    assert run.sends == 3
    assert run.sleeps == [4.0, 4.0]


def test_spent_budget_returns_the_response_at_once() -> None:
    limiter = FakeLimiter(allow=False)
    run = run_machine([response(503), response(200)], limiter=limiter)
    assert run.sends == 1
    assert limiter.retries_asked == 1
    assert finished(run.end).mark is True


def test_a_spent_budget_still_blocks_on_congestion() -> None:
    run = run_machine(
        [response(429, headers={"retry-after": "2"})], limiter=FakeLimiter(allow=False)
    )
    assert run.blocks == [2.0]


def test_fatal_responses_do_not_spend_budget() -> None:
    limiter = FakeLimiter()
    run_machine([response(401)], limiter=limiter)
    assert limiter.retries_asked == 0


def test_custom_classifier_is_consulted_first() -> None:
    seen: list[Outcome] = []

    def classifier(outcome: Outcome) -> Classification | None:
        seen.append(outcome)
        if outcome.status == 418:
            return Classification(Verdict.TRANSIENT, "teapot warming up")
        return None

    run = run_machine([response(418, "brewing"), response(200)], RetryPolicy(classifier=classifier))
    assert run.sends == 2
    assert seen[0].body == b"brewing"
    assert seen[0].url == "https://api.example.com/v1/chat/completions"
    assert finished(run.end).history[0].reason == "teapot warming up"


def test_custom_classifier_that_raises_falls_back_to_the_default() -> None:
    def classifier(outcome: Outcome) -> Classification | None:
        raise RuntimeError("broken classifier")

    run = run_machine([response(503), response(200)], RetryPolicy(classifier=classifier))
    assert run.sends == 2


def test_error_body_is_peeked_only_up_to_the_limit() -> None:
    seen: list[bytes] = []

    def classifier(outcome: Outcome) -> Classification | None:
        seen.append(outcome.body)
        return None

    policy = RetryPolicy(peek_limit=1000, classifier=classifier)
    run = run_machine([response(404, b"x" * 10_000)], policy, chunk_size=100)
    end = finished(run.end)
    assert seen == [b"x" * 1000]
    assert end.held == b"x" * 1000  # the rest stays in the stream for the caller


def test_stream_error_before_content_is_retried() -> None:
    run = run_machine([sse(OVERLOADED), sse(DELTA)])
    end = finished(run.end)
    assert run.sends == 2
    assert end.history[0].verdict is Verdict.CONGESTION
    assert b"text_delta" in end.held


def test_stream_error_after_message_start_and_ping_is_retried() -> None:
    run = run_machine([sse(START, PING, OVERLOADED), sse(START, PING, DELTA)])
    assert run.sends == 2


def test_stream_error_after_content_is_not_retried() -> None:
    run = run_machine([sse(DELTA, OVERLOADED), sse(DELTA)])
    end = finished(run.end)
    assert run.sends == 1
    assert end.mark is False
    assert end.held.startswith(b"event: content_block_delta")


def test_stream_without_errors_is_handed_back_with_its_preamble() -> None:
    run = run_machine([sse(START, DELTA)], chunk_size=7)
    end = finished(run.end)
    assert run.sends == 1
    assert end.held.startswith(b"event: message_start")
    assert b"text_delta" in end.held


def test_stream_peek_off_hands_the_stream_back_unread() -> None:
    run = run_machine([sse(OVERLOADED)], RetryPolicy(peek_sse=False))
    end = finished(run.end)
    assert run.sends == 1
    assert end.held == b""


def test_gate_wait_past_the_deadline_hands_back_the_last_complete_response() -> None:
    limiter = FakeLimiter(gate_waits=[0.0, 100.0])
    policy = RetryPolicy(deadline=30.0)
    run = run_machine([response(503, "busy"), response(200)], policy, limiter=limiter)
    end = finished(run.end)
    assert run.sends == 1
    assert end.closed is True
    assert end.held == b"busy"
    assert end.response.status_code == 503


def test_gate_wait_past_the_deadline_before_any_attempt_fails_with_a_deadline() -> None:
    limiter = FakeLimiter(gate_waits=[100.0])
    run = run_machine([response(200)], RetryPolicy(deadline=30.0), limiter=limiter)
    end = failed(run.end)
    assert end.exception is None  # the driver raises DeadlineExceeded
    assert run.sends == 0


def test_gate_waits_are_slept_and_rechecked() -> None:
    limiter = FakeLimiter(gate_waits=[2.0, 0.5, 0.0])
    run = run_machine([response(200)], limiter=limiter)
    assert run.sleeps == [2.0, 0.5]
    assert run.sends == 1


@settings(max_examples=200)
@given(
    statuses=st.lists(st.sampled_from([200, 400, 404, 429, 500, 503, 529]), min_size=1),
    max_attempts=st.integers(min_value=1, max_value=8),
    draw=st.floats(min_value=0.0, max_value=0.999),
)
def test_attempts_never_exceed_max_attempts(
    statuses: list[int], max_attempts: int, draw: float
) -> None:
    policy = dataclasses.replace(
        POLICY,
        max_attempts=max_attempts,
        congestion_backoff=Backoff(1.0, 5.0),
        transient_backoff=Backoff(1.0, 5.0),
    )
    steps = [response(s) for s in statuses] + [response(503)] * 10
    run = run_machine(steps, policy, random=lambda: draw)
    assert 1 <= run.sends <= max_attempts
    assert all(0 <= s <= 5.0 for s in run.sleeps)


@settings(max_examples=200)
@given(
    waits=st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=6),
    deadline=st.floats(min_value=0.1, max_value=100.0),
)
def test_the_deadline_is_never_exceeded(waits: list[float], deadline: float) -> None:
    clock = FakeClock()
    start = clock.now
    steps = [response(503, headers={"retry-after-ms": str(int(w * 1000))}) for w in waits]
    run_machine([*steps, response(200)], RetryPolicy(deadline=deadline), clock=clock)
    assert clock.now - start <= deadline + 1e-9  # float addition of the waits


def test_a_give_up_without_a_named_wait_blocks_nobody() -> None:
    run = run_machine([response(503)] * 5)
    assert len(run.blocks) == 4  # one per retry; the fifth attempt gives up and blocks nobody


def test_a_spent_budget_without_a_named_wait_blocks_nobody() -> None:
    run = run_machine([response(503), response(200)], limiter=FakeLimiter(allow=False))
    assert run.sends == 1
    assert run.blocks == []


def test_a_backoff_block_is_at_most_one_base_interval() -> None:
    run = run_machine([response(503)] * 4 + [response(200)], random=lambda: 0.75)
    assert run.sleeps == [1.5, 3.0, 6.0, 12.0]  # the request's own backoff grows
    assert run.blocks == [1.5, 2.0, 2.0, 2.0]  # the pause it imposes on others does not


def test_a_named_wait_blocks_for_all_of_it() -> None:
    run = run_machine([response(429, headers={"retry-after": "45"}), response(200)])
    assert run.blocks == [45.0]


# -- actions: the budget and the reports are the driver's to perform ------------------------


def test_a_retry_asks_the_budget_through_a_spend_action_before_sleeping() -> None:
    run = run_machine([response(503), response(200)])
    kinds = [type(a) for a in run.actions]
    assert Spend in kinds
    assert kinds.index(Spend) < kinds.index(Sleep)


def test_a_fatal_answer_asks_no_budget() -> None:
    run = run_machine([response(401)])
    assert not any(isinstance(a, Spend) for a in run.actions)


def test_the_machine_reports_retries_and_give_ups_and_logs_nothing_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="retry_transport")
    run = run_machine([response(503), response(503)], RetryPolicy(max_attempts=2))
    reports = [a for a in run.actions if isinstance(a, Report)]
    assert [r.level for r in reports] == [logging.INFO, logging.WARNING]
    assert [r.event.kind for r in reports if r.event is not None] == ["retry", "give_up"]
    assert caplog.records == []


def test_a_plain_answer_is_reported_at_debug_without_an_event() -> None:
    run = run_machine([response(404)])
    (report,) = [a for a in run.actions if isinstance(a, Report)]
    assert report.level == logging.DEBUG
    assert report.event is None


def test_a_raising_custom_classifier_is_reported_with_its_exception() -> None:
    def broken(outcome: Outcome) -> Classification | None:
        raise RuntimeError("bug")

    run = run_machine([response(404)], RetryPolicy(classifier=broken))
    errors = [a for a in run.actions if isinstance(a, Report) and a.level == logging.ERROR]
    assert len(errors) == 1
    assert isinstance(errors[0].exc_info, RuntimeError)


def test_a_sleep_that_overran_the_deadline_sends_nothing_more() -> None:
    from retry_transport._machine import Gate, RetryMachine, Send

    clock = FakeClock()
    machine = RetryMachine(
        RetryPolicy(deadline=10.0),
        method="POST",
        url="https://api.example.com/v1/chat/completions",
        idempotency_key=False,
        replayable=True,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
        random=lambda: 0.5,
    )
    steps = machine.run()
    action = next(steps)
    assert isinstance(action, Gate)
    action = steps.send(0.0)
    assert isinstance(action, Send)
    action = steps.send(response(503))
    while not isinstance(action, Sleep):
        action = steps.send(None if not isinstance(action, Spend) else True)
    clock.advance(20.0)  # the sleep overran the deadline
    action = steps.send(None)
    while not isinstance(action, Finish | Fail):
        assert not isinstance(action, Gate | Send)
        action = steps.send(None)
    assert finished(action).response.status_code == 503


def _peeking(policy: RetryPolicy, clock: FakeClock) -> tuple[Generator[Action, Any, None], Read]:
    """A machine sent one POST, answered by a 200 event stream: it reads the preamble."""
    machine = RetryMachine(
        policy,
        method="POST",
        url="https://api.example.com/v1/messages",
        idempotency_key=False,
        replayable=True,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
        random=lambda: 0.5,
    )
    steps = machine.run()
    action = next(steps)
    assert isinstance(action, Gate)
    action = steps.send(0.0)
    assert isinstance(action, Send)
    stream = httpx.Response(200, headers={"content-type": "text/event-stream"})
    action = steps.send(stream)
    assert isinstance(action, Read)
    return steps, action


def test_a_preamble_stalled_past_the_deadline_is_handed_on_with_what_came() -> None:
    clock = FakeClock()
    steps, first = _peeking(RetryPolicy(deadline=30.0), clock)
    assert first.timeout == 30.0
    action = steps.send(b": keep-alive\n\n")
    assert isinstance(action, Read)
    assert action.timeout == 30.0
    clock.advance(30.0)  # the read's timeout passed, and with it the deadline
    action = steps.send(Stalled())
    while not isinstance(action, Finish | Fail):
        action = steps.send(None)
    handed = finished(action)
    assert (handed.response.status_code, handed.held, handed.failure) == (
        200,
        b": keep-alive\n\n",
        None,
    )


def test_a_preamble_stalled_before_anything_came_is_a_stall() -> None:
    clock = FakeClock()
    steps, _ = _peeking(RetryPolicy(deadline=30.0, max_attempts=1), clock)
    clock.advance(30.0)
    action = steps.send(Stalled())
    while not isinstance(action, Finish | Fail):
        action = steps.send(None)
    assert isinstance(action, Finish)
    assert action.failure is not None
    assert action.failure.kind == "stall"


def test_a_429_naming_nothing_is_tried_three_times_and_one_with_retry_after_five() -> None:
    bare = run_machine([response(429, "Error: Request failed, status 429")] * 5)
    assert bare.sends == 3
    assert finished(bare.end).response.status_code == 429
    (give_up,) = [a.event for a in bare.actions if isinstance(a, Report) and a.level > 20]
    assert give_up is not None
    assert give_up.reason == "3 attempts made (status 429 (nothing else named))"
    told = run_machine([response(429, "", {"retry-after": "1"})] * 5)
    assert told.sends == POLICY.max_attempts == 5
