"""The retry budget: a cap on retries relative to recent first attempts.

`RetryBudget` is pure configuration. `_BudgetState` is the sliding-window account a limiter
owns: first attempts deposit ``ratio`` of a token, retries withdraw one whole token, and both
expire after ``ttl`` seconds (the scheme of Finagle, Linkerd and tower), on top of a constant
reserve of ``min_per_second * ttl`` tokens so that low-traffic clients may still retry.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from ._checks import check_number

__all__ = ["RetryBudget"]

_BUCKETS = 10
# Balances are sums of multiples of a float ratio: tolerate rounding (0.1 * 10 < 1.0).
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How many retries a limiter allows, relative to recent first attempts.

    Retries are allowed while those made in the last ``ttl`` seconds stay within
    ``ratio * first attempts in the last ttl seconds + min_per_second * ttl``. With the default
    (0.2, 1.0, 10.0) a sustained outage costs the upstream at most about 1.2 times the load
    of the first attempts, plus ten retries per ten seconds however quiet the traffic is.

    Raises:
        ValueError: naming the field: ``ratio`` is not within [0, 1000], ``min_per_second``
            is negative, ``ttl`` is not positive, or any of them is not a finite number (a bool
            or a string is not a number).
    """

    ratio: float = 0.2
    """Retries allowed per first attempt, e.g. 0.2 for one retry per five requests."""
    min_per_second: float = 1.0
    """Retries per second allowed even without traffic (a reserve of ``min_per_second * ttl``)."""
    ttl: float = 10.0
    """Seconds after which a first attempt or a retry stops counting."""

    def __post_init__(self) -> None:
        check_number("RetryBudget", "ratio", self.ratio, positive=False, maximum=1000.0)
        check_number("RetryBudget", "min_per_second", self.min_per_second, positive=False)
        check_number("RetryBudget", "ttl", self.ttl, positive=True)


class _BudgetState:
    """The sliding-window account of one limiter; times are passed in by the caller.

    The window is a ring of ten buckets, each ``ttl / 10`` seconds wide, holding the first
    attempts and the retries made in it; a bucket is cleared when the ring comes round to it
    again, so an event stops counting between ``0.9 * ttl`` and ``ttl`` seconds after it
    happened. Every operation is O(1).

    `deposit` takes no lock: while the current bucket is still current it is a float compare
    and a list-item increment. A limiter's fast path goes further and increments the current
    bucket without reading the clock at all; the ring then moves on at the next call that
    passes a time, so such a count may stop counting early (never late: the budget errs
    towards fewer retries). Two threads incrementing at once
    may lose one count, and a thread preempted across a ring rotation may put one count in
    the neighbouring bucket; either makes the budget off by about one first attempt (``ratio``
    of a retry), which is harmless. Rotations and withdrawals take the lock.
    """

    __slots__ = (
        "_bucket_end",
        "_epoch",
        "_firsts",
        "_index",
        "_lock",
        "_ratio",
        "_reserve",
        "_retries",
        "_started",
        "_width",
    )

    def __init__(self, budget: RetryBudget, now: float) -> None:
        self._ratio = budget.ratio
        self._reserve = budget.min_per_second * budget.ttl
        self._width = budget.ttl / _BUCKETS
        self._firsts = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._lock = threading.Lock()
        self._epoch = math.floor(now / self._width)
        self._index = self._epoch % _BUCKETS
        self._bucket_end = (self._epoch + 1) * self._width
        self._started = now

    def deposit(self, now: float) -> None:
        """Count one first attempt made at ``now``."""
        if now < self._bucket_end:
            self._firsts[self._index] += 1
        else:
            with self._lock:
                self._advance(now)
                self._firsts[self._index] += 1

    def withdraw(self, now: float) -> bool:
        """Spend one retry at ``now`` if the budget has one left; False (nothing spent) if not."""
        with self._lock:
            self._advance(now)
            if self._balance() < 1.0 - _EPSILON:
                return False
            self._retries[self._index] += 1
            return True

    def balance(self, now: float) -> float:
        """The retries (possibly fractional) that the budget would allow at ``now``."""
        with self._lock:
            self._advance(now)
            return self._balance()

    def recent_rate(self, now: float) -> float:
        """First attempts per second over the window, or over the time since the budget was
        made while that is shorter (at least one bucket): an estimate of the sending rate;
        0.0 when fewer than 4 were counted (too few to tell a rate)."""
        with self._lock:
            self._advance(now)
            count = sum(self._firsts)
            if count < 4:
                return 0.0
            span = min(self._width * _BUCKETS, max(self._width, now - self._started))
            return count / span

    def _balance(self) -> float:
        return self._reserve + self._ratio * sum(self._firsts) - sum(self._retries)

    def _advance(self, now: float) -> None:
        # Called with the lock held. A clock going backwards leaves the current bucket current.
        epoch = math.floor(now / self._width)
        if epoch <= self._epoch:
            return
        # Clear the buckets the ring passes over (all of them after a gap of a whole ttl);
        # the new current bucket is cleared before it is published to `deposit`.
        for step in range(1, min(epoch - self._epoch, _BUCKETS) + 1):
            stale = (self._epoch + step) % _BUCKETS
            self._firsts[stale] = 0
            self._retries[stale] = 0
        self._epoch = epoch
        self._index = epoch % _BUCKETS
        self._bucket_end = (epoch + 1) * self._width
