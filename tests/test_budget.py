"""RetryBudget (configuration) and _BudgetState (the sliding-window account)."""

from __future__ import annotations

import dataclasses
import math
import threading

import pytest

from retry_transport._budget import RetryBudget, _BudgetState


def test_defaults() -> None:
    assert RetryBudget() == RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0)


def test_budget_is_frozen_and_slotted() -> None:
    budget = RetryBudget()
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.ratio = 0.5  # type: ignore[misc]
    assert not hasattr(budget, "__dict__")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ratio", -0.1),
        ("ratio", 1000.5),
        ("ratio", math.nan),
        ("ratio", math.inf),
        ("min_per_second", -1.0),
        ("min_per_second", math.nan),
        ("min_per_second", math.inf),
        ("ttl", 0.0),
        ("ttl", -1.0),
        ("ttl", math.nan),
        ("ttl", math.inf),
    ],
)
def test_invalid_value_raises_value_error_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RetryBudget(**{field: value})


@pytest.mark.parametrize(
    "budget",
    [RetryBudget(ratio=0.0), RetryBudget(ratio=1000.0), RetryBudget(min_per_second=0.0)],
)
def test_boundary_values_are_valid(budget: RetryBudget) -> None:
    assert isinstance(budget, RetryBudget)


def test_reserve_allows_min_per_second_times_ttl_retries_without_traffic() -> None:
    state = _BudgetState(RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0), now=0.0)
    assert [state.withdraw(1.0) for _ in range(11)] == [True] * 10 + [False]


def test_each_first_attempt_deposits_ratio_of_a_retry() -> None:
    state = _BudgetState(RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10.0), now=0.0)
    for _ in range(9):
        state.deposit(0.5)
    assert state.balance(0.5) == pytest.approx(1.8)
    assert state.withdraw(0.5)
    assert not state.withdraw(0.5)
    state.deposit(0.5)
    assert state.withdraw(0.5)


def test_rounding_does_not_cost_a_retry() -> None:
    state = _BudgetState(RetryBudget(ratio=0.1, min_per_second=0.0, ttl=10.0), now=0.0)
    for _ in range(10):
        state.deposit(1.0)
    assert state.withdraw(1.0)


def test_balance_is_reserve_plus_ratio_of_firsts_minus_retries() -> None:
    state = _BudgetState(RetryBudget(ratio=0.5, min_per_second=0.3, ttl=10.0), now=0.0)
    for second in range(6):
        state.deposit(float(second))
    assert state.withdraw(6.0)
    assert state.balance(6.0) == pytest.approx(3.0 + 0.5 * 6 - 1)


def test_a_denied_retry_spends_nothing() -> None:
    state = _BudgetState(RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0), now=0.0)
    assert state.withdraw(0.0)
    assert not state.withdraw(0.0)
    assert state.balance(0.0) == pytest.approx(0.0)


def test_first_attempts_count_until_ttl_and_then_expire() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), now=100.0)
    for _ in range(3):
        state.deposit(100.5)
    assert state.balance(109.9) == pytest.approx(3.0)
    assert state.balance(110.0) == pytest.approx(0.0)


def test_a_deposit_counts_for_at_least_nine_tenths_of_ttl() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), now=0.0)
    state.deposit(0.999)
    assert state.balance(0.999 + 9.0) == pytest.approx(1.0)


def test_spent_retries_expire_after_ttl() -> None:
    state = _BudgetState(RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10.0), now=0.0)
    assert [state.withdraw(3.0) for _ in range(3)] == [True, True, False]
    assert not state.withdraw(12.9)
    assert state.withdraw(13.0)


def test_only_expired_buckets_are_cleared() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), now=0.0)
    state.deposit(1.0)
    state.deposit(5.0)
    state.deposit(5.0)
    assert state.balance(11.0) == pytest.approx(2.0)
    assert state.balance(15.0) == pytest.approx(0.0)


def test_a_gap_longer_than_ttl_clears_everything() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), now=0.0)
    for second in range(10):
        state.deposit(float(second))
    assert state.balance(9.5) == pytest.approx(10.0)
    assert state.balance(1000.0) == pytest.approx(0.0)
    state.deposit(1000.0)
    assert state.balance(1000.0) == pytest.approx(1.0)


def test_a_clock_going_backwards_keeps_counting() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), now=50.0)
    state.deposit(50.0)
    state.deposit(40.0)
    assert state.balance(45.0) == pytest.approx(2.0)


def test_short_ttl_has_proportionally_short_buckets() -> None:
    state = _BudgetState(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=0.5), now=0.0)
    state.deposit(0.01)
    assert state.balance(0.45) == pytest.approx(1.0)
    assert state.balance(0.55) == pytest.approx(0.0)


def test_concurrent_withdrawals_never_overspend() -> None:
    state = _BudgetState(RetryBudget(ratio=0.0, min_per_second=5.0, ttl=10.0), now=0.0)
    granted: list[bool] = []
    barrier = threading.Barrier(8)

    def spend() -> None:
        barrier.wait()
        granted.extend(state.withdraw(1.0) for _ in range(50))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 50


@pytest.mark.parametrize("field", ["ratio", "min_per_second", "ttl"])
@pytest.mark.parametrize("value", ["0.2", True, None, [1.0]])
def test_a_value_that_is_no_number_raises_value_error_naming_class_and_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=rf"RetryBudget\.{field} must be a number"):
        RetryBudget(**{field: value})  # type: ignore[arg-type]


def test_ratio_above_the_limit_names_the_limit() -> None:
    with pytest.raises(ValueError, match=r"RetryBudget\.ratio must be <= 1000"):
        RetryBudget(ratio=1000.5)


def test_an_integer_is_a_number() -> None:
    assert RetryBudget(ratio=1, min_per_second=0, ttl=5).ttl == 5


def test_the_recent_rate_counts_over_the_time_since_the_budget_was_made() -> None:
    state = _BudgetState(RetryBudget(ttl=10.0), now=0.0)
    for _ in range(3):
        state.deposit(0.1)
    assert state.recent_rate(0.1) == 0.0  # three tell no rate
    state.deposit(0.2)
    assert state.recent_rate(0.2) == pytest.approx(4.0)  # four in the first second
    assert state.recent_rate(4.0) == pytest.approx(1.0)  # four in four seconds
    assert state.recent_rate(9.5) == pytest.approx(4 / 9.5)
    for _ in range(4):
        state.deposit(12.0)
    assert state.recent_rate(12.0) == pytest.approx(0.4)  # over the whole window from then on
