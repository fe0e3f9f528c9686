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

With pacing from the providers' headers, the gate may also open while some scope has header
truth, as long as its headroom is ample: the desk then sets ``ceiling``, the most that ``used``
may reach before the next report, so that the attempts let through without a booking never
spend more than the last report left above its reserve (see `Desk`). ``answered`` counts the
fast path's attempts that have been answered (or failed): those sent but not yet answered
when a report was made may be missing from it, and are counted against it.

The gate counts attempts, not scopes: the driver's fast path never looks at a request's
scope. While it is open on header truth, the first attempts of a scope never seen before
(another model or key) go unbooked like any others, on the known scopes' headroom, though
that scope's own limits may be far smaller. Their successes are not read (only an
admission's, at the end of a run, is scanned); the first of them answered 429, or a scanned
admission of that scope, is read in full, and from then on the scope's own room counts in
the ceiling (a limit under `_desk._MIN_RUN` above its reserve shuts the gate). The bound: of
a burst of the new scope sent before any of it is answered, at most ``ceiling - used``
attempts go unbooked, never more than the known scopes' room above their reserve nor than
`_desk._BURST` (one second) of their slowest pace; sent one at a time, at most what the
new scope has left and one more, which is refused. Past the ceiling, the new scope takes
the paced path, where its first attempt probes it and the others wait for its answer.

Threads may race on ``used`` (an increment lost, or the gate's last attempts let through
just as it closes): the effect is that of an attempt admitted just before a block began, and
the budget counts a first attempt or two fewer (it errs towards fewer retries).
"""

from __future__ import annotations

import math

__all__ = ["FastGate"]


class FastGate:
    """Fast-path admissions (``used``), the count they may reach (``limit``), the next run.

    Scope-blind: ``ceiling`` bounds the unbooked attempts of every scope together, a scope
    never seen before included (see the module's docstring for what that costs it).
    """

    __slots__ = ("answered", "cap", "ceiling", "limit", "run", "used")

    def __init__(self, cap: int = 1) -> None:
        self.used = 0
        self.limit = 0  # closed until an admission finds nothing in the way
        self.run = 1
        self.cap = cap
        self.answered = 0  # fast-path attempts answered (or failed)
        self.ceiling: float = math.inf  # the most ``used`` may reach (header headroom)

    def close(self) -> None:
        """Send every first attempt through the limiter's admission until it opens the gate."""
        self.limit = 0
        self.run = 1

    def open(self) -> None:
        """Let the next run of first attempts take the fast path; the run after is longer."""
        run = self.run
        limit = self.used + run
        if limit > self.ceiling:
            limit = int(self.ceiling)  # no further than the headroom allows
        self.limit = limit
        if run < self.cap:
            self.run = min(run * 2, self.cap)

    @property
    def is_open(self) -> bool:
        """Whether the next first attempt may take the fast path."""
        return self.used < self.limit
