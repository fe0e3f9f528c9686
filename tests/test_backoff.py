"""Backoff: validation and the backoff arithmetic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport import Backoff


@pytest.mark.parametrize(
    ("field", "value"),
    [("base", 0), ("base", -1.0), ("base", math.nan), ("cap", 0), ("cap", math.inf), ("cap", "1")],
)
def test_invalid_backoff_value_raises_value_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"Backoff.{field}"):
        Backoff(**{field: value})  # type: ignore[arg-type]


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=3.0)
    assert [backoff.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_delay_is_full_jitter_over_the_ceiling() -> None:
    backoff = Backoff(base=2.0, cap=60.0)
    assert backoff.delay(3, lambda: 0.0) == 0.0
    assert backoff.delay(3, lambda: 0.5) == 4.0
    assert backoff.delay(3, lambda: 0.999) == pytest.approx(7.992)


@given(
    base=st.floats(min_value=1e-6, max_value=1e6),
    cap=st.floats(min_value=1e-6, max_value=1e6),
    retry=st.integers(min_value=-5, max_value=100_000),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_delay_is_never_negative_nor_above_the_cap(
    base: float, cap: float, retry: int, draw: float
) -> None:
    delay = Backoff(base=base, cap=cap).delay(retry, lambda: draw)
    assert 0.0 <= delay <= cap
    assert math.isfinite(delay)
