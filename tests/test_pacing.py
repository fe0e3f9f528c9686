"""The pure pacer: header truth, declared rolling limits and the adaptive rate."""

from __future__ import annotations

import heapq
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retry_transport import RateLimit
from retry_transport._pacing import Pacer, declared_margin
from retry_transport._ratelimit_headers import Headroom
from retry_transport._scope import CostEstimate, Scope

SCOPE = Scope("https://api.test", "k", "m")
OTHER = Scope("https://api.test", "k", "other")
SCOPES = (SCOPE, SCOPE.origin_scope)
ONE = CostEstimate(1.0, 0.0, 0.0)


def tokens(n: float) -> CostEstimate:
    return CostEstimate(1.0, n, 0.0)


# -- RateLimit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"requests": 0}, "RateLimit.requests"),
        ({"requests": True}, "RateLimit.requests"),
        ({"requests": "5"}, "RateLimit.requests"),
        ({"requests": 1.5}, "RateLimit.requests"),
        ({"requests": 1, "per": 0}, "RateLimit.per"),
        ({"requests": 1, "per": math.inf}, "RateLimit.per"),
        ({"requests": 1, "per": "60"}, "RateLimit.per"),
        ({"requests": 1, "tokens": 0}, "RateLimit.tokens"),
        ({"requests": 1, "tokens": False}, "RateLimit.tokens"),
    ],
)
def test_a_bad_rate_limit_names_its_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_rate_limit_defaults() -> None:
    assert RateLimit(40) == RateLimit(requests=40, per=60.0, tokens=None)


@pytest.mark.parametrize(
    ("per", "margin"), [(0.5, 0.05), (2.0, 0.1), (10.0, 0.2), (60.0, 1.0), (3600.0, 1.0)]
)
def test_a_rate_limit_names_its_margin_as_the_readme_says(per: float, margin: float) -> None:
    # Public: the README tells users the margin by this name.
    assert RateLimit(40, per=per).margin == pytest.approx(margin)
    assert RateLimit(40, per=per).margin == declared_margin(per)


# -- nothing known: nothing slowed --------------------------------------------------------------


def test_a_scope_never_heard_of_goes_at_once_after_its_probe_is_answered() -> None:
    pacer = Pacer()
    assert pacer.idle  # a fresh pacer paces nothing yet
    first = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert (first.wait, first.booked) == (0.0, True)
    held = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert not held.booked
    assert held.paced_by == "probe"
    assert 0 < held.wait <= 0.05
    assert pacer.reserve(SCOPES, ONE, 0.0, 0.01).wait == math.inf  # a deadline before it
    assert pacer.reserve(SCOPES, ONE, 0.0, None, patient=False).booked
    pacer.answered(SCOPE.origin)
    assert pacer.idle
    for n in range(100):
        assert pacer.reserve(SCOPES, ONE, 1.0 + n * 1e-6, None).wait == 0.0
    assert len(pacer) == 0


def test_a_probe_not_answered_holds_others_no_longer_than_its_wait() -> None:
    pacer = Pacer(probe_wait=2.0)
    pacer.reserve(SCOPES, ONE, 0.0, None)
    assert pacer.reserve(SCOPES, ONE, 2.0, None).booked


def test_a_new_scope_of_an_origin_that_sends_headers_probes_before_the_rest_go() -> None:
    pacer = Pacer()
    pacer.answered(SCOPE.origin, SCOPE)
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 50, 60.0)}, 0.0)
    others = (OTHER, OTHER.origin_scope)
    assert pacer.reserve(others, ONE, 0.0, None).wait == 0.0  # its first attempt goes
    held = pacer.reserve(others, ONE, 0.0, None)
    assert (held.booked, held.paced_by) == (False, "probe")  # the rest wait for its answer
    assert pacer.reserve(SCOPES, ONE, 0.0, None).paced_by != "probe"  # the known scope does not
    pacer.answered(OTHER.origin, OTHER)  # answered without headers: its scope stays unknown
    for _ in range(3):  # and is not probed again
        assert pacer.reserve(others, ONE, 0.1, None).wait == 0.0


