"""RetryPolicy: defaults and validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from retry_transport import Backoff, RetryPolicy


def test_defaults_match_the_contract() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.congestion_backoff == Backoff(base=2.0, cap=60.0)
    assert policy.transient_backoff == Backoff(base=0.5, cap=60.0)
    assert policy.max_retry_after == 60.0
    assert policy.deadline is None
    assert policy.classifier is None
    assert policy.peek_sse is True
    assert policy.peek_limit == 65536
    assert policy.unclassified_400_attempts == 3
    assert policy.give_up_header is True
    assert policy.first_content_timeout == 120.0
    assert policy.stateful_paths == ()


def test_first_content_timeout_can_be_turned_off() -> None:
    assert RetryPolicy(first_content_timeout=None).first_content_timeout is None
    assert RetryPolicy(first_content_timeout=2).first_content_timeout == 2


def test_stateful_paths_are_kept_as_a_tuple() -> None:
    policy = RetryPolicy(stateful_paths=["jobs", "a/*/b"])  # type: ignore[arg-type]
    assert policy.stateful_paths == ("jobs", "a/*/b")


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().max_attempts = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", -1),
        ("max_attempts", 2.5),
        ("max_attempts", True),
        ("max_attempts", "5"),
        ("unclassified_400_attempts", 0),
        ("peek_limit", 0),
        ("max_retry_after", -1.0),
        ("max_retry_after", math.nan),
        ("max_retry_after", math.inf),
        ("deadline", 0),
        ("deadline", -5),
        ("deadline", math.inf),
        ("congestion_backoff", 2.0),
        ("transient_backoff", None),
        ("classifier", "not callable"),
        ("peek_sse", "yes"),
        ("give_up_header", 1),
        ("retry_read_errors", None),
        ("idempotent_methods", "GET"),
        ("first_content_timeout", 0),
        ("first_content_timeout", -1.0),
        ("first_content_timeout", math.nan),
        ("first_content_timeout", "30"),
        ("first_content_timeout", True),
        ("stateful_paths", "files"),
        ("stateful_paths", ["ok", 3]),
        ("stateful_paths", ["/"]),
        ("stateful_paths", None),
    ],
)
def test_invalid_policy_value_raises_value_error_naming_the_field(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_replace_validates_too() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        dataclasses.replace(RetryPolicy(), max_attempts=0)


def test_idempotent_methods_are_upper_cased() -> None:
    assert RetryPolicy(idempotent_methods=frozenset({"get", "Put"})).idempotent_methods == {
        "GET",
        "PUT",
    }
