"""Backoff arithmetic: exponential delays with full jitter, computed, never slept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._checks import check_number

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter.

    The n-th retry waits ``uniform(0, min(cap, base * 2 ** (n - 1)))`` seconds.
    """

    base: float = 1.0
    cap: float = 60.0

    def __post_init__(self) -> None:
        check_number("Backoff", "base", self.base, positive=True)
        check_number("Backoff", "cap", self.cap, positive=True)

    def ceiling(self, retry: int) -> float:
        """The largest delay the ``retry``-th retry (1-based) may wait."""
        # 2 ** 1100 overflows a float; the cap is reached long before that.
        exponent = min(max(retry, 1) - 1, 1000)
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, retry: int, random: Callable[[], float]) -> float:
        """The jittered delay of the ``retry``-th retry; ``random`` returns a float in [0, 1)."""
        return self.ceiling(retry) * random()
