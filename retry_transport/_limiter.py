"""The limiter: state shared by every request to one upstream.

A limiter holds the block that follows a congestion signal (a 429, an overload), the retry
budget and an optional concurrency cap. It never sleeps: `gate` answers how long a caller
must still wait and the driver sleeps with its own (injectable) sleep, then asks again.
The budget and the slots live in process; the block lives in a `Store` (in-process by
default, Redis for a fleet: `retry_transport.redis`), of which the limiter keeps a local
record so that a block it knows of costs no I/O.
"""

from __future__ import annotations

import asyncio
import math
import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

from ._budget import RetryBudget, _BudgetState
from ._checks import check_callable, check_count, check_type
from ._desk import Desk, Ticket
from ._gate import FastGate
from ._pacing import RateLimit, ScopeHeadroom
from ._store import InProcessStore, Store

if TYPE_CHECKING:
    import httpx
    import httpx2

__all__ = ["Limiter", "SharedLimiter", "release_jitter"]

_DEFAULT_BUDGET = RetryBudget()
# The longest run of first attempts the fast-path gate lets through between two admissions
# by the limiter (see `FastGate`). With pacing, the success of each such admission is scanned
# for rate-limit headers: at least one in this many while nothing paces (and every answer
# that is no plain success is read in full, so a 429's headers start pacing at once).
_FAST_RUN_PACING = 256
# Without pacing, a block closes the gate at once and the budget counts the gate's attempts
# whenever it is asked: the run only bounds how long the limiter goes without a look.
_FAST_RUN = 1024


