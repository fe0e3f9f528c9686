"""The pacing desk of a limiter: scopes, tickets and the pacer, with no I/O.

A `Ticket` follows one logical request through its attempts: its scope, its estimated cost,
the booking of the attempt about to be sent, and what the last answer said. The `Desk` turns
requests into tickets, books attempts with the `Pacer`, learns each answer's rate-limit
headers and keeps the per-scope blocks' local record. The limiter holds it and does the I/O
(a store elsewhere) around it.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ._gate import FastGate
from ._pacing import Pacer, RateLimit, Reservation, ScopeHeadroom
from ._ratelimit_headers import RATE_LIMIT_NAMES, parse_headroom, rate_limit_pairs
from ._scope import CostEstimate, Fingerprinter, Scope, estimate_cost, scope_of

__all__ = ["Desk", "Ticket"]

# Statuses whose congestion belongs to the key and model (rate limits, per-model overload);
# any other congestion (a 5xx outage) slows the whole origin.
_SCOPED_STATUSES = frozenset({429, 529})
_MAX_BLOCKS = 4096
_MAX_POLLS = 40  # looks (of 50 ms) a request gives a new origin's first attempt to answer
_LOWER_NAME = itemgetter(1)  # of a raw header entry (name, lower-case name, value)
# The fewest attempts a report's headroom must leave room for before the gate opens on it.
_MIN_RUN = 8
# Seconds of a scope's pace that may go at once through the gate (and that its credit holds).
_BURST = 1.0
# The longest run between two scans while the gate's ceiling bounds what header truth allows
# (the ceiling, not the scans, keeps the runs within the headroom).
_HEADROOM_RUN = 1024


class Ticket:
    """One logical request as the limiter's pacing sees it."""

    __slots__ = (
        "booking",
        "cost",
        "held",
        "keys",
        "mark",
        "origin_key",
        "paced",
        "paced_by",
        "polls",
        "queue",
        "scope",
        "scopes",
        "sent_at",
        "seq",
        "shared",
        "status",
    )

    def __init__(self, scope: Scope, cost: CostEstimate, prefix: str) -> None:
        self.scope = scope
        self.scopes = (scope, scope.origin_scope)
        self.cost = cost
        self.keys = (
            f"{prefix}|{scope.origin}|{scope.key}|{scope.model}",
            f"{prefix}|{scope.origin}",
        )
        self.origin_key = self.keys[1]
        self.booking: Reservation | None = None
        self.held: Reservation | None = None  # the booking as the pacer made it
        self.shared: str | None = None  # its booking in a fleet's declared window, if any
        self.paced = 0.0  # seconds waited for pacing before the current attempt
        self.paced_by = ""
        self.sent_at = -math.inf
        self.seq = 0  # the booking of the attempt last sent
        self.polls = 0  # looks while another attempt probed a new origin
        self.queue = 0  # the place held in its scope's adaptive queue (0: none)
        self.status: int | None = None
        # The fast path's answers when the attempt last sent went (None: not known).
        self.mark: int | None = None


def _origin(url: Any) -> str:
    port = url.port
    host = url.host
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}{'' if port is None else f':{port}'}"


def _body(request: Any) -> bytes | None:
    try:
        body = request.content
    except Exception:  # a streamed body not read: no model, no token estimate from it
        return None
    return body if isinstance(body, bytes) else None


