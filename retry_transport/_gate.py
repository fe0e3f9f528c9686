"""The fast-path gate: what a driver reads before sending a first attempt at once.

A limiter hands its drivers one `FastGate`. While ``used < limit`` a first attempt may go
straight to the wrapped transport: the driver adds one to ``used`` and sends, calling nothing
else. Anything that could hold a request (a block, pacing that has something to say, a
concurrency cap, a store elsewhere) closes the gate (``limit = 0``); the limiter's own
admission (`SharedLimiter.try_admit`) opens it again once nothing holds, for a run of first
attempts. The attempt that finds the run spent takes that admission again, which counts the
run's attempts for the retry budget and, when the limiter paces, has its success scanned for
rate-limit headers. Runs start at one attempt after the gate was closed and double at each
admission up to ``cap``: right after a block or a spell of pacing every other attempt or so
is looked at, and in a steady state without any, one in ``cap``.

Threads may race on ``used`` (an increment lost, or the gate's last attempts let through
just as it closes): the effect is that of an attempt admitted just before a block began, and
the budget counts a first attempt or two fewer (it errs towards fewer retries).
"""

from __future__ import annotations

__all__ = ["FastGate"]


class FastGate:
    """Fast-path admissions (``used``), the count they may reach (``limit``), the next run."""

    __slots__ = ("cap", "limit", "run", "used")

    def __init__(self, cap: int = 1) -> None:
        self.used = 0
        self.limit = 0  # closed until an admission finds nothing in the way
        self.run = 1
        self.cap = cap

    def close(self) -> None:
        """Send every first attempt through the limiter's admission until it opens the gate."""
        self.limit = 0
        self.run = 1

    def open(self) -> None:
        """Let the next run of first attempts take the fast path; the run after is longer."""
        run = self.run
        self.limit = self.used + run
        if run < self.cap:
            self.run = min(run * 2, self.cap)

    @property
    def is_open(self) -> bool:
        """Whether the next first attempt may take the fast path."""
        return self.used < self.limit
