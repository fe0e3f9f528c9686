"""Pacing: when each attempt may go, per scope, before the upstream has to refuse it.

Pure: no I/O, no sleeping, no clock of its own (every call takes ``now``). `Pacer.reserve`
answers how long an attempt must wait and books its cost at that moment; the driver sleeps.
Three sources of pacing, combined (an attempt goes when all of them allow it):

- **Header truth.** A provider's rate-limit headers (`parse_headroom`) tell each scope, per
  dimension, what is left and how fast it refills. Attempts are spaced so that their
  estimated cost is spent at the refill rate plus the surplus above a reserve spread over a
  window: never a burst that drains the bucket, never a burst at the reset. Each new report
  corrects the picture, so a wrong estimate of a request's cost is corrected by what the
  provider says is left. With no report, nothing is slowed.
- **A declared limit** (`RateLimit`): never more than ``requests`` attempts (and ``tokens``)
  in any rolling window of ``per`` seconds, for the whole limiter. The window counts the
  times attempts are booked to go, spaced ``per`` plus a small margin (`RateLimit.margin`)
  apart, so that the upstream's own count of their arrival times holds too; an attempt that
  goes later than its booking allows (``Reservation.grace``: held by a block, a slot wait)
  gives its booking back and is booked anew for the moment it goes (`Pacer.cancel`).
- **An adaptive rate** for scopes that send no headers: a congestion signal cuts the scope's
  rate multiplicatively (to ``beta`` of what the upstream was accepting) and it grows back
  along a cubic curve (the CUBIC congestion window, as the AWS SDKs' adaptive mode does), on
  the monotonic clock, per scope. Attempts are released one at a time, evenly spaced at the
  rate of the moment they go (nothing is booked ahead at a rate that may since have been
  cut): a waiting attempt holds a place in its scope's queue and is told when to look again.
  A scope never throttled is never slowed.

Scope state is bounded: at most ``max_scopes`` scopes, least recently used dropped first, and
a scope idle for ``idle_ttl`` seconds is forgotten.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from ._ratelimit_headers import Headroom
from ._scope import CostEstimate, Scope

__all__ = ["Pacer", "RateLimit", "Reservation", "ScopeHeadroom", "declared_margin"]

_K = TypeVar("_K", str, "Scope")

DEFAULT_WINDOW = 60.0
"""Seconds a quota is assumed to be counted over when the headers do not say (per minute)."""

FAST_TOKENS = 4096.0
"""Tokens an attempt sent without a booking is counted at, at the least (see `allowance`)."""

_PROBE_POLL = 0.05  # seconds between looks while the first attempt to an origin is out
_MAX_PENDING = 4096  # bookings remembered per dimension awaiting a report
_MIN_WINDOW = 1.0
_ADAPTIVE_LOOK = 0.5  # the longest an attempt held back by the adaptive rate waits to look again
_ADAPTIVE_STALE = 2.0 * _ADAPTIVE_LOOK + 0.5  # a place not looked at for this long is given up
_MAX_WINDOW = 86400.0
_GRACE = 0.25  # seconds an attempt may go after its booking and still count at its time


def declared_margin(per: float) -> float:
    """`RateLimit.margin` for a window of ``per`` seconds.

    An attempt may go up to half the margin after its booking (its `Reservation.grace`), so
    the upstream still sees the attempts at least ``per`` plus half the margin apart.
    """
    return min(0.1 * per, max(0.1, min(1.0, 0.02 * per)))


def _remember(seen: OrderedDict[_K, None], key: _K, most: int) -> None:
    """Add ``key`` to ``seen``, forgetting the oldest past ``most``."""
    if key not in seen:
        seen[key] = None
        if len(seen) > most:
            seen.popitem(last=False)


def _check_positive(name: str, value: object, *, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"RateLimit.{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"RateLimit.{name} must be finite and > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A declared client-side rate: at most ``requests`` attempts (and, if set, ``tokens``
    estimated tokens) in any window of ``per`` seconds, retries included.

    The window rolls: however the attempts arrive, no interval of ``per`` seconds ever holds
    more than ``requests`` of them. Invalid values raise ``ValueError`` naming the field.
    """

    requests: int
    per: float = 60.0
    tokens: int | None = None

    def __post_init__(self) -> None:
        _check_positive("requests", self.requests, integer=True)
        _check_positive("per", self.per, integer=False)
        if self.tokens is not None:
            _check_positive("tokens", self.tokens, integer=True)

    @property
    def margin(self) -> float:
        """Seconds added to ``per`` between the bookings the window counts, so that the
        upstream's own count of arrival times, which the network shifts, still never sees more
        than ``requests`` in ``per`` seconds: 2% of ``per``, at least 0.1 s and at most 1 s,
        never more than a tenth of ``per`` (0.1 s for ``per=2``, 1 s for ``per=60``)."""
        return declared_margin(self.per)