def test_a_new_scope_of_an_origin_that_sends_no_headers_is_not_held() -> None:
    pacer = Pacer()
    pacer.answered(SCOPE.origin, SCOPE)
    others = (OTHER, OTHER.origin_scope)
    for _ in range(3):
        assert pacer.reserve(others, ONE, 0.0, None).wait == 0.0
    assert pacer.idle


def test_the_record_of_answered_scopes_is_bounded() -> None:
    pacer = Pacer(max_scopes=2)
    pacer.answered(SCOPE.origin, SCOPE)
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 50, 60.0)}, 0.0)
    models = [Scope(SCOPE.origin, "k", f"m{n}") for n in range(3)]
    for model in models:
        pacer.answered(model.origin, model)
    for model in models[1:]:  # remembered: not probed
        for _ in range(2):
            assert pacer.reserve((model, model.origin_scope), ONE, 0.0, None).wait == 0.0
    forgotten = (models[0], models[0].origin_scope)
    assert pacer.reserve(forgotten, ONE, 0.0, None).booked  # a new probe goes
    assert not pacer.reserve(forgotten, ONE, 0.0, None).booked  # and holds the next


def test_header_pacing_can_be_switched_off() -> None:
    pacer = Pacer(headers=False)
    pacer.reserve(SCOPES, ONE, 0.0, None)
    assert pacer.reserve(SCOPES, ONE, 0.0, None).wait == 0.0
    pacer.report(SCOPE, 1, {"requests": Headroom(10, 0, 5.0)}, 0.0)
    assert pacer.reserve(SCOPES, ONE, 0.0, None).wait == 0.0


# -- header truth -----------------------------------------------------------------------------


def answered(pacer: Pacer) -> Pacer:
    pacer.answered(SCOPE.origin)
    return pacer


def test_requests_are_spread_at_the_refill_rate_not_burst() -> None:
    pacer = answered(Pacer())
    # 60 a minute, 10 left, 50 more back within 50 s: refill 1 per second.
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 10, 50.0)}, 0.0)
    times = [pacer.reserve(SCOPES, ONE, 0.0, None).at for _ in range(20)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > 0.0 for gap in gaps)  # spread
    assert times[-1] > 10.0  # more than the 10 left could not go at once
    assert all(gap <= 1.0 + 1e-9 for gap in gaps)  # never slower than the refill


def test_an_exhausted_scope_waits_for_its_reset_and_another_model_does_not() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 0, 30.0)}, 0.0)
    held = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert held.paced_by == "headers"
    assert held.wait > 0.0
    assert pacer.reserve((OTHER, OTHER.origin_scope), ONE, 0.0, None).wait == 0.0


def test_what_cannot_go_before_the_deadline_is_not_booked() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 0, 30.0)}, 0.0)
    refused = pacer.reserve(SCOPES, ONE, 0.0, 1.0)
    assert refused.wait == math.inf
    booked = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert booked.wait == pytest.approx(refused.at)


def test_tokens_pace_large_requests_and_costless_dimensions_are_skipped() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"tokens": Headroom(1000, 100, 0.9)}, 0.0)  # 1000 per second
    assert pacer.reserve(SCOPES, ONE, 0.0, None).wait == 0.0  # no tokens: not held
    big = pacer.reserve(SCOPES, tokens(500), 0.0, None)
    assert big.wait == pytest.approx(0.4, abs=0.01)  # 400 more must refill first
    assert pacer.headroom()[0].dimension == "tokens"


