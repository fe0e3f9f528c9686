"""Helpers for users' own test suites: switch every wait off so retries run instantly.

>>> from retry_transport.testing import no_waiting
>>> with no_waiting():
...     pass  # code under test: transports retry without sleeping
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._switch import SWITCH

__all__ = ["is_testing", "no_waiting", "set_testing"]


def set_testing(on: bool, *, max_attempts: int | None = None) -> None:
    """Make every transport wait zero seconds (``on=True``), optionally capping attempts;
    ``set_testing(False)`` restores normal behaviour."""
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    SWITCH.no_wait = on
    SWITCH.max_attempts = max_attempts if on else None


def is_testing() -> bool:
    """Whether the testing switch is on."""
    return SWITCH.no_wait


@contextmanager
def no_waiting(*, max_attempts: int | None = None) -> Iterator[None]:
    """Context manager form of `set_testing`: waits are zero inside, restored after."""
    previous = (SWITCH.no_wait, SWITCH.max_attempts)
    set_testing(True, max_attempts=max_attempts)
    try:
        yield
    finally:
        SWITCH.no_wait, SWITCH.max_attempts = previous