@dataclass(frozen=True, slots=True)
class Reservation:
    """An attempt's booking: go at ``at`` (monotonic), ``wait`` seconds after it was asked.

    ``wait`` is ``inf`` when the attempt cannot go before its deadline (nothing is booked).
    ``paced_by`` names what made it wait ("headers", "declared", "adaptive", "probe"), or ""
    when it may go at once. ``seq`` orders bookings of one scope, for matching reports to
    them. When ``booked`` is False nothing was booked: ask again after ``wait`` (the first
    attempt to a new origin is still out, and its answer may carry the headroom).
    ``spacing`` is, per dimension of its own scope's header truth, the seconds this booking
    keeps the next one back (what a fleet shares to pace as one). ``queue`` is the place an
    attempt held back by the adaptive rate keeps in its scope's queue (pass it to the next
    `Pacer.reserve`), 0 for none. ``grace`` is how long after ``at`` the attempt may still go
    on this booking; later, it is cancelled (`Pacer.cancel`) and booked again.
    """

    wait: float
    at: float
    seq: int
    paced_by: str
    booked: bool = True
    spacing: tuple[tuple[str, float], ...] = ()
    queue: int = 0
    grace: float = _GRACE


@dataclass(frozen=True, slots=True)
class ScopeHeadroom:
    """One dimension of one scope, for metrics: what is left and the pace it allows."""

    origin: str
    model: str
    dimension: str
    limit: float | None
    remaining: float
    pace: float