def test_a_stale_report_is_ignored_and_a_newer_one_frees_bookings() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(10, 5, 5.0)}, 0.0)
    bookings = [pacer.reserve(SCOPES, ONE, 0.0, None) for _ in range(5)]
    before = pacer.reserve(SCOPES, ONE, 0.0, None).at
    pacer.report(SCOPE, bookings[-1].seq, {"requests": Headroom(10, 10, 0.0)}, 0.0)
    pacer.report(SCOPE, bookings[0].seq, {"requests": Headroom(10, 0, 9.0)}, 0.0)  # stale
    after = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert after.at <= before + 1.0


def test_a_fixed_window_spreads_what_is_left_until_its_reset() -> None:
    pacer = answered(Pacer())
    room = Headroom(100, 20, 10.0, window=60.0, continuous=False)
    pacer.report(SCOPE, 0, {"requests": room}, 0.0)
    times = [pacer.reserve(SCOPES, ONE, 0.0, None).at for _ in range(25)]
    assert sum(1 for t in times if t < 10.0) <= 20
    assert max(times) >= 10.0


def test_a_spent_fixed_window_waits_for_its_reset() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(5, 0, 4.0, continuous=False)}, 0.0)
    assert pacer.reserve(SCOPES, ONE, 0.0, None).at >= 4.0


def test_a_fixed_window_without_a_reset_resets_after_its_window() -> None:
    pacer = answered(Pacer())
    room = Headroom(4, 2, None, window=30.0, continuous=False)
    pacer.report(SCOPE, 0, {"requests": room}, 0.0)
    times = [pacer.reserve(SCOPES, ONE, 0.0, None).at for _ in range(8)]
    assert times[0] == 0.0
    assert min(times[1:]) >= 30.0  # the rest of what is left is spread up to the reset
    # After the reset the whole limit is back, and once that is spent the refill paces.
    assert sum(1 for t in times if 30.0 <= t < 60.0) <= 4
    assert times[-1] - times[-2] >= 30.0 / 4


def test_azure_remaining_without_limit_spreads_the_minute() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(None, 60, None)}, 0.0)
    times = [pacer.reserve(SCOPES, ONE, 0.0, None).at for _ in range(10)]
    assert times[-1] >= 4.0  # not ten in the first instant: Azure counts over 1 s or 10 s


def test_a_zero_limit_holds_until_the_reset() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(0, 0, 3.0)}, 0.0)
    assert pacer.reserve(SCOPES, ONE, 0.0, None).at >= 3.0


def test_coarse_resets_fall_back_to_a_per_minute_refill() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(60, 59, 1.0, coarse=True)}, 0.0)
    assert pacer.headroom()[0].pace == pytest.approx(1.0)


def test_a_dimension_reported_without_what_is_left_is_not_learnt() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"tokens": Headroom(1000, None, 1.0)}, 0.0)
    assert pacer.headroom() == []
    pacer.report(
        SCOPE, 0, {"tokens": Headroom(1000, None, 1.0), "requests": Headroom(60, 0, 30.0)}, 0.0
    )
    assert [h.dimension for h in pacer.headroom()] == ["requests"]
    assert pacer.reserve(SCOPES, tokens(500), 0.0, None).paced_by == "headers"


def test_a_report_without_what_is_left_keeps_the_adaptive_rate() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=50.0)
    pacer.report(SCOPE, 0, {"requests": Headroom(60, None, 1.0)}, 0.0)
    pacer.reserve(SCOPES, ONE, 0.0, None)
    assert pacer.reserve(SCOPES, ONE, 0.0, None).paced_by == "adaptive"


def test_the_record_of_answered_origins_is_bounded() -> None:
    pacer = Pacer(max_scopes=2)
    for origin in ("https://a.test", "https://b.test", "https://c.test"):
        pacer.answered(origin)
    for origin in ("https://b.test", "https://c.test"):  # remembered: nothing held
        scopes = (Scope(origin, "k", "m"), Scope(origin, "k", "m").origin_scope)
        assert pacer.reserve(scopes, ONE, 0.0, None).wait == 0.0
        assert pacer.reserve(scopes, ONE, 0.0, None).wait == 0.0
    forgotten = Scope("https://a.test", "k", "m")
    scopes = (forgotten, forgotten.origin_scope)
    assert pacer.reserve(scopes, ONE, 0.0, None).booked  # a new probe
    assert pacer.reserve(scopes, ONE, 0.0, None).paced_by == "probe"


