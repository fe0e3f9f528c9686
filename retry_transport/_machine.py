"""The retry loop, written once, as a sans-I/O state machine.

`RetryMachine.run` is a generator: it yields one action at a time (wait for the limiter, send,
read a chunk, close, block, spend a retry from the budget, report, sleep) and the driver
performs it, awaiting or blocking, and sends the result back in. It ends by yielding `Finish`
or `Fail`. No I/O, no sleeping, no logging, no shared state, no clock but the injected one:
every decision is testable without a network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ._classify import classify
from ._decoding import Decoder, decoder_for
from ._events import RetryEvent
from ._exceptions import Sent, meaning_of
from ._history import Attempt
from ._policy import RetryPolicy
from ._sse import CONTENT as _CONTENT
from ._sse import PreambleScanner, ScanKind, ScanResult
from ._stateful import is_stateful
from ._terminal import TerminalWatcher
from ._verdict import Classification, Outcome, Verdict
from ._waits import server_wait

__all__ = [
    "Action",
    "Block",
    "Close",
    "Fail",
    "Finish",
    "Gate",
    "Peeked",
    "Read",
    "Report",
    "RetryMachine",
    "Send",
    "Sleep",
    "Spend",
    "StreamFailure",
    "StreamPeek",
]

_NO_READ = object()  # no read result waiting to be looked at
STALLED = "stream stalled before its first content"
TRUNCATED = "stream truncated before its first content"


@dataclass(slots=True)
class Gate:
    """Ask the limiter whether the request may go now. Reply: seconds still to wait (0.0 means
    admitted, with a concurrency slot taken if the limiter caps concurrency; ``inf`` means no
    slot could be had within ``timeout``)."""

    timeout: float | None


@dataclass(slots=True)
class Send:
    """Send the request (rewinding its body first when ``resend``). Reply: the response or the
    exception raised. ``timeout`` caps the request's own timeouts (the deadline's remainder)."""

    resend: bool
    timeout: float | None


@dataclass(slots=True)
class Read:
    """Read the next chunk of the current response. Reply: bytes, ``None`` at the end of the
    body, or the exception raised. With a ``timeout`` (seconds, > 0), reply `Stalled` if no
    chunk came within it."""

    timeout: float | None = None


class Stalled:
    """The reply to a `Read` whose timeout passed before a chunk came."""


@dataclass(slots=True)
class StreamFailure:
    """Why a 200 event stream handed back must fail where its body is read: ``exception`` to
    raise as it came (with ``note`` added to it, if set), or else ``kind`` ("stall": the
    library's ``ReadTimeout``; "truncated": ``StreamTruncated``) with ``message``."""

    kind: Literal["stall", "truncated"]
    message: str
    exception: BaseException | None = None
    note: str | None = None


class StreamPeek:
    """A 200 event stream's start as it is read: the bytes held back, the preamble scanner and
    the final-event watcher fed them (the watcher sees the bytes as they came, so none for an
    encoded stream, whose ``decoder`` feeds the scanner). Pure: whoever reads the stream (the
    machine, or a driver's fast path) feeds it each chunk until it decides."""

    __slots__ = ("_decoder", "_limit", "_parts", "_scanner", "_size", "watcher")

    def __init__(self, limit: int, decoder: Decoder | None = None) -> None:
        self._limit = limit
        self._decoder = decoder
        self._scanner = PreambleScanner(limit)
        self._parts: list[bytes] = []
        self._size = 0
        self.watcher = TerminalWatcher() if decoder is None else None

    def feed(self, chunk: bytes) -> ScanResult | None:
        """Hold ``chunk``; what the start turned out to be (``CONTENT`` once ``limit`` bytes
        are held), or ``None`` to read on."""
        self._parts.append(chunk)
        self._size += len(chunk)
        watcher = self.watcher
        if watcher is not None:
            watcher.feed(chunk)
        decoder = self._decoder
        scan = self._scanner.feed(chunk if decoder is None else decoder.feed(chunk))
        if scan is None and self._size >= self._limit:
            return _CONTENT
        return scan

    def eof(self) -> ScanResult:
        """The body ended: what its start was."""
        return self._scanner.eof()

    @property
    def size(self) -> int:
        """How many bytes are held."""
        return self._size

    def held(self) -> bytes:
        """The bytes read so far, in order."""
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(slots=True)
class Peeked:
    """A first attempt's stream start, read by the driver's fast path: ``peek`` as fed so far,
    and ``outcome``, what ended the reading: the scanner's result, or the read's own (``None``
    at the end of the body, `Stalled`, or the exception raised)."""

    peek: StreamPeek
    outcome: object


@dataclass(slots=True)
class Close:
    """Close the current response (and give back its concurrency slot). Reply: ``None``."""


@dataclass(slots=True)
class Block:
    """Extend the limiter's shared block by ``seconds``. ``named``: the server named the
    wait (else it is the backoff's guess, which a pacing limiter may replace by slowing its
    rate). Reply: ``None``."""

    seconds: float
    named: bool = False


@dataclass(slots=True)
class Spend:
    """Spend one retry from the limiter's budget. Reply: True if it fits (the retry goes),
    False if the budget is spent (nothing spent; the machine gives up)."""


@dataclass(slots=True)
class Report:
    """Report a decision: log ``message % args`` at ``level`` on the ``retry_transport``
    logger (with ``exc_info`` when set), carrying the event's structured fields, and tell the
    transport's hooks of ``event`` when there is one. The driver fills in the event's
    ``blocked_for`` from its limiter. Reply: ``None``."""

    level: int
    message: str
    args: tuple[object, ...]
    event: RetryEvent | None = None
    exc_info: BaseException | None = None


@dataclass(slots=True)
class Sleep:
    """Wait ``seconds``. Reply: ``None``."""

    seconds: float


@dataclass(slots=True)
class Finish:
    """Hand ``response`` back. ``held`` are body bytes already read from it, to be replayed in
    front of the rest; when ``closed`` the response was closed earlier and ``held`` is its
    whole body. ``mark`` asks for the give-up header. With ``failure``, the response's own
    stream is closed and reading the replacement fails after ``held``; with ``watcher``, the
    rest of the stream is watched for its final event (fed ``held`` already)."""

    response: Any
    held: bytes
    closed: bool
    mark: bool
    history: tuple[Attempt, ...]
    failure: StreamFailure | None = None
    watcher: TerminalWatcher | None = None


@dataclass(slots=True)
class Fail:
    """Raise ``exception``; ``None`` means the deadline passed before an attempt could be sent,
    and the driver raises the flavour's deadline error instead."""

    exception: BaseException | None
    history: tuple[Attempt, ...]


Action = Gate | Send | Read | Close | Block | Spend | Report | Sleep | Finish | Fail


class Plan(NamedTuple):
    """What follows a failed attempt, as `RetryMachine` decides it (before the budget)."""

    wait: float | None
    """Seconds before the next attempt (``None``: no retry could follow at all)."""
    named: bool
    """Whether the server named the wait (Retry-After and its kin)."""
    stop: str | None
    """Why there is no next attempt, or ``None`` if there is one."""
    give_up: bool
    """Whether stopping is a give-up (a retryable failure handed back), not a plain answer."""


@dataclass(slots=True)
class _Seen:
    """What one attempt produced, as far as the machine looked."""

    response: Any = None
    status: int | None = None
    exception: BaseException | None = None
    classification: Classification | None = None
    held: bytes = b""
    complete: bool = False
    mid_response: bool = False
    failure: StreamFailure | None = None
    watcher: TerminalWatcher | None = None


class RetryMachine:
    """One logical request's retry loop. Create one per request; call `run` once."""

    __slots__ = (
        "_clock",
        "_hold_streams",
        "_idempotent",
        "_method",
        "_name",
        "_path",
        "_policy",
        "_random",
        "_replayable",
        "_url",
        "_waited",
        "_wall_clock",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        method: str,
        url: str,
        idempotency_key: bool,
        replayable: bool,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        random: Callable[[], float],
        name: str | None = None,
        path: str = "",
    ) -> None:
        self._policy = policy
        self._name = name
        self._method = method
        self._url = url
        self._path = path
        self._idempotent = idempotency_key or method.upper() in policy.idempotent_methods
        # A generation's event stream answers a POST; a GET's (an event subscription, a
        # stream resumed) may say nothing for minutes and is handed on at once, untouched.
        self._hold_streams = policy.peek_sse and method.upper() == "POST"
        self._replayable = replayable
        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random
        self._waited = 0.0  # seconds the attempt being made waited before it was sent

    # -- classification -------------------------------------------------------------------

    def _classify(self, outcome: Outcome) -> Generator[Action, Any, Classification]:
        custom = self._policy.classifier
        if custom is not None:
            try:
                verdict = custom(outcome)
            except Exception as exc:
                yield Report(
                    logging.ERROR,
                    "retry_transport: the custom classifier raised; using the default",
                    (),
                    exc_info=exc,
                )
                verdict = None
            if verdict is not None:
                return verdict
        return classify(outcome)

    @staticmethod
    def _apply_should_retry(
        classification: Classification, headers: Mapping[str, str]
    ) -> Classification:
        value = headers.get("x-should-retry")
        if value is None:
            return classification
        value = value.strip().lower()
        if value == "false":
            return Classification(Verdict.FATAL, "x-should-retry: false", classification.wait)
        if value == "true" and classification.verdict in (Verdict.FATAL, Verdict.UNRECOGNISED):
            return Classification(Verdict.TRANSIENT, "x-should-retry: true", classification.wait)
        return classification

    def _resend_refusal(
        self, exc: BaseException | None, mid_response: bool, status: int | None, named: bool
    ) -> str | None:
        """Why the request must not be sent again after this outcome, or ``None``."""
        meaning = None if exc is None else meaning_of(exc)
        sent = None if meaning is None else meaning.sent
        if sent is Sent.NOTHING:
            return None  # nothing was sent
        if not self._replayable:
            return "request body cannot be replayed"
        if self._idempotent:
            return None
        unsafe = mid_response or sent is Sent.MAYBE_PROCESSED
        if unsafe and not self._policy.retry_read_errors:
            return f"{self._method} may have been processed (no Idempotency-Key)"
        # A refusal that proves the request did nothing: a 429, or an overload naming its wait.
        refused = status == 429 or (named and status is not None and status >= 500)
        if not refused and is_stateful(self._path, self._policy.stateful_paths):
            return f"{self._method} to a path that creates server-side state (no Idempotency-Key)"
        return None

    # -- the loop -------------------------------------------------------------------------

    def run(
        self, first: object = None, start: float | None = None, peeked: Peeked | None = None
    ) -> Generator[Action, Any, None]:
        """The loop. ``first`` is the first attempt's result when the driver already sent it;
        ``start`` is then the clock reading taken before that attempt (the deadline counts from
        it), ``None`` meaning now; ``peeked``, the start of its 200 event stream as far as the
        driver read it (the machine goes on from there). The last action yielded is a `Finish`
        or a `Fail`, after which the driver does not resume the generator."""
        final = yield from self._loop(first, start, peeked)
        yield final

    def _loop(
        self, first: object, start: float | None, peeked: Peeked | None
    ) -> Generator[Action, Any, Finish | Fail]:
        policy = self._policy
        clock = self._clock
        start = clock() if start is None else start
        deadline = None if policy.deadline is None else start + policy.deadline
        history: list[Attempt] = []
        attempt = 0
        result = first
        # The last response closed before a retry, with its whole body, so that it can still
        # be handed back if the next attempt cannot be made.
        last_closed: tuple[Any, bytes, StreamFailure | None] | None = None
        sent = start
        last_exception: BaseException | None = None
        last_classification: Classification | None = None

        while True:
            if result is None:
                admitted = yield from self._admit(deadline)
                if not admitted:
                    yield from self._give_up(
                        attempt, last_classification, "deadline reached while waiting to send"
                    )
                    if last_closed is not None:
                        response, body, failure = last_closed
                        mark = response.status_code >= 400
                        return Finish(response, body, True, mark, tuple(history), failure)
                    return Fail(last_exception, tuple(history))
                sent = clock()
                remaining = None if deadline is None else max(deadline - sent, 0.0)
                result = yield Send(attempt > 0, remaining)
            attempt += 1
            seen = yield from self._examine(result, deadline, sent, peeked)
            peeked = None
            now = clock()
            if seen.classification is None:  # a success, or a stream with content coming
                history.append(
                    Attempt(
                        attempt, seen.status, None, None, "success", None, now - start, self._waited
                    )
                )
                return Finish(
                    seen.response, seen.held, False, False, tuple(history), watcher=seen.watcher
                )
            classification = seen.classification
            verdict = classification.verdict
            wait, named, stop, give_up = self._plan(attempt, seen, classification, now, deadline)
            if stop is None and not (yield Spend()):
                stop = "retry budget spent"

            # Congestion pauses everyone sharing the limiter: for the wait the server named, or
            # for this retry's backoff, at most one base interval. This request's own backoff
            # grows with its attempts but says nothing about when the upstream recovers; let
            # it grow the shared pause and, in an outage, every caller waits behind ever longer
            # blocks instead of getting its answer. For the same reason a request that stops
            # here without a named wait blocks nobody.
            if verdict is Verdict.CONGESTION and wait and (stop is None or named):
                yield Block(wait if named else min(wait, policy.congestion_backoff.base), named)

            if stop is not None:
                history.append(self._record(attempt, seen, classification, None, now - start))
                if give_up:
                    yield from self._give_up(attempt, classification, stop, seen)
                else:
                    yield Report(
                        logging.DEBUG, "not retrying %s %s: %s", (self._method, self._url, stop)
                    )
                if seen.failure is not None:  # the 200 stream, failing where it would have
                    return Finish(
                        seen.response, seen.held, True, False, tuple(history), seen.failure
                    )
                if seen.exception is not None:
                    return Fail(seen.exception, tuple(history))
                mark = seen.status is not None and seen.status >= 400
                return Finish(seen.response, seen.held, False, mark, tuple(history))

            assert wait is not None
            history.append(self._record(attempt, seen, classification, wait, now - start))
            event = self._event("retry", attempt, classification, classification.reason, wait, seen)
            yield Report(
                logging.INFO,
                "retrying %s %s in %.2fs (attempt %d/%d, %s: %s)",
                (
                    self._method,
                    self._url,
                    wait,
                    attempt,
                    policy.max_attempts,
                    verdict.value,
                    classification.reason,
                ),
                event,
            )
            last_classification = classification
            if seen.response is not None:
                yield Close()
                whole = seen.complete or seen.failure is not None
                last_closed = (seen.response, seen.held, seen.failure) if whole else None
                last_exception = None
            else:
                last_closed = None
                last_exception = seen.exception
            yield Sleep(wait)
            result = None

    def _admit(self, deadline: float | None) -> Generator[Action, Any, bool]:
        """Wait out the limiter; False if that would leave no time before the deadline."""
        clock = self._clock
        self._waited = 0.0
        while True:
            remaining = None if deadline is None else deadline - clock()
            if remaining is not None and remaining <= 0.0:
                # No time left to send in: a zero timeout makes the HTTP library fail at once
                # (after writing the request, so the upstream may still act on it).
                return False
            wait: float = yield Gate(remaining)
            if wait <= 0:
                return True
            if deadline is not None and clock() + wait >= deadline:
                return False
            self._waited += wait
            yield Sleep(wait)

    def _examine(
        self, result: object, deadline: float | None, sent: float, peeked: Peeked | None = None
    ) -> Generator[Action, Any, _Seen]:
        """Classify one attempt's result, peeking at its body when needed."""
        if isinstance(result, BaseException):
            outcome = Outcome(self._method, self._url, exception=result)
            classification = yield from self._classify(outcome)
            return _Seen(exception=result, classification=classification)
        response: Any = result
        status: int = response.status_code
        headers: Mapping[str, str] = response.headers
        if peeked is not None:
            seen = yield from self._peek_stream(response, headers, deadline, sent, peeked)
        elif status < 400:
            content_type: str = headers.get("content-type", "")
            if not (
                self._hold_streams
                and status == 200
                and content_type.lower().startswith("text/event-stream")
            ):
                return _Seen(response=response, status=status)
            seen = yield from self._peek_stream(response, headers, deadline, sent)
        else:
            seen = yield from self._peek_error(response, headers, deadline)
        if seen.classification is not None:
            seen.classification = self._apply_should_retry(seen.classification, headers)
        return seen

    def _peek_stream(
        self,
        response: Any,
        headers: Mapping[str, str],
        deadline: float | None,
        sent: float,
        peeked: Peeked | None = None,
    ) -> Generator[Action, Any, _Seen]:
        """Hold a 200 event stream's preamble until content, an error event, the end, the
        first-content deadline or the deadline (no retry could follow it: the held bytes are
        then handed on). A stream that stalls, or ends or breaks before its content, fails.
        With ``peeked``, the driver read its start already: go on from there."""
        policy = self._policy
        clock = self._clock
        seen = _Seen(response=response, status=response.status_code)
        scan: ScanResult | None = None
        pending: object = _NO_READ
        if peeked is None:
            decoder = decoder_for(headers, policy.peek_limit)
            if decoder is not None and not decoder.decodable:
                return seen  # an encoding we cannot read: hand the stream on untouched
            peek = StreamPeek(policy.peek_limit, decoder)
        else:
            peek = peeked.peek
            if isinstance(peeked.outcome, ScanResult):
                scan = peeked.outcome
            else:
                pending = peeked.outcome
        watcher = peek.watcher
        first = policy.first_content_timeout
        stall_at = None if first is None else sent + first
        if deadline is not None and (stall_at is None or deadline < stall_at):
            stall_at = deadline
        chunk: Any
        while scan is None:
            if pending is not _NO_READ:
                chunk, pending = pending, _NO_READ
            else:
                timeout = None if stall_at is None else stall_at - clock()
                chunk = Stalled() if timeout is not None and timeout <= 0 else (yield Read(timeout))
            if chunk is None:
                scan = peek.eof()
                seen.complete = True
            elif isinstance(chunk, Stalled):
                if deadline is not None and clock() >= deadline and peek.size:
                    scan = _CONTENT  # what came is handed on
                    break
                seen.failure = StreamFailure("stall", self._stall_message(deadline))
                break
            elif isinstance(chunk, BaseException):
                seen.exception = chunk
                seen.failure = self._broken(chunk, watcher)
                break
            else:
                scan = peek.feed(chunk)
                if scan is None and deadline is not None and clock() >= deadline:
                    scan = _CONTENT
        seen.held = peek.held()
        if seen.failure is not None:
            reason = STALLED if seen.failure.kind == "stall" else TRUNCATED
            seen.classification = Classification(Verdict.TRANSIENT, reason)
            return seen
        assert scan is not None
        if scan.kind is ScanKind.ERROR:
            outcome = Outcome(
                self._method,
                self._url,
                status=seen.status,
                headers=_lower(headers),
                body=scan.payload,
                stream_error=True,
            )
            seen.classification = yield from self._classify(outcome)
            return seen
        missing = None if watcher is None or scan.kind is ScanKind.CONTENT else watcher.missing()
        if missing is not None:  # ended before its content and without its final event
            seen.failure = StreamFailure("truncated", missing)
            seen.classification = Classification(Verdict.TRANSIENT, TRUNCATED)
        elif watcher is not None and watcher.watching and scan.kind is ScanKind.CONTENT:
            seen.watcher = watcher
        return seen

    def _stall_message(self, deadline: float | None) -> str:
        first = self._policy.first_content_timeout
        if deadline is not None and (first is None or deadline <= self._clock()):
            return "retry_transport: the deadline passed before the stream's first content"
        return f"retry_transport: no content within first_content_timeout ({first:g}s)"

    @staticmethod
    def _broken(exc: BaseException, watcher: TerminalWatcher | None) -> StreamFailure:
        """A read error before content: a stall if it is a timeout, else a truncation. Either
        way the error is raised as it came (as it would be without the transport), noted with
        the final event a recognised protocol's stream lacked."""
        if any(cls.__name__ == "TimeoutException" for cls in type(exc).__mro__):
            return StreamFailure("stall", str(exc), exc)
        missing = None if watcher is None else watcher.missing()
        return StreamFailure("truncated", str(exc), exc, missing)

    def _peek_error(
        self, response: Any, headers: Mapping[str, str], deadline: float | None
    ) -> Generator[Action, Any, _Seen]:
        """Read up to ``peek_limit`` bytes of an error body (less if the deadline passes: a
        trickling body must not hold the request past it) and classify what was read."""
        limit = self._policy.peek_limit
        parts: list[bytes] = []
        size = 0
        seen = _Seen(response=response, status=response.status_code)
        while size < limit:
            chunk = yield Read()
            if chunk is None:
                seen.complete = True
                break
            if isinstance(chunk, BaseException):
                seen.exception = chunk  # classified by what arrived; raised if we stop
                break
            parts.append(chunk)
            size += len(chunk)
            if deadline is not None and self._clock() >= deadline:
                break
        seen.held = b"".join(parts)
        decoder = decoder_for(headers, limit)
        body = seen.held[:limit] if decoder is None else decoder.feed(seen.held)
        outcome = Outcome(
            self._method, self._url, status=seen.status, headers=_lower(headers), body=body
        )
        seen.classification = yield from self._classify(outcome)
        return seen

    def _plan(
        self,
        attempt: int,
        seen: _Seen,
        classification: Classification,
        now: float,
        deadline: float | None,
    ) -> Plan:
        """What follows this attempt; the budget is asked afterwards, by a `Spend` action."""
        policy = self._policy
        verdict = classification.verdict
        if not verdict.retryable:
            return Plan(None, False, classification.reason, False)
        wait = None
        if seen.response is not None:
            wait = server_wait(seen.response.headers, now=self._wall_clock())
        if wait is None:
            wait = classification.wait
        named = wait is not None
        if wait is not None and wait > policy.max_retry_after:
            return Plan(None, True, f"server asked to wait {wait:g}s, above max_retry_after", False)
        if wait is None:
            backoff = (
                policy.congestion_backoff
                if verdict is Verdict.CONGESTION
                else policy.transient_backoff
            )
            wait = backoff.delay(attempt, self._random)
        if attempt >= policy.max_attempts:
            return Plan(wait, named, f"{policy.max_attempts} attempts made", True)
        if verdict is Verdict.UNRECOGNISED and attempt >= policy.unclassified_400_attempts:
            tries = policy.unclassified_400_attempts
            return Plan(wait, named, f"{tries} attempts made at an unrecognised 400", True)
        if classification.attempts is not None and attempt >= classification.attempts:
            return Plan(
                wait,
                named,
                f"{classification.attempts} attempts made ({classification.reason})",
                True,
            )
        refusal = self._resend_refusal(
            seen.exception if seen.response is None else None,
            seen.mid_response,
            seen.status,
            named,
        )
        if refusal is not None:
            return Plan(wait, named, refusal, True)
        if deadline is not None and now + wait >= deadline:  # no time left to send in after it
            return Plan(wait, named, "deadline reached", True)
        return Plan(wait, named, None, True)

    # -- reporting ------------------------------------------------------------------------

    def _record(
        self,
        attempt: int,
        seen: _Seen,
        classification: Classification,
        delay: float | None,
        elapsed: float,
    ) -> Attempt:
        return Attempt(
            number=attempt,
            status=seen.status,
            exception=None if seen.exception is None else type(seen.exception).__name__,
            verdict=classification.verdict,
            reason=classification.reason,
            delay=delay,
            elapsed=elapsed,
            paced=self._waited,
        )

    def _event(
        self,
        kind: Literal["retry", "give_up"],
        attempt: int,
        classification: Classification | None,
        reason: str,
        delay: float | None,
        seen: _Seen | None,
    ) -> RetryEvent:
        exception = None if seen is None else seen.exception
        return RetryEvent(
            kind=kind,
            method=self._method,
            url=self._url,
            attempt=attempt,
            max_attempts=self._policy.max_attempts,
            verdict=None if classification is None else classification.verdict,
            reason=reason,
            delay=delay,
            status=None if seen is None else seen.status,
            exception=None if exception is None else type(exception).__name__,
            blocked_for=0.0,  # the driver's to fill in: only the limiter knows
            transport_name=self._name,
            paced=self._waited,
            cause="" if classification is None else classification.reason,
        )

    def _give_up(
        self,
        attempt: int,
        classification: Classification | None,
        why: str,
        seen: _Seen | None = None,
    ) -> Generator[Action, Any, None]:
        """Report that a retryable failure is handed back."""
        event = self._event("give_up", attempt, classification, why, None, seen)
        yield Report(
            logging.WARNING,
            "giving up on %s %s after %d attempt(s): %s%s",
            (
                self._method,
                self._url,
                attempt,
                why,
                "" if classification is None else f" (last: {classification.reason})",
            ),
            event,
        )


def _lower(headers: Any) -> Mapping[str, str]:
    """Header names lower-cased (httpx's ``items()`` already yields them so)."""
    return {key.lower(): value for key, value in headers.items()}