class _Dimension:
    """Header truth about one dimension of one scope, and the attempts booked against it.

    The provider's bucket is modelled as holding ``remaining`` at ``reported_at`` and
    refilling at ``refill`` per second up to ``limit`` (continuous), or as a fixed window
    holding ``remaining`` until ``reset_at`` and ``limit`` again after it. Bookings made since
    the report (``pending``) are taken off what is left until a later report covers them.
    """

    __slots__ = (
        "continuous",
        "hold_until",
        "limit",
        "pending",
        "pending_sum",
        "refill",
        "remaining",
        "reported_at",
        "reset_at",
        "tat",
        "window",
    )

    def __init__(self) -> None:
        self.limit = 0.0
        self.remaining = 0.0
        self.reported_at = -math.inf
        self.reset_at: float | None = None
        self.continuous = True
        self.refill = 0.0  # units per second
        self.window = DEFAULT_WINDOW
        self.hold_until = -math.inf
        self.tat = -math.inf  # the earliest time the next booking may go (GCRA)
        self.pending: deque[tuple[int, float, float]] = deque()  # (seq, cost, at)
        self.pending_sum = 0.0

    def level(self, t: float) -> float:
        """What the provider will still have at ``t``, bookings taken off."""
        if self.continuous:
            # Bookings drain the bucket while it refills, so the cap applies to what is left.
            grown = self.remaining + self.refill * max(0.0, t - self.reported_at)
            return min(self.limit, grown - self.pending_sum)
        if self.reset_at is not None and t >= self.reset_at:
            after = sum(cost for _, cost, at in self.pending if at >= self.reset_at)
            return self.limit - after
        return self.remaining - self.pending_sum

    def pace(self, t: float, level: float, largest: float) -> float:
        """Units per second to spend at ``t`` when ``level`` is left."""
        reserve = min(0.5 * self.limit, max(0.1 * self.limit, 2.0 * largest))
        if self.continuous:
            return self.refill + max(0.0, level - reserve) / self.window
        if self.reset_at is not None and t < self.reset_at:
            spare = level - min(reserve, 0.02 * self.limit + 1.0)
            return max(spare, 0.0) / max(self.reset_at - t, 1e-3) or self.refill
        return self.refill

    def slot(self, cost: float, at: float) -> float:
        """The earliest time >= ``at`` at which a booking of ``cost`` fits."""
        at = max(at, self.tat, self.hold_until)
        cost = min(cost, self.limit)
        short = cost - self.level(at)
        if short <= 0.0:
            return at
        if self.continuous:
            return at + short / self.refill if self.refill > 0.0 else math.inf
        if self.reset_at is not None and at < self.reset_at:
            return self.slot(cost, self.reset_at)
        return at + short / self.refill if self.refill > 0.0 else math.inf

    def book(self, seq: int, cost: float, at: float, largest: float) -> float:
        """Book ``cost`` at ``at``; answer the spacing (seconds) it puts before the next."""
        pace = self.pace(at, self.level(at), largest)
        spacing = cost / pace if pace > 0.0 else math.inf
        self.tat = at + spacing
        self.pending.append((seq, cost, at))
        self.pending_sum += cost
        return spacing

    def learn(self, room: Headroom, seq: int, now: float) -> float:
        """Take in one report (covering the bookings up to ``seq``); answer until when it
        holds as truth."""
        pending = self.pending
        own = 0.0  # the reported attempt's own cost, already taken off what is left
        while pending and (pending[0][0] <= seq or len(pending) > _MAX_PENDING):
            entry = pending.popleft()
            self.pending_sum -= entry[1]
            if entry[0] == seq:
                own = entry[1]
        if not pending:
            self.pending_sum = 0.0
        remaining = room.remaining
        assert remaining is not None
        previous = self.limit
        # With no limit sent (Azure), what was left before this attempt is the best floor.
        limit = room.limit if room.limit is not None else max(previous, remaining + own)
        limit = max(limit, remaining)
        reset_in = None if room.reset_at is None else max(0.0, room.reset_at - now)
        self.limit = limit
        self.remaining = remaining
        self.reported_at = now
        self.reset_at = room.reset_at
        self.continuous = room.continuous
        self.hold_until = -math.inf
        if limit <= 0.0:
            self.refill = 0.0
            self.hold_until = now + (reset_in if reset_in is not None else 1.0)
            return self.hold_until
        if room.continuous:
            # Whole seconds (rounded up, as providers print them): the refill read from a short
            # reset is far too low; keep what a longer one told.
            if room.coarse and reset_in is not None and reset_in < 1.5:
                # Too coarse to tell: what a longer one told, else a per-minute limit.
                refill = self.refill if self.refill > 0.0 else limit / DEFAULT_WINDOW
            elif room.limit is not None and reset_in and remaining < limit:
                refill = (limit - remaining) / reset_in
            elif room.limit is None:
                # Azure: what is left of a quota counted over its own window (requests per
                # 10 s, tokens per minute), else the minute's.
                refill = limit / (room.window or DEFAULT_WINDOW)
            elif previous == limit and self.refill > 0.0:
                refill = self.refill  # a full bucket says nothing new about the refill
            else:
                refill = limit / DEFAULT_WINDOW
            self.window = min(max(limit / refill, _MIN_WINDOW), _MAX_WINDOW)
            self.refill = limit / self.window
            if remaining <= 0.0 and reset_in is not None:
                self.hold_until = now + min(reset_in, self.window)
            return now + self.window
        # A fixed window: what is left until the reset, all of the limit again after it.
        self.window = room.window if room.window is not None else DEFAULT_WINDOW
        self.refill = limit / self.window
        if self.reset_at is None:
            self.reset_at = now + self.window
        return self.reset_at + self.window


class _ScopeState:
    __slots__ = (
        "accepted",
        "dims",
        "issued",
        "k",
        "largest",
        "rate",
        "recent",
        "released_at",
        "reported",
        "seq",
        "t_fail",
        "truth_until",
        "used",
        "w_max",
        "waiting",
    )

    def __init__(self, now: float) -> None:
        self.dims: dict[str, _Dimension] = {}
        self.seq = 0
        self.reported = 0
        self.used = now
        self.truth_until = -math.inf
        self.largest: dict[str, float] = {}
        # adaptive
        self.rate: float | None = None
        self.w_max = 0.0
        self.k = 0.0
        self.t_fail = -math.inf
        self.released_at = -math.inf  # when the adaptive rate last let an attempt go
        self.issued = 0  # the last place handed out in the adaptive queue
        self.waiting: dict[int, float] = {}  # place -> when its attempt last looked, in order
        self.recent: deque[float] = deque(maxlen=16)
        self.accepted: deque[float] = deque(maxlen=32)  # when answers other than 429 came


