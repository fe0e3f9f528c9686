"""The limiter's pacing desk: tickets, per-scope blocks, the fast path's header scan."""

from __future__ import annotations

import httpx

from retry_transport import SharedLimiter
from retry_transport._desk import Desk, default_fingerprint_key

from .transport_helpers import FakeClock


def desk(clock: FakeClock) -> Desk:
    return Desk(None, headers=True, prefix="p", clock=clock, wall_clock=lambda: 0.0)


def request(url: str = "https://api.test/v1/chat/completions", **kwargs: object) -> httpx.Request:
    return httpx.Request("POST", url, **kwargs)  # type: ignore[arg-type]


def test_a_ticket_names_its_scope_and_store_keys_without_the_key() -> None:
    clock = FakeClock()
    ticket = desk(clock).ticket(
        request(json={"model": "m"}, headers={"authorization": "Bearer sk-secret"})
    )
    assert ticket.scope.model == "m"
    assert "sk-secret" not in "".join(ticket.keys)
    assert ticket.keys[1] == "p|https://api.test"
    assert ticket.cost.requests == 1.0


def test_a_gemini_key_in_the_query_and_a_streamed_body() -> None:
    clock = FakeClock()
    board = desk(clock)

    def chunks() -> object:
        yield b"{}"

    streamed = httpx.Request(
        "POST",
        "https://g.test/v1beta/models/gemini-x:streamGenerateContent?alt=sse&key=abc",
        content=chunks(),  # type: ignore[arg-type]
    )
    ticket = board.ticket(streamed)
    assert ticket.scope.model == "gemini-x"
    assert ticket.scope.key != ""
    assert ticket.cost.tokens == 0.0


def test_scope_blocks_are_kept_per_key_bounded_and_seen_to_end() -> None:
    clock = FakeClock()
    board = desk(clock)
    ticket = board.ticket(request(json={"model": "a"}))
    other = board.ticket(request(json={"model": "b"}))
    ticket.status = 429
    board.record_block(board.block_key(ticket), 5.0)
    board.record_block(board.block_key(ticket), 1.0)  # shorter: ignored
    board.record_block("x", float("nan"))
    assert board.block_wait(ticket) == 5.0
    assert board.block_wait(other) == 0.0
    assert not board.block_over()
    for n in range(5000):
        board.record_block(f"k{n}", 0.5)
    assert len(board._blocks) <= 4096
    clock.now += 10.0
    assert board.block_over()
    assert board.block_wait(ticket) == 0.0
    ticket.status = 503
    assert board.block_key(ticket) == ticket.keys[1]  # an outage blocks the origin


def test_the_fast_path_scans_now_and_then_and_starts_pacing_on_headers() -> None:
    clock = FakeClock()
    board = desk(clock)
    board._pacer.answered("https://api.test")
    plain = httpx.Response(200)
    board.observe_fast(request(), plain)
    assert board.pacer.idle
    with_headers = httpx.Response(
        200,
        headers={"x-ratelimit-remaining-requests": "3", "x-ratelimit-limit-requests": "10"},
    )
    for _ in range(16):
        board.observe_fast(request(json={"model": "m"}), with_headers)
    assert len(board.pacer) == 1  # the scope now has header truth
    assert board.busy is True


def test_a_cancelled_probe_lets_others_go() -> None:
    clock = FakeClock()
    board = desk(clock)
    first = board.ticket(request())
    assert board.pace(first, None) == 0.0
    board.sent(first)
    second = board.ticket(request())
    assert 0.0 < board.pace(second, None) <= 0.05  # held for the probe's answer
    board.done(first)  # cancelled, never answered
    assert board.pace(second, None) == 0.0


def test_pacing_off_keeps_nothing_per_scope() -> None:
    clock = FakeClock()
    board = Desk(None, headers=False, prefix="p", clock=clock, wall_clock=lambda: 0.0)
    ticket = board.ticket(request())
    board.observe(ticket, httpx.Response(429))
    board.congestion(ticket, 100.0)
    board.observe_fast(request(), httpx.Response(200))
    assert board.pace(ticket, None) == 0.0
    assert board.headroom() == []


def test_an_ipv6_origin_is_bracketed_in_its_store_key() -> None:
    ticket = desk(FakeClock()).ticket(request("https://[::1]:8443/v1/chat/completions"))
    assert ticket.keys[1] == "p|https://[::1]:8443"
    assert ticket.scope.origin == "https://[::1]:8443"


class PlainHeaders(dict[str, str]):
    """Headers of a library that keeps no raw list."""


