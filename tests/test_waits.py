"""Server-named waits: Retry-After and its kin, and waits written in error bodies."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport._waits import body_wait, server_wait

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0", 0.0), ("1.5", 1.5), ("  7 ", 7.0), ("120", 120.0)],
)
def test_retry_after_delta_seconds_is_read(value: str, expected: float) -> None:
    assert server_wait({"retry-after": value}, now=NOW) == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    assert server_wait({"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, now=NOW) == 30.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert server_wait({"retry-after": "Tue, 14 Nov 2023 22:00:00 GMT"}, now=NOW) == 0.0


def test_retry_after_rfc850_date_is_read() -> None:
    assert server_wait({"retry-after": "Tuesday, 14-Nov-23 22:14:20 GMT"}, now=NOW) == 60.0


def test_retry_after_ms_is_preferred() -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    assert server_wait(headers, now=NOW) == 0.25


def test_x_ms_retry_after_ms_is_read() -> None:
    assert server_wait({"x-ms-retry-after-ms": "1500"}, now=NOW) == 1.5


def test_invalid_retry_after_ms_falls_back_to_retry_after() -> None:
    assert server_wait({"retry-after-ms": "soon", "retry-after": "3"}, now=NOW) == 3.0


@pytest.mark.parametrize(
    "value",
    [
        *("-5", "nan", "NaN", "inf", "Infinity", "+inf", "-1e999", "+5", "5s", "", "\u0663"),
        *("soon", "0x10", "1,5", "1e", "e5", "1.e5", "1e+", "1e3s"),
    ],
)
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert server_wait({"retry-after": value}, now=NOW) is None


def test_overlong_retry_after_is_ignored() -> None:
    assert server_wait({"retry-after": "1" * 64 + "x"}, now=NOW) is None


@pytest.mark.parametrize("digits", [21, 64, 65, 400])
@pytest.mark.parametrize("name", ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"])
def test_a_number_of_more_than_20_digits_is_a_very_long_wait(digits: int, name: str) -> None:
    wait = server_wait({name: "9" * digits}, now=NOW)
    assert wait is not None
    assert wait >= 1e17  # seconds: far beyond any cap, even read as milliseconds


def test_a_long_number_with_a_fraction_is_a_very_long_wait() -> None:
    assert server_wait({"retry-after": "1" * 25 + ".5"}, now=NOW) == 1e20


def test_a_long_number_with_a_long_fraction_is_a_very_long_wait() -> None:
    assert server_wait({"retry-after": "1" * 21 + "." + "5" * 21}, now=NOW) == 1e20


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1e3", 1000.0), ("1E3", 1000.0), ("1e+2", 100.0), ("5e-1", 0.5), ("2.5e1", 25.0)],
)
def test_a_number_with_an_exponent_is_read_as_the_sdks_read_it(value: str, expected: float) -> None:
    assert server_wait({"retry-after": value}, now=NOW) == expected


@pytest.mark.parametrize(
    "value", ["1e999", "1E400", "1.5e309", "9e99999", "1e" + "9" * 80, "1" * 21 + "e5"]
)
@pytest.mark.parametrize("name", ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"])
def test_a_number_too_large_for_a_float_is_a_very_long_wait_not_no_wait(
    value: str, name: str
) -> None:
    # The >20-digit rule, for the forms a float overflows on: a wait longer than any cap, so
    # the policy gives up at once; read as no header, the request would be retried at once.
    wait = server_wait({name: value}, now=NOW)
    assert wait == (1e20 if name == "retry-after" else 1e17)


def test_a_tiny_exponent_is_no_wait() -> None:
    assert server_wait({"retry-after": "1e-999"}, now=NOW) == 0.0


def test_very_large_retry_after_is_returned_uncapped() -> None:
    assert server_wait({"retry-after": "86400000"}, now=NOW) == 86400000.0


def test_no_wait_header_gives_none() -> None:
    assert server_wait({"content-type": "application/json"}, now=NOW) is None


@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-ms-retry-after-ms", "other"]),
        st.text(max_size=80),
    ),
    st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=4e9),
)
def test_server_wait_is_none_or_finite_non_negative(headers: dict[str, str], now: float) -> None:
    wait = server_wait(headers, now=now)
    assert wait is None or (math.isfinite(wait) and wait >= 0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"38s"}]}',
            38,
        ),
        ('{\\"retryDelay\\": \\"12.5s\\"}', 12.5),
        ("Please try again in 7.5s.", 7.5),
        ("Please try again in 20ms.", 0.02),
        ("Please try again in 50.597142857s.", 50.597142857),
        ("Rate limit is exceeded. Try again in 40 seconds.", 40),
        ("Please retry after 45 seconds.", 45),
        ("Please retry in 1m30s", 90),
        ("try again in 9m38.016s", 578.016),
        ("try again in 2 minutes", 120),
        ("try again in 1h", 3600),
        ('{"error": {"retry_after": 12}}', 12),
        ('{"retry_after_ms": 1500}', 1.5),
        ('{"retry_after": 1.2e1}', 12),
        ('{"retry_after": 1e5}', 100000),  # not 1 s: the exponent belongs to the number
        ('{"retry_after_ms": 1.5E3}', 1.5),
        ('{"retry_after": 1e999}', 1e20),  # too large for a float: longer than any cap
    ],
)
def test_body_wait_reads_named_waits(text: str, expected: float) -> None:
    wait = body_wait(text)
    assert wait is not None
    assert wait == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "Overloaded",
        "try again in a moment",
        "Please retry shortly.",
        "retry after the quota resets",
        "",
    ],
)
def test_body_without_a_wait_gives_none(text: str) -> None:
    assert body_wait(text) is None


def test_body_wait_skips_a_phrase_without_a_number() -> None:
    assert body_wait("try again in a moment, or retry after 5 seconds") == 5.0


def test_body_wait_handles_pathological_repetition() -> None:
    text = "try again in " * 20000 + "1" * 20000
    assert body_wait(text) is None


@given(st.text(max_size=400))
def test_body_wait_is_none_or_finite_non_negative(text: str) -> None:
    wait = body_wait(text)
    assert wait is None or (math.isfinite(wait) and wait >= 0.0)


def test_a_date_in_minus_zero_zone_is_read_as_utc() -> None:
    assert server_wait({"retry-after": "Tue, 14 Nov 2023 22:13:50 -0000"}, now=NOW) == 30.0


def test_headers_that_raise_on_lookup_give_no_wait() -> None:
    class Hostile(dict[str, str]):
        def get(self, key: object, default: object = None) -> str:
            raise RuntimeError("no")

    assert server_wait(Hostile(), now=NOW) is None


@pytest.mark.parametrize(("text", "wait"), [("try again in 5us", 5e-6), ("retry in 7ns", 7e-9)])
def test_micro_and_nanosecond_waits_in_a_body_are_read(text: str, wait: float) -> None:
    assert body_wait(text) == pytest.approx(wait)