def test_scopes_are_bounded_and_idle_ones_dropped() -> None:
    pacer = answered(Pacer(max_scopes=3, idle_ttl=10.0))
    for n in range(5):
        pacer.report(Scope("o", "k", str(n)), 0, {"requests": Headroom(1, 1, 1.0)}, 0.0)
    assert len(pacer) == 3
    pacer.report(SCOPE, 0, {"requests": Headroom(1, 1, 1.0)}, 20.0)
    assert len(pacer) == 1


# -- the adaptive rate ----------------------------------------------------------------------


def release(
    pacer: Pacer, asks: list[float], cut_at: float = math.inf, cut_sent: float = 0.0
) -> list[float]:
    """Play attempts that ask to go at ``asks`` (seconds) as a driver would, each looking again
    when told, in time order; the times they were booked to go, in order of going. At
    ``cut_at``, a 429 comes for an attempt sent at ``cut_sent``."""
    waiting = [(at, n, 0) for n, at in enumerate(asks)]
    heapq.heapify(waiting)
    went = []
    while waiting:
        now, n, queue = heapq.heappop(waiting)
        if now >= cut_at:
            pacer.congestion(SCOPE, cut_at, cut_sent, fallback_rate=100.0)
            cut_at = math.inf
        booking = pacer.reserve(SCOPES, ONE, now, None, queue=queue)
        if booking.booked:
            went.append(booking.at)
        else:
            assert 0.0 < booking.wait <= 0.5 + 1e-9  # never told to look again later than 0.5 s
            heapq.heappush(waiting, (booking.at, n, booking.queue))
    return went


def test_congestion_without_headers_cuts_the_rate_and_releases_evenly() -> None:
    pacer = answered(Pacer())
    assert pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=20.0)  # the rate paces it now
    went = release(pacer, [0.0] * 6)
    gaps = [b - a for a, b in itertools.pairwise(went)]
    assert went[0] == pytest.approx(1.0 / 14.0)  # the refusal counts as the last one sent
    assert all(1.0 / 14.0 * 0.99 <= gap <= 1.0 / 14.0 * 1.01 for gap in gaps), gaps
    booking = pacer.reserve(SCOPES, ONE, 100.0, None)
    assert (booking.wait, booking.paced_by) == (0.0, "")  # grown back far beyond what is sent


def test_a_cut_slows_the_attempts_already_waiting_at_once() -> None:
    pacer = answered(Pacer(beta=0.5))
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=20.0)  # 10 per second
    went = release(pacer, [0.0] * 12, cut_at=0.35, cut_sent=0.3)  # then 5 per second
    before = [at for at in went if at <= 0.35]
    assert before == pytest.approx([0.1, 0.2, 0.3], abs=0.01)
    after = [at for at in went if at > 0.35]
    assert len(after) == 9
    gaps = [b - a for a, b in itertools.pairwise([0.3, *after])]
    # At once about half the rate it was sending, the attempts already waiting included; then
    # growing back, never above what it was sending while it recovers.
    assert gaps[0] >= 1.8 * (before[2] - before[1])
    sending = pacer._scopes[SCOPE].w_max  # what it was sending when refused
    assert all(gap >= 0.99 / sending for gap in gaps), gaps
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(gaps)), gaps


