"""Where a limiter keeps the state it shares: a store, keyed by scope.

A limiter keeps its concurrency slots and its retry budget in process. The block that follows
a congestion signal is shared through a store, so that a store elsewhere (Redis, for a fleet
of processes) can hold it for everyone. State in a store is keyed by a scope: a string naming
what the state belongs to (a limiter's name, then an upstream origin, credential fingerprint
and model: see `Ticket.keys` in `_desk`).

A new store implements `Store` and is passed as ``SharedLimiter(store=...)``: blocks are then
shared through it. Pacing shared across a fleet (one pace per scope from the headers, one
declared window) needs more than `Store`: `retry_transport.redis` shows the shape, a
`SharedLimiter` subclass whose `_share_pace` books each attempt in the store too
(`RedisStore.book_pace`, `book_window`) and whose `finish_ticket` gives back a booking never
sent on.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._checks import check_callable

__all__ = ["InProcessStore", "Store"]


class Store(Protocol):
    """Shared state of limiters, keyed by scope: the block each scope is under.

    Times are seconds relative to now, so a store may keep them by its own clock (a server's).
    A store never raises for being unreachable and never blocks for long: it answers ``None``
    when it cannot tell, and the limiter then goes on with what it knows locally.
    """

    def answers_locally(self) -> bool:
        """Whether a read now would do no I/O.

        True for an in-process store, and for a remote one while it is left alone after a
        failure (its reads then answer ``None`` at once); a limiter may then admit a request
        from its own record of blocks, without asking the store.
        """
        ...

    async def read(self, scope: str) -> float | None:
        """Seconds left of ``scope``'s block, 0.0 when none; ``None`` when the store cannot tell."""
        ...

    def read_sync(self, scope: str) -> float | None:
        """`read` for synchronous callers."""
        ...

    async def extend(self, scope: str, seconds: float) -> float | None:
        """Extend ``scope``'s block to end ``seconds`` (> 0, finite) from now, never shortening it.

        Answers the seconds left of the block afterwards (at least ``seconds`` unless a longer
        block was in force), or ``None`` when the store could not be reached.
        """
        ...

    def extend_sync(self, scope: str, seconds: float) -> float | None:
        """`extend` for synchronous callers."""
        ...


class InProcessStore:
    """A store in this process's memory: the default of `SharedLimiter`.

    Safe to use from any thread and event loop. Give each limiter its own (share the limiter,
    not the store): a limiter admits requests on its fast path from its own record of blocks.

    Args:
        clock: monotonic time in seconds.
    """

    __slots__ = ("_clock", "_lock", "_until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        check_callable("InProcessStore", "clock", clock)
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def answers_locally(self) -> bool:
        """Always True: nothing here does I/O."""
        return True

    async def read(self, scope: str) -> float | None:
        """Seconds left of ``scope``'s block, 0.0 when none."""
        return self.read_sync(scope)

    def read_sync(self, scope: str) -> float | None:
        """Seconds left of ``scope``'s block, 0.0 when none."""
        return max(0.0, self._until.get(scope, -math.inf) - self._clock())

    async def extend(self, scope: str, seconds: float) -> float | None:
        """Extend ``scope``'s block to ``seconds`` from now; answer the seconds left."""
        return self.extend_sync(scope, seconds)

    def extend_sync(self, scope: str, seconds: float) -> float | None:
        """Extend ``scope``'s block to ``seconds`` from now; answer the seconds left."""
        with self._lock:
            now = self._clock()
            until = max(self._until.get(scope, -math.inf), now + seconds)
            self._until[scope] = until
        return until - now
