"""Rate-limit headers of every dialect into one headroom per dimension."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport._ratelimit_headers import (
    MAX_VALUE,
    UNKNOWN_RESET,
    Headroom,
    parse_duration,
    parse_headroom,
    parse_rfc3339,
    rate_limit_pairs,
)

NOW = 1000.0  # monotonic
WALL = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def parse(*pairs: tuple[str, str]) -> dict[str, Headroom]:
    return parse_headroom(pairs, now=NOW, wall_now=WALL)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("12ms", 0.012),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("2m59.56s", 179.56),
        ("250us", 0.00025),
        ("7", 7.0),
        (".5s", 0.5),
    ],
)
def test_go_durations_and_plain_seconds_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "1x", "1s2", "-1s", "1 s", "m1s", "inf", "1e99", "x" * 70]
)
def test_anything_else_is_no_duration(text: str) -> None:
    assert parse_duration(text) is None


def test_rfc3339_times_need_an_offset() -> None:
    assert parse_rfc3339("2023-11-14T22:13:50Z") == WALL + 30.0
    assert parse_rfc3339("2023-11-14T23:13:50+01:00") == WALL + 30.0
    assert parse_rfc3339("2023-11-14T22:13:50") is None
    assert parse_rfc3339("2023-11-14T22:13:50.000") is None
    assert parse_rfc3339("not a date at all, no") is None
    assert parse_rfc3339("2023-13-14T22:13:50Z") is None


def test_openai_headers_become_requests_and_tokens() -> None:
    room = parse(
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-limit-tokens", "200000"),
        ("x-ratelimit-remaining-tokens", "190000"),
        ("x-ratelimit-reset-tokens", "3s"),
    )
    assert room == {
        "requests": Headroom(60.0, 59.0, NOW + 1.0),
        "tokens": Headroom(200000.0, 190000.0, NOW + 3.0),
    }


def test_anthropic_resets_are_wall_clock_times_turned_monotonic() -> None:
    room = parse(
        ("anthropic-ratelimit-input-tokens-limit", "40000"),
        ("anthropic-ratelimit-input-tokens-remaining", "39000"),
        ("anthropic-ratelimit-input-tokens-reset", "2023-11-14T22:13:22Z"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21.5Z"),
    )
    assert room["input_tokens"] == Headroom(40000.0, 39000.0, NOW + 2.0, coarse=True)
    assert room["requests"] == Headroom(None, 49.0, NOW + 1.5)


def test_a_reset_in_the_past_is_now() -> None:
    room = parse(
        ("anthropic-ratelimit-tokens-remaining", "5"),
        ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:00:00Z"),
    )
    assert room["tokens"].reset_at == NOW


def test_azure_minus_one_is_not_reported_and_a_bare_zero_is_probed_soon() -> None:
    room = parse(
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-limit-tokens", "-1"),
        ("x-ratelimit-remaining-tokens", "-1"),
        ("x-ratelimit-reset-tokens", "0"),
    )
    assert room == {"requests": Headroom(None, 0.0, NOW + UNKNOWN_RESET)}
    assert parse(("x-ratelimit-remaining-tokens", "900"))["tokens"] == Headroom(None, 900.0, None)


def test_ietf_structured_fields_name_their_policies_and_units() -> None:
    room = parse(
        ("ratelimit-policy", '"requests";q=100;w=60, "tokens";q=5000;w=60;qu="tokens"'),
        ("ratelimit", '"requests";r=50;t=30, "tokens";r=4000;t=12'),
    )
    assert room == {
        "requests": Headroom(100.0, 50.0, NOW + 30.0, window=60.0, continuous=False),
        "tokens": Headroom(5000.0, 4000.0, NOW + 12.0, window=60.0, continuous=False),
    }


def test_of_two_ietf_limits_on_one_dimension_the_tighter_counts() -> None:
    room = parse(
        ("ratelimit-policy", '"burst";q=10;w=1, "day";q=1000;w=86400'),
        ("ratelimit", '"burst";r=9;t=1, "day";r=2;t=3600'),
    )
    assert room["requests"].remaining == 2.0


def test_the_first_ietf_limit_stands_when_a_later_one_is_looser() -> None:
    room = parse(
        ("ratelimit-policy", '"day";q=1000;w=86400, "burst";q=10;w=1'),
        ("ratelimit", '"day";r=2;t=3600, "burst";r=9;t=1'),
    )
    assert room["requests"] == Headroom(1000.0, 2.0, NOW + 3600.0, window=86400.0, continuous=False)


def test_an_ietf_limit_without_what_is_left_is_skipped_and_the_others_count() -> None:
    room = parse(("ratelimit", '"a";t=5, "b";r=-1;t=5, "c";r=7;t=9'))
    assert room == {"requests": Headroom(None, 7.0, NOW + 9.0, continuous=False)}


def test_unknown_keys_of_the_ietf_dictionary_form_are_ignored() -> None:
    room = parse(("ratelimit", "limit=10, policy=60, remaining=3, reset=4"))
    assert room == {"requests": Headroom(10.0, 3.0, NOW + 4.0, continuous=False)}


def test_the_older_ietf_trio_and_the_dictionary_form() -> None:
    trio = parse(
        ("ratelimit-limit", "100, 100;w=60"),
        ("ratelimit-remaining", "40"),
        ("ratelimit-reset", "20"),
    )
    assert trio["requests"] == Headroom(100.0, 40.0, NOW + 20.0, window=60.0, continuous=False)
    dictionary = parse(("ratelimit", "limit=10, remaining=3, reset=4"))
    assert dictionary["requests"] == Headroom(10.0, 3.0, NOW + 4.0, continuous=False)


def test_garbage_is_skipped() -> None:
    assert (
        parse(
            ("x-ratelimit-remaining-requests", "many"),
            ("x-ratelimit-reset-requests", "soon"),
            ("x-ratelimit-remaining-widgets", "3"),
            ("anthropic-ratelimit-requests-remaining", "nan"),
            ("anthropic-ratelimit-bogus-limit", "3"),
            ("ratelimit", '"a";r=x;t=1, (((, "b";r=-1'),
            ("ratelimit-policy", '"a";q=1;qu="widgets", broken;;'),
            ("ratelimit-remaining", "-4"),
            ("x-ratelimit-limit-requests", "1" * 40),
            ("x-other", "1"),
            ("ratelimit-limit", "-3"),
            ("ratelimit", "limit=x, remaining=-1"),
        )
        == {}
    )


def test_an_overlong_value_is_not_read() -> None:
    assert parse(("x-ratelimit-remaining-requests", "1" + " " * MAX_VALUE)) == {}


def test_the_raw_scan_finds_only_rate_limit_headers() -> None:
    raw = [
        (b"Content-Type", b"content-type", b"application/json"),
        (b"X-RateLimit-Remaining-Requests", b"x-ratelimit-remaining-requests", b"5"),
        (b"Huge", b"x-ratelimit-junk", b"x" * (MAX_VALUE + 1)),
    ]
    assert rate_limit_pairs(raw) == [("x-ratelimit-remaining-requests", "5")]
    assert rate_limit_pairs(raw[:1]) is None


header_names = st.sampled_from(
    [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-output-tokens-remaining",
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "x-ratelimit-reset-tokens",
    ]
)


@given(st.lists(st.tuples(header_names, st.text(max_size=80)), max_size=12))
def test_no_text_ever_makes_parsing_raise(pairs: list[tuple[str, str]]) -> None:
    room = parse_headroom(pairs, now=NOW, wall_now=WALL)
    for value in room.values():
        assert value.remaining is None or value.remaining >= 0
        assert value.reset_at is None or (math.isfinite(value.reset_at) and value.reset_at >= NOW)


def go(seconds_ms: int) -> str:
    hours, rest = divmod(seconds_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return text + f"{rest / 1000:g}s"


@given(st.integers(min_value=0, max_value=10**9))
def test_generated_go_durations_round_trip(milliseconds: int) -> None:
    assert parse_duration(go(milliseconds)) == pytest.approx(milliseconds / 1000.0)


@given(
    st.integers(min_value=1, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=3600),
)
def test_generated_openai_and_ietf_values_round_trip(limit: int, left: int, reset: int) -> None:
    remaining = min(left, limit)
    openai = parse(
        ("x-ratelimit-limit-tokens", str(limit)),
        ("x-ratelimit-remaining-tokens", str(remaining)),
        ("x-ratelimit-reset-tokens", go(reset * 1000)),
    )
    assert openai["tokens"] == Headroom(float(limit), float(remaining), NOW + reset)
    ietf = parse(
        ("ratelimit-policy", f'"t";q={limit};w=60;qu="tokens"'),
        ("ratelimit", f'"t";r={remaining};t={reset}'),
    )
    assert ietf["tokens"] == Headroom(
        float(limit), float(remaining), NOW + reset, window=60.0, continuous=False
    )