def test_waiting_attempts_keep_their_order_and_a_place_given_up_holds_nobody() -> None:
    pacer = answered(Pacer(beta=0.5))
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=20.0)
    places = [pacer.reserve(SCOPES, ONE, 0.0, None) for _ in range(4)]
    assert [p.queue for p in places] == [1, 2, 3, 4]
    assert [p.at for p in places] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # The first place is given up (its request was cancelled): the second goes in its turn.
    pacer.leave(SCOPE, 1)
    pacer.leave(OTHER, 1)  # a scope not known: nothing to give up
    assert pacer.reserve(SCOPES, ONE, 0.1, None, queue=2).booked
    # The third looks again too early (its turn is a spacing after the second's) ...
    third = pacer.reserve(SCOPES, ONE, 0.15, None, queue=3)
    assert not third.booked
    assert 0.15 < third.at <= 0.2  # a spacing after 0.1, at the rate (growing back) of now
    # ... and a place whose attempt stopped looking unseen is given up after a while.
    late = pacer.reserve(SCOPES, ONE, 3.0, None, queue=4)
    assert late.booked


def test_an_attempt_the_adaptive_rate_holds_past_its_deadline_fails_at_once() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=20.0)
    booking = pacer.reserve(SCOPES, ONE, 0.0, 0.01)
    assert (booking.wait, booking.booked, booking.paced_by) == (math.inf, False, "adaptive")


def test_a_scope_never_throttled_is_never_slowed_by_another_scopes_rate() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=20.0)
    other = (OTHER, OTHER.origin_scope)
    times = [pacer.reserve(other, ONE, 0.0, None) for _ in range(50)]
    assert all(t.wait == 0.0 and t.booked for t in times)


def test_a_trickle_is_never_slowed_and_old_news_is_ignored() -> None:
    pacer = answered(Pacer())
    assert not pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=0.5)  # backoff alone paces it
    assert pacer.reserve(SCOPES, ONE, 0.0, None).wait == 0.0
    assert pacer.congestion(SCOPE, 1.0, 1.0, fallback_rate=50.0)
    first = pacer._scopes[SCOPE].rate
    assert pacer.congestion(SCOPE, 1.1, 0.5, fallback_rate=50.0)  # sent before the cut
    assert pacer._scopes[SCOPE].rate == first


def test_bookings_older_than_two_seconds_say_nothing_of_the_rate_sent() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=0.5)  # a trickle: known, not slowed
    for n in range(6):  # sent at 100 a second, ten seconds ago
        assert pacer.reserve(SCOPES, ONE, n * 0.01, None).wait == 0.0
    pacer.congestion(SCOPE, 10.0, 10.0, fallback_rate=4.0)
    assert pacer._scopes[SCOPE].rate == pytest.approx(0.7 * 4.0)  # cut from the fallback


def test_header_truth_replaces_the_adaptive_rate() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=50.0)
    pacer.report(SCOPE, 0, {"requests": Headroom(1000, 999, 1.0)}, 0.0)
    assert not pacer.congestion(SCOPE, 0.5, 0.5, fallback_rate=50.0)  # headers rule: ignored
    assert pacer._scopes[SCOPE].rate is None


def test_repeated_congestion_measures_the_rate_sent() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE, 0.0, 0.0, fallback_rate=10.0)
    for n in range(8):
        pacer.reserve(SCOPES, ONE, n * 0.2, None)
    pacer.congestion(SCOPE, 1.6, 1.6, fallback_rate=100.0)
    rate = pacer._scopes[SCOPE].rate
    assert rate is not None
    assert rate < 10.0


# -- the declared limit ---------------------------------------------------------------------


def test_the_declared_limit_rolls() -> None:
    pacer = answered(Pacer(RateLimit(requests=2, per=10.0)))
    times = [pacer.reserve(SCOPES, ONE, 0.0, None).at for _ in range(5)]
    window = 10.0 + declared_margin(10.0)  # bookings a margin more than the window apart
    assert window == pytest.approx(10.2)
    assert times == pytest.approx([0.0, 0.0, window, window, 2 * window])
    assert pacer.reserve(SCOPES, ONE, 0.0, 15.0).wait == math.inf  # would go at 20.4
    assert pacer.rate == RateLimit(requests=2, per=10.0)