class Limiter(Protocol):
    """What the retry drivers ask of a limiter (`SharedLimiter`, `RedisLimiter`).

    The driver's order for a first attempt: `try_admit`; if False, loop on `gate` (sleeping
    what it answers) until it answers 0.0, `acquire_slot`, `note_first_attempt`. Every attempt
    is sent holding a slot, released right after it (`release_slot`), never held while
    sleeping. Before a retry: `allow_retry`; on a congestion verdict, `block`.
    """

    def try_admit(self) -> bool:
        """Admit a first attempt on the fast path and count it for the budget.

        True when it may be sent at once: no block in force, no concurrency slot to take and
        no I/O needed. False when the caller must take the slow path (nothing is counted).
        """
        ...

    def note_first_attempt(self) -> None:
        """Count one first attempt for the budget (the slow path's counterpart of `try_admit`)."""
        ...

    async def gate(self) -> float:
        """Seconds the caller must still wait before sending; 0.0 means go now.

        During a block: the block's remaining time plus a small release jitter. The caller
        sleeps that long, then calls `gate` again.
        """
        ...

    def gate_sync(self) -> float:
        """`gate` for synchronous callers."""
        ...

    async def acquire_slot(self) -> None:
        """Wait for a concurrency slot (first come, first served); at once without a cap."""
        ...

    def acquire_slot_sync(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for a slot; False if none came."""
        ...

    def release_slot(self) -> None:
        """Give a slot back; never blocks, callable from any thread; a no-op without a cap."""
        ...

    def allow_retry(self) -> bool:
        """Spend one retry from the budget: True if it fits (always, without a budget)."""
        ...

    async def block(self, seconds: float) -> None:
        """Hold every request sharing this limiter for ``seconds`` from now.

        A block only ever extends: one ending sooner than the block in force changes nothing.
        """
        ...

    def block_sync(self, seconds: float) -> None:
        """`block` for synchronous callers."""
        ...

    def blocked_for(self) -> float:
        """Seconds of block left as known locally (0.0 when none), for logs and metrics."""
        ...


def release_jitter(remaining: float, random: Callable[[], float]) -> float:
    """The extra wait added to a block's remaining time so that waiters wake spread out.

    Uniform in [0, min(0.1 * remaining, 1.0)): at most a tenth of the wait, never over a second.
    """
    return random() * min(0.1 * remaining, 1.0)


class _Waiter:
    """One caller queued for a concurrency slot."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.granted = False
        self.wake = wake


def _loop_waker(event: anyio.Event) -> Callable[[], object]:
    """A callable that sets ``event`` in its event loop, safely from any thread.

    Raises RuntimeError when called after that event loop has finished.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Not asyncio, so trio: anyio's only other backend.
        import trio

        token = trio.lowlevel.current_trio_token()
        return lambda: token.run_sync_soon(event.set)
    return lambda: loop.call_soon_threadsafe(event.set)


class PacedRequest:
    """One logical request through a pacing limiter, as its driver handles it: ask when its
    next attempt may go, say it is sent, show the limiter each answer, block its scope."""

    __slots__ = ("_desk", "_limiter", "ticket")

    def __init__(self, limiter: SharedLimiter, desk: Desk, ticket: Ticket) -> None:
        self._limiter = limiter
        self._desk = desk
        self.ticket = ticket

    async def gate(self, timeout: float | None) -> float:  # noqa: ASYNC109
        """Seconds the next attempt must wait (0.0: go now; ``inf``: not within ``timeout``)."""
        return await self._limiter.gate_ticket(self.ticket, timeout)

    def gate_sync(self, timeout: float | None) -> float:
        """`gate` for synchronous callers."""
        return self._limiter.gate_ticket_sync(self.ticket, timeout)

    def sent(self) -> None:
        """The attempt is being sent now."""
        self._desk.sent(self.ticket)

    def late(self) -> bool:
        """Whether the attempt was held past its booking (by a slot wait): then `gate` books
        it again before it may go."""
        return self._desk.late(self.ticket)

    async def done(self) -> None:
        """The request is over (answered, failed or cancelled): a booking its attempt did not
        go on is given back, in process and in a fleet's store (shielded from cancellation)."""
        await self._limiter.finish_ticket(self.ticket)

    def done_sync(self) -> None:
        """`done` for synchronous callers."""
        self._limiter.finish_ticket_sync(self.ticket)

    def observe(self, response: httpx.Response | httpx2.Response) -> None:
        """Learn what an answer says of the scope's headroom."""
        self._desk.observe(self.ticket, response)

    async def block(self, seconds: float, named: bool = False) -> None:
        """Block the request's scope (or origin, after an outage) for ``seconds``; ``named``:
        the server named that wait."""
        await self._limiter.block_ticket(self.ticket, seconds, named)

    def block_sync(self, seconds: float, named: bool = False) -> None:
        """`block` for synchronous callers."""
        self._limiter.block_ticket_sync(self.ticket, seconds, named)


class SharedLimiter:
    """In-process limiter shared by any number of transports, async and sync alike.

    One instance may serve async transports on asyncio or trio (several event loops in several
    threads included) and sync transports in threads, all at once.

    - **Block**: `block` holds every request sharing the limiter until the given time has
      passed; a later, shorter block never shortens it. While it holds, `gate` answers its
      remaining time plus a release jitter of ``uniform(0, min(0.1 * remaining, 1.0))``
      seconds, so that waiters re-check spread out rather than all at once. The block is kept
      in ``store`` under ``scope`` and in a local record: a block known locally is answered
      without asking the store; otherwise `gate` reads the store, and `block` records locally
      first, then extends the store's block and learns a longer one from its answer.
    - **Budget**: see `RetryBudget`; ``budget=None`` allows every retry.
    - **Concurrency**: ``max_concurrency`` caps the attempts in flight; waiters are served in
      arrival order, whichever thread or event loop they wait in.

    Args:
        budget: the retry budget, or None for no limit on retries.
        max_concurrency: the most attempts in flight at once, or None for no cap.
        store: where the block is shared (a `Store`); None: an `InProcessStore` of its own.
        scope: the key of this limiter's state in ``store``.
        rate: a declared `RateLimit` every attempt through the limiter keeps, retries
            included (a rolling window), or None.
        pacing: pace each scope (origin, credential fingerprint, model) from the providers'
            rate-limit headers and adapt its rate where none come; a 429 or an overload then
            blocks its scope only. False: one block for everything through the limiter.
        clock: monotonic time in seconds.
        wall_clock: seconds since the Unix epoch (to read reset times given as dates).
        random: uniform random numbers in [0, 1), used for the release jitter.
        fingerprint_key: the HMAC key of the credential fingerprints (bytes); None: a random
            one per limiter.

    Raises:
        ValueError: ``max_concurrency`` is not an integer >= 1, or ``scope`` is empty.
        TypeError: ``budget`` is not a `RetryBudget` (or None), ``rate`` not a `RateLimit`
            (or None), ``pacing`` not a bool, ``scope`` not a string, ``fingerprint_key`` not
            bytes (or None), or ``clock``, ``wall_clock`` or ``random`` is not callable.
    """

    __slots__ = (
        "_available",
        "_block_lock",
        "_blocked",
        "_blocked_until",
        "_budget",
        "_capped",
        "_clock",
        "_desk",
        "_fast",
        "_folded",
        "_max_concurrency",
        "_random",
        "_scope",
        "_slot_lock",
        "_slow",
        "_store",
        "_waiters",
    )

    def __init__(
        self,
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        max_concurrency: int | None = None,
        *,
        store: Store | None = None,
        scope: str = "default",
        rate: RateLimit | None = None,
        pacing: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        fingerprint_key: bytes | None = None,
    ) -> None:
        owner = type(self).__name__
        check_type(owner, "rate", rate, (RateLimit, type(None)))
        check_type(owner, "pacing", pacing, bool)
        check_callable(owner, "wall_clock", wall_clock)
        check_type(owner, "budget", budget, (RetryBudget, type(None)))
        if max_concurrency is not None:
            check_count(owner, "max_concurrency", max_concurrency)
        check_type(owner, "scope", scope, str)
        if not scope:
            raise ValueError(f"{owner}.scope must be a non-empty string, got {scope!r}")
        check_callable(owner, "clock", clock)
        check_callable(owner, "random", random)
        if fingerprint_key is not None and not isinstance(fingerprint_key, bytes):
            # The value is a secret: its type only, never its text.
            raise TypeError(
                f"{owner}: fingerprint_key must be bytes or None, "
                f"got {type(fingerprint_key).__name__}"
            )
        self._clock = clock
        self._random = random
        self._store: Store = InProcessStore(clock) if store is None else store
        self._scope = scope
        self._budget = None if budget is None else _BudgetState(budget, clock())
        self._blocked_until = -math.inf
        self._blocked = False  # a block was recorded and has not been seen to end
        self._block_lock = threading.Lock()
        self._max_concurrency = max_concurrency
        self._capped = max_concurrency is not None
        # The fast path has more to check than the local block: a cap, or a store elsewhere.
        self._slow = self._capped or type(self._store) is not InProcessStore
        self._available = 0 if max_concurrency is None else max_concurrency
        self._slot_lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self._fast = FastGate(_FAST_RUN if not pacing and rate is None else _FAST_RUN_PACING)
        self._folded = 0  # the gate's admissions already counted for the budget
        self._desk = (
            Desk(
                rate,
                headers=pacing,
                prefix=scope,
                clock=clock,
                wall_clock=wall_clock,
                fingerprint_key=fingerprint_key,
                gate=self._fast,
            )
            if pacing or rate is not None
            else None
        )

    def ticket(
        self,
        request: httpx.Request | httpx2.Request,
        first: object = None,
    ) -> PacedRequest:
        """A request's pacing handle; ``first`` is its first attempt's answer (a response or
        an exception) if it was already sent."""
        desk = self._desk
        assert desk is not None
        paced = PacedRequest(self, desk, desk.ticket(request))
        if first is not None:
            desk.sent(paced.ticket)
            paced.ticket.mark = None  # sent before: which answers its report covers is not known
            if isinstance(first, BaseException):
                desk.answered(paced.ticket)
            else:
                desk.observe(paced.ticket, first)
        return paced

    def desk_observe_fast(
        self, request: httpx.Request | httpx2.Request, response: httpx.Response | httpx2.Response
    ) -> None:
        """A success admitted by `try_admit`: look at it for rate-limit headers."""
        desk = self._desk
        if desk is not None:
            desk.observe_fast(request, response)

    @property
    def fast_gate(self) -> FastGate:
        """The gate the drivers' fast path reads (see `FastGate`)."""
        return self._fast

    @property
    def _any_key(self) -> str:
        return f"{self._scope}|any"

    @property
    def desk(self) -> Desk | None:
        """The pacing desk (None with pacing off and no declared rate)."""
        return self._desk

    @property
    def rate(self) -> RateLimit | None:
        """The declared rate, or None."""
        return None if self._desk is None else self._desk.pacer.rate

    def headroom(self) -> list[ScopeHeadroom]:
        """What each scope with header truth has left, per dimension (origin and model only)."""
        return [] if self._desk is None else self._desk.headroom()

    @property
    def store(self) -> Store:
        """Where the block is shared."""
        return self._store

    @property
    def scope(self) -> str:
        """The key of this limiter's state in its store."""
        return self._scope

    @property
    def max_concurrency(self) -> int | None:
        """The cap on attempts in flight, or None."""
        return self._max_concurrency

    def try_admit(self) -> bool:
        """Admit a first attempt if nothing stands in its way, counting it for the budget.

        False, counting nothing, while a block is in force, when a concurrency cap is set, or
        when the store is elsewhere and reachable (only it can tell of a block set there).
        When nothing holds and the limiter is in process, it also opens the fast-path gate
        for the next first attempts (see `FastGate`); it counts those that went through it
        since it last looked.
        """
        gate = self._fast
        budget = self._budget
        if budget is not None and gate.used != self._folded:
            self._count_fast(budget)
        if self._slow and (self._capped or not self._store.answers_locally()):
            return False
        desk = self._desk
        if desk is not None and (desk._busy or (desk._blocking and not desk.block_over())):
            return False
        if self._blocked and not self._block_over():
            return False
        if desk is not None and not self._slow:
            if gate.used >= gate.ceiling:
                return False  # the headroom reported last has room for no more unbooked
            # Counted as the gate's own (and answered as they are), already in the budget.
            gate.used += 1
            self._folded += 1
        if budget is not None:
            # No clock read: the count goes to the budget's current bucket, which the slow
            # path (`allow_retry`, `note_first_attempt`) moves on. Counted so, a first attempt
            # may stop counting early, never late.
            budget._firsts[budget._index] += 1
        if not self._slow:
            gate.open()
            # Closed meanwhile (a block, pacing turned busy in another thread): stay closed.
            if self._blocked or (desk is not None and (desk._busy or desk._blocking)):
                gate.close()
        return True

    def _count_fast(self, budget: _BudgetState) -> None:
        """Count the first attempts the fast-path gate let through since the last look."""
        used = self._fast.used
        fresh = used - self._folded
        if fresh > 0:
            # Into the budget's current bucket, as each would have been counted on its way.
            budget._firsts[budget._index] += fresh
            self._folded = used

    def _block_over(self) -> bool:
        """Whether the block known locally has ended (then noted, so the fast path skips this)."""
        if self._clock() < self._blocked_until:
            return False
        with self._block_lock:
            if self._clock() < self._blocked_until:
                return False  # extended meanwhile
            self._blocked = False
        return True

    def note_first_attempt(self) -> None:
        """Count one first attempt for the budget."""
        if self._budget is not None:
            self._count_fast(self._budget)
            self._budget.deposit(self._clock())

    async def gate(self) -> float:
        """Seconds to wait before sending: the block's remainder plus jitter, or 0.0.

        A block known locally is answered without asking the store.
        """
        wait = self._gate()
        if wait > 0.0:
            return wait
        if self._desk is not None and not self._store.answers_locally():
            self._desk.note_any_block(await self._store.read(self._any_key))
        return self._learn(await self._store.read(self._scope))

    def gate_sync(self) -> float:
        """`gate` for synchronous callers."""
        wait = self._gate()
        if wait > 0.0:
            return wait
        if self._desk is not None and not self._store.answers_locally():
            self._desk.note_any_block(self._store.read_sync(self._any_key))
        return self._learn(self._store.read_sync(self._scope))

    def _gate(self) -> float:
        remaining = self._blocked_until - self._clock()
        if remaining <= 0.0:
            return 0.0
        return remaining + release_jitter(remaining, self._random)

    def _learn(self, left: float | None) -> float:
        """Record a block the store told of; the wait it imposes now (0.0 for none)."""
        if left is None or left <= 0.0:
            return 0.0
        self._extend_block(left)
        return self._gate()

    def _learn_block(self, left: float | None) -> None:
        """Record the block the store answered an extension with (longer if one was)."""
        if left is not None and left > 0.0:
            self._extend_block(left)

    def allow_retry(self) -> bool:
        """Spend one retry from the budget: True if it fits; always True without a budget."""
        if self._budget is None:
            return True
        self._count_fast(self._budget)
        return self._budget.withdraw(self._clock())

    async def block(self, seconds: float) -> None:
        """Extend the block to ``seconds`` from now; never shortens it.

        Recorded locally at once, then in the store. Zero, negative, infinite and NaN values
        are ignored.
        """
        if self._extend_block(seconds):
            self._learn_block(await self._store.extend(self._scope, seconds))

    def block_sync(self, seconds: float) -> None:
        """`block` for synchronous callers."""
        if self._extend_block(seconds):
            self._learn_block(self._store.extend_sync(self._scope, seconds))

    def _extend_block(self, seconds: float) -> bool:
        """Extend the local record; False (nothing done) for a value that is no block."""
        if not 0.0 < seconds < math.inf:
            return False
        with self._block_lock:
            until = self._clock() + seconds
            if until > self._blocked_until:
                self._blocked_until = until
            self._blocked = True
            self._fast.close()
        return True

    def blocked_for(self) -> float:
        """Seconds of block left as known locally (0.0 when none): the longest of the
        limiter's own and its scopes' blocks."""
        until = self._blocked_until
        desk = self._desk
        if desk is not None and desk.blocked_until > until:
            until = desk.blocked_until
        return max(0.0, until - self._clock())

    # -- per-scope blocks and pacing (the driver's path when the limiter paces) ------------

    async def gate_ticket(self, ticket: Ticket, timeout: float | None) -> float:  # noqa: ASYNC109
        """Seconds the ticket's next attempt must wait (0.0: go now; ``inf``: not before
        ``timeout``): its scope's or origin's block, else the pacing of its scope.

        A block known locally is answered without asking the store; otherwise the store is
        asked of both. The first answer of 0.0 for a block books the attempt's pace.
        """
        desk = self._desk
        assert desk is not None
        wait = self._block_wait(ticket, desk)
        if wait > 0.0:
            return wait
        if not self._store.answers_locally():
            for key in ticket.keys:
                left = await self._store.read(key)
                if left is not None and left > 0.0:
                    desk.record_block(key, left)
            wait = self._block_wait(ticket, desk)
            if wait > 0.0:
                return wait
        before = ticket.booking
        wait = self._pace(ticket, desk, timeout)
        booking = ticket.booking
        if (
            booking is not None
            and booking is not before
            and (booking.spacing or desk.pacer.rate is not None)
        ):
            # A new booking (a first, or one made again after its attempt was held past the
            # old one): the fleet books it too.
            wait = await self._share_pace(ticket, wait, timeout)
        return wait

    def gate_ticket_sync(self, ticket: Ticket, timeout: float | None) -> float:
        """`gate_ticket` for synchronous callers."""
        desk = self._desk
        assert desk is not None
        wait = self._block_wait(ticket, desk)
        if wait > 0.0:
            return wait
        if not self._store.answers_locally():
            for key in ticket.keys:
                left = self._store.read_sync(key)
                if left is not None and left > 0.0:
                    desk.record_block(key, left)
            wait = self._block_wait(ticket, desk)
            if wait > 0.0:
                return wait
        before = ticket.booking
        wait = self._pace(ticket, desk, timeout)
        booking = ticket.booking
        if (
            booking is not None
            and booking is not before
            and (booking.spacing or desk.pacer.rate is not None)
        ):
            # A new booking (a first, or one made again after its attempt was held past the
            # old one): the fleet books it too.
            wait = self._share_pace_sync(ticket, wait, timeout)
        return wait

    def _block_wait(self, ticket: Ticket, desk: Desk) -> float:
        remaining = max(desk.block_wait(ticket), self._blocked_until - self._clock())
        if remaining <= 0.0:
            return 0.0
        return remaining + release_jitter(remaining, self._random)

    def _pace(self, ticket: Ticket, desk: Desk, timeout: float | None) -> float:
        return desk.pace(ticket, timeout)

    async def _share_pace(self, ticket: Ticket, wait: float, left: float | None) -> float:
        """Make a fresh booking's pace (its header spacing, the declared rate) hold across a
        fleet (a store elsewhere); in process, the booking stands as it is."""
        return wait

    def _share_pace_sync(self, ticket: Ticket, wait: float, left: float | None) -> float:
        """`_share_pace` for synchronous callers."""
        return wait

    async def finish_ticket(self, ticket: Ticket) -> None:
        """The ticket's request is over: give back what it holds (a booking never sent on, a
        place in an adaptive queue). A store elsewhere gives back its share too
        (`RedisLimiter`)."""
        desk = self._desk
        assert desk is not None
        desk.done(ticket)

    def finish_ticket_sync(self, ticket: Ticket) -> None:
        """`finish_ticket` for synchronous callers."""
        desk = self._desk
        assert desk is not None
        desk.done(ticket)

    async def block_ticket(self, ticket: Ticket, seconds: float, named: bool = False) -> None:
        """Block the ticket's scope (after a rate limit or an overload) or its origin (after
        an outage) for ``seconds``, and slow its adaptive rate; never shortens a block.

        A scope whose sending the adaptive rate paces is not blocked for a wait the server did
        not name (``named``): the cut rate spreads its attempts out, where a pause would hold
        them all and release them together.
        """
        desk = self._desk
        assert desk is not None
        adaptive = desk.congestion(ticket, self._recent_rate())
        key = desk.block_key(ticket)
        if 0.0 < seconds < math.inf and (named or not adaptive):
            desk.record_block(key, seconds)
            left = await self._store.extend(key, seconds)
            if left is not None and left > 0.0:
                desk.record_block(key, left)
            if not self._store.answers_locally():
                # The fleet's longest block of any scope, for health checks (`gate`, `blocked_for`).
                await self._store.extend(self._any_key, seconds)

    def block_ticket_sync(self, ticket: Ticket, seconds: float, named: bool = False) -> None:
        """`block_ticket` for synchronous callers."""
        desk = self._desk
        assert desk is not None
        adaptive = desk.congestion(ticket, self._recent_rate())
        key = desk.block_key(ticket)
        if 0.0 < seconds < math.inf and (named or not adaptive):
            desk.record_block(key, seconds)
            left = self._store.extend_sync(key, seconds)
            if left is not None and left > 0.0:
                desk.record_block(key, left)
            if not self._store.answers_locally():
                # The fleet's longest block of any scope, for health checks (`gate`, `blocked_for`).
                self._store.extend_sync(self._any_key, seconds)

    def _recent_rate(self) -> float:
        """First attempts per second lately, as the budget counted them (0.0 without one)."""
        budget = self._budget
        if budget is None:
            return 0.0
        self._count_fast(budget)
        return budget.recent_rate(self._clock())

    async def acquire_slot(self) -> None:
        """Wait for a concurrency slot; returns at once without a cap.

        Waiters are served first come, first served. Cancelling a waiter never loses a slot.
        """
        if not self._capped:
            return
        await anyio.lowlevel.checkpoint_if_cancelled()
        with self._slot_lock:
            if self._available > 0:
                self._available -= 1
                waiter = None
            else:
                event = anyio.Event()
                waiter = _Waiter(_loop_waker(event))
                self._waiters.append(waiter)
        if waiter is None:
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        try:
            await event.wait()
        except BaseException:
            self._abandon(waiter)
            raise

    def acquire_slot_sync(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for a concurrency slot.

        True once a slot is held (at once without a cap); False if none came in time.
        """
        if not self._capped:
            return True
        with self._slot_lock:
            if self._available > 0:
                self._available -= 1
                return True
            event = threading.Event()
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        try:
            event.wait(timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        with self._slot_lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def release_slot(self) -> None:
        """Give a slot back, handing it to the longest waiter if any.

        Never blocks and may be called from any thread; a no-op without a cap.

        Raises:
            RuntimeError: more slots released than were acquired.
        """
        if not self._capped:
            return
        with self._slot_lock:
            self._release_locked()

    def _release_locked(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            try:
                waiter.wake()
            except RuntimeError:
                # The waiter's event loop has finished: it waits no more; serve the next one.
                continue
            return
        if self._available >= (self._max_concurrency or 0):
            raise RuntimeError("release_slot() called more often than a slot was acquired")
        self._available += 1

    def _abandon(self, waiter: _Waiter) -> None:
        """Withdraw a waiter that stops waiting (cancelled, interrupted), passing on its slot."""
        with self._slot_lock:
            if waiter.granted:
                self._release_locked()
            else:
                self._waiters.remove(waiter)