def _costs(cost: CostEstimate) -> dict[str, float]:
    return {
        "requests": cost.requests,
        "tokens": cost.input_tokens + cost.output_tokens,
        "input_tokens": cost.input_tokens,
        "output_tokens": cost.output_tokens,
    }


class Pacer:
    """Per-scope pacing state of one limiter. Not thread-safe: the limiter holds a lock.

    Args:
        rate: a declared limit for every attempt through the limiter, or None.
        max_scopes: the most scopes remembered at once.
        idle_ttl: seconds after which an unused scope is forgotten.
        beta: the adaptive rate's multiplicative cut on congestion (0 < beta < 1).
        scale: the cubic growth constant of the adaptive rate (per second cubed).
        min_rate: the adaptive rate's floor, attempts per second.
        headers: whether header truth paces at all.
        probe_wait: the longest that other attempts to a new origin (or to a new scope of an
            origin that sends rate-limit headers) wait for the first attempt's answer (which
            may tell the headroom) before going anyway.
    """

    def __init__(
        self,
        rate: RateLimit | None = None,
        *,
        max_scopes: int = 1024,
        idle_ttl: float = 600.0,
        beta: float = 0.7,
        scale: float = 0.4,
        min_rate: float = 0.5,
        headers: bool = True,
        probe_wait: float = 2.0,
    ) -> None:
        self._rate = rate
        self._scopes: OrderedDict[Scope, _ScopeState] = OrderedDict()
        self._max_scopes = max_scopes
        self._idle_ttl = idle_ttl
        self._beta = beta
        self._scale = scale
        self._min_rate = min_rate
        self._headers = headers
        self._declared: deque[tuple[float, float]] = deque()
        self._declared_tokens = 0.0
        self._window = 0.0 if rate is None else rate.per + rate.margin
        self._grace = _GRACE if rate is None else min(_GRACE, 0.5 * rate.margin)
        self._probe_wait = probe_wait
        # First attempts out, by origin (a new origin) or by scope (a new scope of an origin
        # that sends rate-limit headers): until when the others wait for their answers.
        self._probes: dict[str | Scope, float] = {}
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._headed: OrderedDict[str, None] = OrderedDict()  # origins that sent header truth
        self._answered_scopes: OrderedDict[Scope, None] = OrderedDict()

    @property
    def rate(self) -> RateLimit | None:
        """The declared limit, or None."""
        return self._rate

    @property
    def idle(self) -> bool:
        """True when nothing could pace an attempt: no declared limit, no scope state and no
        first attempt to a new origin out."""
        return self._rate is None and not self._scopes and not self._probes

    def answered(self, origin: str, scope: Scope | None = None) -> None:
        """An attempt to ``origin`` (of ``scope``) has been answered, whatever its headers
        said: the others waiting for its answer go."""
        probes = self._probes
        probes.pop(origin, None)
        _remember(self._answered, origin, self._max_scopes)
        if scope is not None and origin in self._headed:
            probes.pop(scope, None)
            _remember(self._answered_scopes, scope, self._max_scopes)

    def __len__(self) -> int:
        return len(self._scopes)

    def allowance(self, now: float) -> tuple[float, float]:
        """What attempts sent without a booking may still spend: ``(room, rate)``.

        ``room`` is the fewest attempts that every scope with header truth can still take
        above its reserve (each counted at one request and, per token dimension, at the
        largest cost booked in that scope or `FAST_TOKENS`, whichever is more); ``rate`` the
        slowest pace (attempts per second, each at the largest cost booked) any of them
        allows. ``(0.0, 0.0)`` when anything else could pace an attempt: a declared limit, a
        first attempt to a new origin out, an adaptive rate, a dimension on hold. With no
        scope state: ``(inf, inf)``.
        """
        if self._rate is not None or self._probes:
            return 0.0, 0.0
        self._evict(now)
        room = rate = math.inf
        for state in self._scopes.values():
            if state.rate is not None and now >= state.truth_until:
                return 0.0, 0.0
            for name, dim in state.dims.items():
                if now < dim.hold_until:
                    return 0.0, 0.0
                largest = max(state.largest.get(name, 0.0), 1.0)
                # The room is counted at a cost no attempt is likely to pass; the pace (how
                # fast, not how many) at the largest one booked.
                unit = 1.0 if name == "requests" else max(largest, FAST_TOKENS)
                level = dim.level(now)
                reserve = min(0.5 * dim.limit, max(0.1 * dim.limit, 2.0 * unit))
                room = min(room, (level - reserve) / unit)
                rate = min(rate, dim.pace(now, level, unit) / largest)
        return max(room, 0.0), max(rate, 0.0)

    # -- scope bookkeeping -------------------------------------------------------------

    def _state(self, scope: Scope, now: float, create: bool) -> _ScopeState | None:
        scopes = self._scopes
        state = scopes.get(scope)
        if state is not None:
            state.used = now
            scopes.move_to_end(scope)
        elif create:
            state = scopes[scope] = _ScopeState(now)
        self._evict(now)
        return state

    def _evict(self, now: float) -> None:
        scopes = self._scopes
        while scopes:
            oldest, state = next(iter(scopes.items()))
            if len(scopes) > self._max_scopes or now - state.used > self._idle_ttl:
                del scopes[oldest]
            else:
                return

    # -- booking -----------------------------------------------------------------------

    def reserve(
        self,
        scopes: tuple[Scope, ...],
        cost: CostEstimate,
        now: float,
        deadline: float | None,
        *,
        patient: bool = True,
        queue: int = 0,
    ) -> Reservation:
        """Book one attempt of ``cost`` in ``scopes`` (its own scope first, then wider ones).

        Answers when it may go. Past ``deadline`` (monotonic), books nothing and answers
        ``wait=inf``. While the first attempt to a new origin is out, a ``patient`` caller is
        asked to look again shortly (nothing booked); an impatient one is booked at once.
        While an adaptive rate holds the attempt back, nothing is booked either: it is told
        its place in its scope's queue and when to look again (pass ``queue`` back then).
        """
        costs = _costs(cost)
        at = now
        paced_by = ""
        if self._headers and patient:
            origin = scopes[0].origin
            probe: str | Scope | None = None
            if origin not in self._answered:
                probe = origin
            elif (
                origin in self._headed
                and scopes[0] not in self._answered_scopes
                and scopes[0] not in self._scopes
            ):
                # A new scope (another model or key) of an origin known to send rate-limit
                # headers: its own limits are unknown until its first answer tells them.
                probe = scopes[0]
            if probe is not None:
                until = self._probes.get(probe)
                if until is None:
                    self._probes[probe] = now + self._probe_wait
                elif now < until:
                    wait = min(_PROBE_POLL, until - now)
                    if deadline is not None and now + wait >= deadline:
                        return Reservation(math.inf, now + wait, 0, "probe", booked=False)
                    return Reservation(wait, now + wait, 0, "probe", booked=False)
        states = []
        own = False
        for index, scope in enumerate(scopes):
            state = self._state(scope, now, create=False)
            if state is None:
                continue
            own = own or index == 0
            states.append(state)
            if state.rate is not None and now >= state.truth_until:
                place = queue if index == 0 else -1
                ready, place = self._turn(state, now, place)
                if ready > now:
                    if deadline is not None and ready >= deadline:
                        state.waiting.pop(place, None)
                        return Reservation(math.inf, ready, 0, "adaptive", booked=False)
                    look = min(ready, now + _ADAPTIVE_LOOK)
                    return Reservation(
                        look - now, look, 0, "adaptive", booked=False, queue=max(place, 0)
                    )
            for name, dim in state.dims.items():
                spend = costs.get(name, 0.0)
                if spend <= 0.0:
                    continue
                slot = dim.slot(spend, at)
                if slot > at:
                    at, paced_by = slot, "headers"
        if self._rate is not None:
            slot = self._declared_slot(at, costs["tokens"])
            if slot > at:
                at, paced_by = slot, "declared"
        if deadline is not None and at >= deadline:
            return Reservation(math.inf, at, 0, paced_by)
        seq = 0
        spacings: list[tuple[str, float]] = []
        for index, state in enumerate(states):
            state.seq += 1
            if index == 0 and own:
                seq = state.seq
            for name, dim in state.dims.items():
                spend = costs.get(name, 0.0)
                if spend > 0.0:
                    largest = max(state.largest.get(name, 0.0), spend)
                    state.largest[name] = largest
                    spacing = dim.book(state.seq, spend, at, largest)
                    if index == 0 and own and spacing < math.inf:
                        spacings.append((name, spacing))
            if state.rate is not None and now >= state.truth_until:
                state.released_at = max(state.released_at, at)
                if index == 0 and queue:
                    state.waiting.pop(queue, None)
            state.recent.append(at)
        if self._rate is not None:
            self._declared.append((at, costs["tokens"]))
            self._declared_tokens += costs["tokens"]
        return Reservation(at - now, at, seq, paced_by, spacing=tuple(spacings), grace=self._grace)

    def cancel(self, scopes: tuple[Scope, ...], cost: CostEstimate, booking: Reservation) -> None:
        """Give back ``booking`` (booked by `reserve` for ``scopes`` and ``cost``): its
        attempt will not go at its time (held past it, or not at all).

        Its place in the declared window is freed, and its cost is no longer counted against
        its scopes' header truth. Whatever it had moved on (a scope's next free time, the
        adaptive rate's last release) stays: a later booking never goes earlier for it.
        """
        costs = _costs(cost)
        at = booking.at
        if self._rate is not None:
            entry = (at, costs["tokens"])
            try:
                self._declared.remove(entry)
            except ValueError:
                pass  # already out of every window that matters
            else:
                self._declared_tokens -= entry[1]
        for scope in scopes:
            state = self._scopes.get(scope)
            if state is None:
                continue
            for name, dim in state.dims.items():
                spend = costs.get(name, 0.0)
                for index, (_, pending_cost, pending_at) in enumerate(dim.pending):
                    if pending_at == at and pending_cost == spend:
                        del dim.pending[index]
                        dim.pending_sum -= spend
                        break

    def leave(self, scope: Scope, place: int) -> None:
        """An attempt holding ``place`` in ``scope``'s adaptive queue will not go after all."""
        state = self._scopes.get(scope)
        if state is not None:
            state.waiting.pop(place, None)

    def _turn(self, state: _ScopeState, now: float, place: int) -> tuple[float, int]:
        """When the adaptive rate lets an attempt holding ``place`` in the scope's queue go
        (0: none yet, one is handed out if it must wait; -1: it takes none), and its place.

        Releases are spaced ``1 / rate`` apart at the rate of now, so a cut slows every
        attempt still waiting at once, and in the order they came: each place ahead that is
        still waiting puts one more spacing before it. A place is given back by `leave` (or,
        by an attempt that stopped looking again unseen, lost after `_ADAPTIVE_STALE`
        seconds), and then holds nobody.
        """
        rate = self._adaptive_rate(state, now)
        ready = state.released_at + 1.0 / rate
        waiting = state.waiting
        while waiting:
            first, seen = next(iter(waiting.items()))
            if now - seen <= _ADAPTIVE_STALE:
                break
            del waiting[first]
        if place == 0:
            if ready <= now and not waiting:
                return now, 0
            state.issued += 1
            place = state.issued
        if place > 0:
            if waiting:
                ready += max(0, place - next(iter(waiting))) / rate
            waiting[place] = now
        return max(ready, now), place

    def _declared_slot(self, at: float, tokens: float) -> float:
        """The earliest time >= ``at`` at which one more attempt keeps the declared limit.

        Declared bookings are kept in time order (a booking never goes before an earlier
        one), so only the window ending at the new one needs checking. The window counted is
        ``per`` plus `RateLimit.margin`.
        """
        rate = self._rate
        assert rate is not None
        booked = self._declared
        per = self._window
        if booked:
            at = max(at, booked[-1][0])
        # Forget bookings that can no longer share a window with this one or a later one.
        while booked and booked[0][0] <= at - per:
            self._declared_tokens -= booked.popleft()[1]
        if len(booked) >= rate.requests:
            at = max(at, booked[len(booked) - rate.requests][0] + per)
        if rate.tokens is not None:
            need = min(tokens, float(rate.tokens))
            total = self._declared_tokens
            for when, spent in booked:
                if when > at - per and total + need <= rate.tokens:
                    break
                total -= spent
                at = max(at, when + per)
        return at

    # -- what responses say --------------------------------------------------------------

    def report(self, scope: Scope, seq: int, headroom: Mapping[str, Headroom], now: float) -> None:
        """Learn a response's rate-limit headers (the attempt booked as ``seq`` in ``scope``).

        A report older than one already learnt for the scope is ignored.
        """
        if not headroom or not self._headers:
            return
        state = self._state(scope, now, create=True)
        assert state is not None
        if seq and seq < state.reported:
            return
        if seq:
            state.reported = seq
        horizon = now
        for name, room in headroom.items():
            if room.remaining is None:
                continue
            dim = state.dims.get(name)
            if dim is None:
                dim = state.dims[name] = _Dimension()
            horizon = max(horizon, dim.learn(room, seq, now))
        if state.dims:
            state.truth_until = max(state.truth_until, horizon)
            state.rate = None  # header truth replaces the guesswork
            _remember(self._headed, scope.origin, self._max_scopes)

    def congestion(self, scope: Scope, now: float, sent_at: float, fallback_rate: float) -> bool:
        """A congestion signal (429, overload) for an attempt sent at ``sent_at``.

        Without header truth for the scope, cuts its adaptive rate to ``beta`` of what was
        being sent (``fallback_rate`` when this scope's own sending rate is not known yet).
        A signal for an attempt sent before the last cut is old news and changes nothing.
        Answers whether the scope's sending is now paced by its adaptive rate (then the rate,
        not a pause of the whole scope, is the answer to a congestion that named no wait).
        """
        state = self._state(scope, now, create=True)
        assert state is not None
        if now < state.truth_until:
            return False
        if sent_at < state.t_fail:
            return state.rate is not None
        # What the upstream accepted lately is the best guess of what it can take; what was
        # sent (429s included) is the next best.
        measured = self._rate_of(state.accepted, now)
        if measured is None:
            measured = self._measured(state, now)
        if measured is None:
            measured = fallback_rate
        if state.rate is not None:
            measured = min(measured, self._adaptive_rate(state, now))
        elif measured < 2.0 * self._min_rate:
            return False  # a trickle is not what congests an upstream: backoff alone paces it
        measured = max(measured, self._min_rate)
        state.w_max = measured
        state.rate = max(self._min_rate, measured * self._beta)
        state.t_fail = now
        state.k = ((state.w_max * (1.0 - self._beta)) / self._scale) ** (1.0 / 3.0)
        # The next release keeps the new spacing from now: the refusal is the last send.
        state.released_at = max(state.released_at, now)
        return True

    def success(self, scope: Scope, now: float) -> None:
        """An answer that was no congestion, for a scope under an adaptive rate."""
        state = self._scopes.get(scope)
        if state is not None and state.rate is not None:
            state.accepted.append(now)

    @staticmethod
    def _rate_of(times: deque[float], now: float) -> float | None:
        """Events per second in the last two seconds of ``times``, None with fewer than 4."""
        while times and now - times[0] > 2.0:
            times.popleft()
        if len(times) < 4:
            return None
        return len(times) / max(now - times[0], 0.25)

    @staticmethod
    def _measured(state: _ScopeState, now: float) -> float | None:
        """Attempts per second booked lately in the scope, or None with too few to tell."""
        recent = state.recent
        while recent and now - recent[0] > 2.0:
            recent.popleft()
        if len(recent) < 4:
            return None
        return len(recent) / max(now - recent[0], 0.25)

    def _adaptive_rate(self, state: _ScopeState, now: float) -> float:
        """The cubic curve: ``beta * w_max`` right after the cut, ``w_max`` at ``k`` seconds,
        growing faster beyond."""
        elapsed = now - state.t_fail - state.k
        cubic = self._scale * elapsed * elapsed * elapsed + state.w_max
        accepted = self._rate_of(state.accepted, now)
        if accepted is not None and elapsed > 0.0:
            # Past the old maximum, probe upward gently from what is being accepted.
            cubic = min(cubic, 1.5 * accepted + 1.0)
        return max(self._min_rate, cubic)

    # -- metrics -------------------------------------------------------------------------

    def headroom(self, now: float | None = None) -> list[ScopeHeadroom]:
        """What every scope with header truth has left, per dimension (no credentials).

        Given ``now``, scopes idle for longer than ``idle_ttl`` are forgotten first, so that
        they leave the metrics even when no request comes to drop them.
        """
        if now is not None:
            self._evict(now)
        rows = []
        for scope, state in self._scopes.items():
            for name, dim in state.dims.items():
                rows.append(
                    ScopeHeadroom(
                        scope.origin, scope.model, name, dim.limit, dim.remaining, dim.refill
                    )
                )
        return rows