def _raw_headers(headers: Any) -> list[tuple[bytes, bytes, bytes]]:
    raw = getattr(headers, "_list", None)
    if raw is not None:
        return list(raw)
    return [
        (k.encode("latin-1"), k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in headers.items()
    ]


class Desk:
    """Pacing state of one limiter. Thread-safe: every change is made under one lock.

    Args:
        rate: the declared limit, or None.
        headers: pace from the providers' rate-limit headers (and adapt where none come).
        prefix: the limiter's scope name, put in front of every scope's store key.
        clock: monotonic time; wall_clock: POSIX time (for RFC 3339 resets).
        fingerprint_key: the key of the credential fingerprints (None: a random one).
        gate: the limiter's fast-path gate, closed whenever the desk may hold a request
            (`busy`, `blocking`); None: one of its own.

    A scope the desk has never seen cannot be told apart on the fast path: while the gate is
    open on the known scopes' headroom (`_settle`), that scope's first attempts go unbooked
    up to the gate's ceiling, whatever its own limits. A burst of them sent before any
    answer: at most ``ceiling - used``, so at most the known scopes' room above their
    reserve and `_BURST` seconds of their slowest pace (about 30 when 900 of 1000 requests
    are left and 6 s to their reset); one at a time: at most what it has left and one more,
    refused. Its first 429 (or a scanned admission's report of its headroom) makes the scope
    known; from then on its room counts in the ceiling like any other's, and while that room
    is under `_MIN_RUN` attempts (always, for a limit that small, until the scope is
    forgotten) the desk stays `busy` and the gate shut for every scope.
    """

    def __init__(
        self,
        rate: RateLimit | None,
        *,
        headers: bool,
        prefix: str,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        fingerprint_key: bytes | None = None,
        gate: FastGate | None = None,
    ) -> None:
        self._gate = self.fast_gate = FastGate() if gate is None else gate
        self._cap = self._gate.cap
        self._busy = self._blocking = False
        self._pacer = Pacer(rate, headers=headers)
        self._headers = headers
        self._prefix = prefix
        self._clock = clock
        self._wall_clock = wall_clock
        self._fingerprint = Fingerprinter(fingerprint_key)
        self._lock = threading.Lock()
        self._blocks: dict[str, float] = {}
        # Attempts the gate may still let through at the scopes' pace (see `_settle`).
        self._credit = math.inf  # full: the first report allows a burst's worth
        self._credit_at = -math.inf
        self._credit_used = 0
        # Until the first request has been answered, every request takes the slow path: the
        # first one may tell the headroom, and the others wait a moment for it.
        self.busy = headers or rate is not None
        self.blocked_until = -math.inf  # the latest end of any scope's block
        self.blocking = False  # a scope's block was recorded and has not been seen to end

    @property
    def busy(self) -> bool:
        """Whether pacing may have something to say about a request (every request then
        takes the slow path, with a ticket). Set True, it closes the fast-path gate."""
        return self._busy

    @busy.setter
    def busy(self, value: bool) -> None:
        self._busy = value
        if value:
            self._gate.close()

    @property
    def blocking(self) -> bool:
        """Whether a scope's block was recorded and has not been seen to end. Set True, it
        closes the fast-path gate."""
        return self._blocking

    @blocking.setter
    def blocking(self, value: bool) -> None:
        self._blocking = value
        if value:
            self._gate.close()

    @property
    def pacer(self) -> Pacer:
        """The pure pacing state (for tests and metrics)."""
        return self._pacer

    def done(self, ticket: Ticket) -> None:
        """The ticket's request is over: if its attempt was never answered (cancelled), stop
        holding others for it; if it still held a place in its scope's adaptive queue, give
        that back."""
        if ticket.sent_at > -math.inf and ticket.status is None and self._headers:
            self.answered(ticket)
        if ticket.queue:
            with self._lock:
                self._pacer.leave(ticket.scope, ticket.queue)
            ticket.queue = 0
        if ticket.booking is not None:
            self.cancel(ticket)  # booked, never sent: its place is free again

    def late(self, ticket: Ticket) -> bool:
        """Whether the ticket's attempt, if it went now, would go later than its booking
        allows (held past it by a block or a slot wait): then it must be booked again."""
        booking = ticket.booking
        return booking is not None and self._clock() > booking.at + booking.grace

    def cancel(self, ticket: Ticket) -> None:
        """Give back the ticket's booking (its attempt will not go on it)."""
        held = ticket.held
        assert held is not None  # set with every booking
        ticket.booking = ticket.held = None
        with self._lock:
            self._pacer.cancel(ticket.scopes, ticket.cost, held)

    def answered(self, ticket: Ticket) -> None:
        """The ticket's attempt ended without an answer (an exception): its origin is known."""
        with self._lock:
            self._pacer.answered(ticket.scope.origin, ticket.scope)
            self._settle(self._clock(), None)

    def _settle(self, now: float, mark: int | None) -> None:
        """Close the fast-path gate if pacing may hold a request, or open it (``busy``
        False) for as many attempts without a booking as the headroom allows. Under the lock.

        The rule: with header truth and nothing else pacing, attempts may go unbooked while
        ``gate.used`` stays under ``gate.ceiling``. A fresh report (``mark``: the fast path's
        answers when its attempt went, every one of which it covers) sets the ceiling to
        ``mark + room``: the attempts admitted but unanswered when that attempt went, and every
        one admitted since, together never exceed ``room`` (what every scope can take above its
        reserve, `Pacer.allowance`). It is also no more than ``used + credit``, the credit
        growing at the slowest scope's pace up to `_BURST` seconds of it (each booking takes one
        off it and the ceiling), so runs keep that pace rather than drain the headroom in a
        burst. Any other event only lowers the ceiling. The
        gate closes (every request takes a ticket) once fewer than `_MIN_RUN` attempts fit.
        """
        gate = self._gate
        pacer = self._pacer
        if pacer.idle:
            gate.ceiling = math.inf
            gate.cap = self._cap
            self.busy = False
            return
        gate.cap = max(self._cap, _HEADROOM_RUN)
        room, rate = pacer.allowance(now)
        used = gate.used
        spent = used - self._credit_used
        self._credit_used = used
        credit = self._credit - spent
        if rate > 0.0:  # (while something else paces, the credit waits as it is)
            credit = min(credit + rate * max(0.0, now - self._credit_at), rate * _BURST)
        self._credit = credit
        self._credit_at = now
        ceiling = min(gate.ceiling, used + room) if mark is None else mark + room
        ceiling = min(ceiling, used + max(credit, 0.0))
        if ceiling < math.inf:
            ceiling = math.floor(ceiling)  # whole attempts
        gate.ceiling = ceiling
        if gate.limit > ceiling:
            gate.limit = int(ceiling)  # a run opened before this report ends at its ceiling
        self.busy = used + _MIN_RUN > ceiling

    def ticket(self, request: Any) -> Ticket:
        """The ticket of one logical request."""
        url = request.url
        body = _body(request)
        query_key = b""
        query = url.query
        if query and b"key=" in query:
            for part in query.split(b"&"):
                if part.startswith(b"key="):
                    query_key = part[4:]
        scope = scope_of(
            _origin(url),
            url.raw_path,
            _raw_headers(request.headers),
            body,
            self._fingerprint,
            query_key,
        )
        return Ticket(scope, estimate_cost(body), self._prefix)

    # -- blocks per scope -----------------------------------------------------------------

    def block_wait(self, ticket: Ticket) -> float:
        """Seconds left of the block on the ticket's scope, or (for a retry) its origin."""
        now = self._clock()
        if now >= self.blocked_until:
            return 0.0
        blocks = self._blocks
        until = blocks.get(ticket.keys[0], -math.inf)
        if ticket.sent_at > -math.inf:
            # An origin's block (an outage) holds retries; first attempts still go, each
            # answered at once, as the retry budget caps what the outage costs upstream.
            until = max(until, blocks.get(ticket.keys[1], -math.inf))
        return max(0.0, until - now)

    def note_any_block(self, left: float | None) -> None:
        """Learn that some scope of the fleet is blocked for ``left`` seconds: shown by
        `SharedLimiter.blocked_for`, holding no request (only its own scope's block does)."""
        if left is None or not 0.0 < left < math.inf:
            return
        with self._lock:
            until = self._clock() + left
            if until > self.blocked_until:
                self.blocked_until = until
                self.blocking = True

    def block_over(self) -> bool:
        """Whether every scope's block has ended (then noted, so the fast path skips this)."""
        if self._clock() < self.blocked_until:
            return False
        with self._lock:
            if self._clock() < self.blocked_until:
                return False
            self.blocking = False
        return True

    def block_key(self, ticket: Ticket) -> str:
        """The store key a congestion block after the ticket's last answer belongs to."""
        return ticket.keys[0] if ticket.status in _SCOPED_STATUSES else ticket.keys[1]

    def record_block(self, key: str, seconds: float) -> None:
        """Keep locally that ``key`` is blocked for ``seconds`` from now (only ever longer)."""
        if not 0.0 < seconds < math.inf:
            return
        with self._lock:
            now = self._clock()
            until = now + seconds
            blocks = self._blocks
            if until > blocks.get(key, -math.inf):
                blocks[key] = until
            if until > self.blocked_until:
                self.blocked_until = until
            self.blocking = True
            if len(blocks) > _MAX_BLOCKS:
                for stale in [k for k, v in blocks.items() if v <= now]:
                    del blocks[stale]
                while len(blocks) > _MAX_BLOCKS:
                    del blocks[next(iter(blocks))]

    # -- pacing ---------------------------------------------------------------------------

    def pace(self, ticket: Ticket, timeout: float | None) -> float:
        """Seconds the ticket's next attempt must still wait to keep the pace (0.0: go).

        The first call for an attempt books it; later calls answer what is left of the wait,
        until the booking's time has passed by more than its grace (a block or a slot wait
        held the attempt): then it is given back and the attempt booked anew, for the moment
        it can actually go, so that what the pacing counts is when attempts are sent.
        ``inf`` when it could not go within ``timeout`` seconds (nothing is then booked).
        """
        now = self._clock()
        booking = ticket.booking
        if booking is not None:
            if now <= booking.at + booking.grace:
                return max(0.0, booking.at - now)
            self.cancel(ticket)
        deadline = None if timeout is None else now + timeout
        with self._lock:
            if ticket.sent_at > -math.inf:
                # A retry: its first attempt has ended, so the origin has answered somehow.
                self._pacer.answered(ticket.scope.origin, ticket.scope)
            patient = ticket.polls < _MAX_POLLS
            booking = self._pacer.reserve(
                ticket.scopes, ticket.cost, now, deadline, patient=patient, queue=ticket.queue
            )
            if booking.booked and booking.wait < math.inf:
                # Booked in its scopes' levels and pace, and so taken off the room and the
                # credit of unbooked ones: together they keep the pace.
                self._gate.ceiling -= 1
                self._credit -= 1.0
            self._settle(now, None)
        if booking.booked and booking.wait < math.inf:
            ticket.booking = ticket.held = booking
            ticket.queue = 0
        elif booking.queue:
            ticket.queue = booking.queue  # held back by the adaptive rate: look again later
        elif not booking.booked:
            ticket.polls += 1
        if booking.wait > 0.0 and booking.wait < math.inf:
            ticket.paced += booking.wait
            ticket.paced_by = booking.paced_by
        return booking.wait

    def sent(self, ticket: Ticket) -> None:
        """The ticket's attempt is on its way: the next attempt books anew."""
        booking = ticket.booking
        if booking is None:
            ticket.sent_at, ticket.seq = self._clock(), 0
        else:
            ticket.sent_at, ticket.seq = booking.at, booking.seq
        ticket.booking = ticket.held = None
        ticket.shared = None
        ticket.mark = self._gate.answered

    def observe(self, ticket: Ticket, response: Any) -> None:
        """Learn what an answer to the ticket's attempt says of its scope's headroom."""
        status = ticket.status = response.status_code
        if not self._headers:
            return
        pairs = rate_limit_pairs(_raw_headers(response.headers))
        now = self._clock()
        with self._lock:
            pacer = self._pacer
            pacer.answered(ticket.scope.origin, ticket.scope)
            if pairs:
                room = parse_headroom(pairs, now=now, wall_now=self._wall_clock())
                pacer.report(ticket.scope, ticket.seq, room, now)
            elif status not in _SCOPED_STATUSES and status < 500:
                pacer.success(ticket.scope, now)
                pacer.success(ticket.scope.origin_scope, now)
            self._settle(now, ticket.mark if pairs and status < 400 else None)

    def observe_fast(self, request: Any, response: Any, mark: int | None = None) -> None:
        """A success admitted without a ticket: look for rate-limit headers.

        The driver calls this for the success of a first attempt that the limiter's slow
        admission let through, the one in every run of its fast-path gate: one scan of the
        raw header names; only a response that has such headers costs a scope and a parse,
        and then its scope's headroom sets how many attempts the gate lets through next
        (`_settle`; too few, and the desk turns `busy`, closing the gate). ``mark`` is
        ``fast_gate.answered`` when the attempt went (None: not known, then the report can
        only close the gate).
        """
        if not self._headers:
            return
        raw = getattr(response.headers, "_list", None)
        # Whether any name is one the dialects read: one pass in C over the names.
        if (
            raw is None
            or RATE_LIMIT_NAMES.isdisjoint(map(_LOWER_NAME, raw))
            or rate_limit_pairs(raw) is None
        ):
            if self.busy and not self._pacer.idle:
                with self._lock:
                    scope = self.ticket(request).scope
                    self._pacer.answered(scope.origin, scope)
                    self._settle(self._clock(), None)
            return
        ticket = self.ticket(request)
        ticket.mark = mark
        self.observe(ticket, response)

    def congestion(self, ticket: Ticket, fallback_rate: float) -> bool:
        """A congestion verdict on the ticket's last answer: after a rate limit or an overload
        (429, 529), cut the adaptive rate of its scope. Answers whether that rate now paces
        the scope."""
        if not self._headers or ticket.status not in _SCOPED_STATUSES:
            # An outage (a 5xx) blocks the origin, but slowing its rate as well made every
            # caller wait far longer for the same answers: the retry budget caps its load.
            return False
        with self._lock:
            now = self._clock()
            adaptive = self._pacer.congestion(ticket.scope, now, ticket.sent_at, fallback_rate)
            self._settle(now, None)
        return adaptive

    def headroom(self) -> list[ScopeHeadroom]:
        """Per-scope headroom for metrics (origin and model, never the key); idle scopes are
        forgotten first."""
        with self._lock:
            return self._pacer.headroom(self._clock())


def default_fingerprint_key(name: str) -> bytes:
    """The fingerprint key processes sharing a limiter ``name`` agree on."""
    return hashlib.sha256(b"retry_transport fingerprint key\x00" + name.encode()).digest()