def test_declared_tokens_hold_too() -> None:
    pacer = answered(Pacer(RateLimit(requests=100, per=10.0, tokens=1000)))
    times = [pacer.reserve(SCOPES, tokens(600), 0.0, None).at for _ in range(3)]
    window = 10.0 + declared_margin(10.0)
    assert times == pytest.approx([0.0, window, 2 * window])
    huge = pacer.reserve(SCOPES, tokens(5000), 0.0, None)  # more than a window: alone in one
    assert huge.at == pytest.approx(3 * window)


arrivals = st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=60)


@settings(max_examples=200)
@given(arrivals, st.integers(min_value=1, max_value=5), st.floats(min_value=0.5, max_value=20.0))
def test_no_window_ever_holds_more_than_the_declared_requests(
    times: list[float], requests: int, per: float
) -> None:
    pacer = answered(Pacer(RateLimit(requests=requests, per=per)))
    sent = []
    for now in sorted(times):
        booking = pacer.reserve(SCOPES, ONE, now, None)
        assert booking.at >= now
        sent.append(booking.at)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + per) <= requests


@settings(max_examples=100)
@given(arrivals, st.integers(min_value=100, max_value=5000))
def test_no_window_ever_holds_more_than_the_declared_tokens(
    times: list[float], budget: int
) -> None:
    pacer = answered(Pacer(RateLimit(requests=1000, per=10.0, tokens=budget)))
    sent = []
    for index, now in enumerate(sorted(times)):
        cost = float(50 + (index * 97) % 400)
        booking = pacer.reserve(SCOPES, tokens(cost), now, None)
        sent.append((booking.at, min(cost, budget)))
    for start, _ in sent:
        assert sum(c for t, c in sent if start <= t < start + 10.0) <= budget + 1e-6


def test_an_origin_under_an_adaptive_rate_spaces_every_scope_of_it() -> None:
    pacer = answered(Pacer())
    pacer.congestion(SCOPE.origin_scope, 0.0, 0.0, fallback_rate=20.0)
    first = pacer.reserve(SCOPES, ONE, 0.0, None)
    assert (first.booked, first.queue, first.paced_by) == (False, 0, "adaptive")
    assert first.wait == pytest.approx(1.0 / 14.0)


# -- giving a booking back ------------------------------------------------------------------


def test_a_cancelled_declared_booking_frees_its_place() -> None:
    pacer = answered(Pacer(RateLimit(requests=1, per=10.0)))
    first = pacer.reserve(SCOPES, ONE, 0.0, None)
    pacer.cancel(SCOPES, ONE, first)
    again = pacer.reserve(SCOPES, ONE, 0.5, None)
    assert again.at == 0.5  # its place is free: booked for when it goes
    # Given back twice: nothing more to free, nothing breaks.
    pacer.cancel(SCOPES, ONE, first)
    assert pacer.reserve(SCOPES, ONE, 0.5, None).at == pytest.approx(10.7)


def test_a_cancelled_booking_no_longer_counts_against_header_truth() -> None:
    pacer = answered(Pacer())
    pacer.report(SCOPE, 0, {"requests": Headroom(10, 2, 60.0)}, 0.0)
    dim = pacer._scopes[SCOPE].dims["requests"]
    bookings = [pacer.reserve(SCOPES, ONE, 0.0, None) for _ in range(2)]
    assert dim.pending_sum == 2.0
    pacer.cancel(SCOPES, ONE, bookings[1])
    assert dim.pending_sum == 1.0
    assert [at for _, _, at in dim.pending] == [bookings[0].at]
    pacer.cancel(SCOPES, CostEstimate(2.0, 0.0, 0.0), bookings[0])  # another cost: not it
    assert dim.pending_sum == 1.0