class PlainResponse:
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = PlainHeaders(headers)


def test_rate_limit_headers_of_a_library_without_a_raw_list_are_read_by_name() -> None:
    board = desk(FakeClock())
    ticket = board.ticket(request(json={"model": "m"}))
    headers = {"X-RateLimit-Remaining-Requests": "3", "X-RateLimit-Limit-Requests": "10"}
    board.observe(ticket, PlainResponse(200, headers))
    assert [(h.model, h.dimension, h.limit, h.remaining) for h in board.headroom()] == [
        ("m", "requests", 10.0, 3.0)
    ]


def test_a_shorter_fleet_block_leaves_the_longer_one_in_force() -> None:
    clock = FakeClock()
    board = desk(clock)
    board.note_any_block(30.0)
    board.note_any_block(10.0)
    assert board.blocked_until == clock.now + 30.0


def test_a_block_recorded_between_the_two_looks_keeps_the_fast_path_shut() -> None:
    # Another thread records a block after block_over's unlocked look saw every block over:
    # the look under the lock sees it, and the fast path stays shut.
    now = 1000.0
    reads = 0
    board: Desk

    def clock() -> float:
        nonlocal reads
        reads += 1
        if reads == 3:  # block_over's first look, after record_block's own read
            board._blocks["other"] = board.blocked_until = now + 5.0
        return now

    board = Desk(None, headers=True, prefix="p", clock=clock, wall_clock=lambda: 0.0)
    board.record_block("k", 1.0)
    now += 2.0  # the block on "k" is over
    assert board.block_over() is False
    assert board.blocking is True
    now += 5.0
    assert board.block_over() is True
    assert board.blocking is False


def test_a_full_block_table_drops_the_blocks_that_have_ended_first() -> None:
    clock = FakeClock()
    board = desk(clock)
    board.record_block("long", 100.0)
    for n in range(4095):  # the table is full, not over
        board.record_block(f"k{n}", 0.5)
    clock.now += 1.0
    board.record_block("new", 5.0)
    assert sorted(board._blocks) == ["long", "new"]


def test_a_success_on_the_fast_path_answers_a_new_origins_probe() -> None:
    clock = FakeClock()
    board = desk(clock)
    first = board.ticket(request())
    assert board.pace(first, None) == 0.0
    board.sent(first)  # the probe of a new origin is out: others are held for it
    held = board.busy
    board.observe_fast(request(), httpx.Response(200))  # another request's plain success
    assert (held, board.busy) == (True, False)
    assert board.pace(board.ticket(request()), None) == 0.0


def test_fingerprint_keys_agree_by_name() -> None:
    assert default_fingerprint_key("a") == default_fingerprint_key("a")
    assert default_fingerprint_key("a") != default_fingerprint_key("b")


def test_a_limiter_without_pacing_has_no_desk() -> None:
    limiter = SharedLimiter(pacing=False)
    assert limiter.desk is None
    assert limiter.rate is None
    assert limiter.headroom() == []
    limiter.desk_observe_fast(request(), httpx.Response(200))


def test_a_fleet_block_of_some_scope_is_shown_and_holds_nobody() -> None:
    clock = FakeClock()
    board = desk(clock)
    board.note_any_block(None)
    board.note_any_block(float("inf"))
    assert board.blocked_until == float("-inf")
    board.note_any_block(30.0)
    assert board.blocked_until == clock.now + 30.0
    assert board.block_wait(board.ticket(request())) == 0.0


def test_a_request_given_up_while_the_adaptive_rate_holds_it_gives_its_place_back() -> None:
    clock = FakeClock()
    board = desk(clock)
    board.pacer.answered("https://api.test")
    refused = board.ticket(request(json={"model": "m"}))
    board.sent(refused)
    board.observe(refused, httpx.Response(429))
    assert board.congestion(refused, fallback_rate=20.0)  # the rate paces the scope now
    waiting = [board.ticket(request(json={"model": "m"})) for _ in range(3)]
    assert all(board.pace(ticket, None) > 0.0 for ticket in waiting)
    assert [ticket.queue for ticket in waiting] == [1, 2, 3]
    board.done(waiting[0])  # cancelled while it waited
    assert waiting[0].queue == 0
    state = board.pacer._scopes[refused.scope]
    assert list(state.waiting) == [2, 3]
    # The next one in line looks again in its turn and goes; its place is given back.
    clock.now += board.pace(waiting[1], None)
    assert board.pace(waiting[1], None) == 0.0
    assert waiting[1].booking is not None
    assert waiting[1].queue == 0
    assert list(state.waiting) == [3]
