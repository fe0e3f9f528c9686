"""What the async and sync drivers share: set-up, the per-request machine, the hand-back."""

from __future__ import annotations

import dataclasses
import logging
import random as _random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from ._desk import Desk
from ._events import Hook, RetryEvent
from ._flavour import Flavour, flavour_named, flavour_of, replay_plan, request_flavour
from ._gate import FastGate
from ._guard import StreamGuard
from ._history import Attempt
from ._limiter import Limiter, SharedLimiter
from ._machine import Fail, Finish, Report, RetryMachine, StreamFailure, StreamPeek
from ._policy import RetryPolicy
from ._switch import SWITCH
from ._types import HeadersLike, RequestLike, URLLike

__all__ = ["EVENT_STREAM", "JSON_TYPE", "PLAIN_TYPES", "DriverBase", "is_event_stream", "safe_url"]

logger = logging.getLogger("retry_transport")


# Control characters in a logged path are percent-encoded again, so a decoded ``%0d%0a`` in a
# request's path can never start a forged line in a log.
_CONTROL_ESCAPES = {code: f"%{code:02X}" for code in (*range(32), 127)}


def safe_url(url: URLLike) -> str:
    """Scheme, host, port and path of a URL: no user info, no query string (they may hold keys),
    and no raw control character."""
    port = url.port
    host = url.host
    if ":" in host:
        host = f"[{host}]"
    path = url.path.translate(_CONTROL_ESCAPES)
    return f"{url.scheme}://{host}{'' if port is None else f':{port}'}{path}"


EVENT_STREAM = b"text/event-stream"
# Content types a 200 on the fast path has most often: no event stream, without a closer look
# (the commonest by one compare, the others by one lookup).
JSON_TYPE = b"application/json"
PLAIN_TYPES = frozenset({b"application/json; charset=utf-8", b"application/x-ndjson"})


def is_event_stream(headers: HeadersLike) -> bool:
    """Whether response headers announce ``text/event-stream``.

    On the success path of every 200: it scans the raw (name, lower-case name, value) list that
    httpx and httpx2 keep, rather than calling ``headers.get``, which first decodes every
    header to guess their encoding (~1.4 us, most of what this path would otherwise cost).
    """
    try:
        raw = headers._list
    except AttributeError:
        content_type = headers.get("content-type", "") or ""
        return content_type.lower().startswith("text/event-stream")
    for entry in raw:  # indexing beats unpacking each entry here
        if entry[1] == b"content-type":
            return entry[2][:17].lower() == b"text/event-stream"
    return False


def _timeout_capped(request: Any, cap: float) -> None:
    timeouts = request.extensions.get("timeout")
    capped = {
        key: cap if value is None else min(value, cap)
        for key, value in (timeouts or dict.fromkeys(("connect", "read", "write", "pool"))).items()
    }
    request.extensions = {**request.extensions, "timeout": capped}


_LIMITER_METHODS = tuple(name for name in vars(Limiter) if not name.startswith("_"))


def _check_limiter(limiter: object) -> None:
    if limiter is None:
        return
    missing = [name for name in _LIMITER_METHODS if not callable(getattr(limiter, name, None))]
    if missing:
        raise TypeError(
            f"limiter must be a Limiter (a SharedLimiter, a RedisLimiter or an object with "
            f"the Limiter protocol's methods), got {limiter!r}, which lacks {', '.join(missing)}"
        )


class DriverBase:
    """Construction and the parts of request handling that do no I/O."""

    _flavour: Flavour
    _transport: Any
    _policy: RetryPolicy
    _limiter: Limiter
    _try_admit: Callable[[], bool]
    _gate: FastGate
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    _random: Callable[[], float]
    _byte_stream: type
    _peek_sse: bool
    _sse_status: int
    _deadline: float | None
    _first_content: float | None
    _peek_limit: int
    _hooks: tuple[Hook, ...]
    _paced: SharedLimiter | None
    _desk: Desk | None
    _name: str | None

    _is_async: bool = True

    def __new__(cls, transport: object = None, *args: object, **kwargs: object) -> Self:
        flavour = (
            flavour_named("httpx")
            if transport is None
            else flavour_of(transport, is_async=cls._is_async)
        )
        return object.__new__(flavour.transport_class(cls, is_async=cls._is_async))

    def _setup(
        self,
        transport: object,
        policy: RetryPolicy | None,
        limiter: Limiter | None,
        clock: Callable[[], float] | None,
        wall_clock: Callable[[], float] | None,
        random: Callable[[], float] | None,
        hooks: Sequence[Hook],
        name: str | None = None,
    ) -> None:
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise TypeError(f"policy must be a RetryPolicy, got {policy!r}")
        _check_limiter(limiter)
        for param, value in (("clock", clock), ("wall_clock", wall_clock), ("random", random)):
            if value is not None and not callable(value):
                raise TypeError(f"{param} must be a callable returning a float, got {value!r}")
        self._flavour = (
            flavour_named("httpx")
            if transport is None
            else flavour_of(transport, is_async=self._is_async)
        )
        self._transport = (
            self._flavour.default_transport(is_async=self._is_async)
            if transport is None
            else transport
        )
        self._policy = RetryPolicy() if policy is None else policy
        self._clock = time.monotonic if clock is None else clock
        self._wall_clock = time.time if wall_clock is None else wall_clock
        self._random = _random.random if random is None else random
        self._limiter = (
            SharedLimiter(clock=self._clock, random=self._random) if limiter is None else limiter
        )
        self._try_admit = self._limiter.try_admit  # bound once: it runs on the slow path
        # The fast path reads the limiter's gate; a limiter that admits some other way (its
        # own `try_admit`) gets a gate that stays closed, so `try_admit` sees every request.
        limiter = self._limiter
        # A deadline caps the first attempt's timeouts, which the fast path does not: a
        # transport with one always takes the limiter's admission (`_admit`).
        self._gate = (
            limiter.fast_gate
            if isinstance(limiter, SharedLimiter)
            and type(limiter).try_admit is SharedLimiter.try_admit
            and self._policy.deadline is None
            else FastGate()
        )
        self._byte_stream = self._flavour.byte_stream
        self._peek_sse = self._policy.peek_sse
        # The status whose content type the fast path checks for an event stream (none: -1).
        self._sse_status = 200 if self._peek_sse else -1
        self._deadline = self._policy.deadline
        self._first_content = self._policy.first_content_timeout
        self._peek_limit = self._policy.peek_limit
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        if name is not None and not name.strip():
            # An empty label would be no label on the log lines and metrics that carry it.
            raise ValueError(f"name must not be empty or blank, got {name!r}")
        self._name = name
        self._log_extra: dict[str, object] = {} if name is None else {"retry_transport_name": name}
        given: object = hooks  # typed as a sequence; checked, since callers pass anything
        if isinstance(given, str | bytes) or not isinstance(given, Iterable):
            raise TypeError(f"hooks must be a sequence of callables, got {hooks!r}")
        self._hooks = tuple(hooks)
        # A limiter that paces per scope is told of each request's scope and answers.
        self._paced = (
            self._limiter
            if isinstance(self._limiter, SharedLimiter) and self._limiter.desk is not None
            else None
        )
        self._desk = None if self._paced is None else self._paced.desk
        for hook in self._hooks:
            if not callable(hook):
                raise TypeError(f"hooks must be callables, got {hook!r}")

    @property
    def policy(self) -> RetryPolicy:
        """The policy in force."""
        return self._policy

    @property
    def limiter(self) -> Limiter:
        """The limiter this transport shares its block, budget and concurrency cap with."""
        return self._limiter

    @property
    def name(self) -> str | None:
        """The label put on this transport's log records, events and metrics (or None)."""
        return self._name

    def _machine(self, request: RequestLike, replayable: bool) -> RetryMachine:
        policy = self._policy
        if SWITCH.max_attempts is not None and SWITCH.max_attempts < policy.max_attempts:
            policy = dataclasses.replace(policy, max_attempts=SWITCH.max_attempts)
        return RetryMachine(
            policy,
            method=request.method,
            url=safe_url(request.url),
            idempotency_key="idempotency-key" in request.headers,
            replayable=replayable,
            clock=self._clock,
            wall_clock=self._wall_clock,
            random=self._random,
            name=self._name,
            path=request.url.path,
        )

    def _replay_plan(self, request: Any) -> Callable[[], None] | None:
        # The first thing done on the slow path, which a request from a client of the other
        # library always takes (its body's stream class is never this flavour's ByteStream).
        if not isinstance(request, self._flavour.module.Request):
            self._check_client(request)
        return replay_plan(request.stream, self._flavour)

    def _check_client(self, request: Any) -> None:
        """Refuse a request from a client of the other library, naming what to wrap instead."""
        client = request_flavour(request)
        if client is None:
            return
        ours = self._flavour.name
        cls = "AsyncHTTPTransport" if self._is_async else "HTTPTransport"
        wrapper = type(self).__name__
        raise TypeError(
            f"retry_transport: this {wrapper} wraps an {ours} transport "
            f"({type(self._transport).__name__}) but was given a request from an {client} "
            f"client, whose responses must be {client}'s own: wrap an {client} transport, "
            f"{wrapper}({client}.{cls}())"
        )

    def _fast_start(self, request: Any) -> float:
        """When a deadline is set, the fast path's start time; its attempt's timeouts are capped
        at the deadline, as the machine caps every later attempt's at the deadline's remainder."""
        assert self._policy.deadline is not None
        _timeout_capped(request, self._policy.deadline)
        return self._clock()

    def _first_read(self, request: Any, budget: float | None) -> None:
        """Before a body's first read with a first-content ``budget``, in the sync driver only
        (the async one races each read): bound each read by the first-content timeout, so a
        stall raises ``ReadTimeout`` in time. The HTTP library reads the request's read
        timeout once, when the body's first read starts, so the bound then holds for the rest
        of that stream's reads too."""
        first = self._policy.first_content_timeout
        if self._is_async or budget is None or first is None:
            return
        timeouts = request.extensions.setdefault("timeout", {})
        read = timeouts.get("read")
        # In place: the wrapped transport's own request object shares this dict.
        timeouts["read"] = first if read is None else min(read, first)

    @staticmethod
    def _cap_timeouts(request: Any, cap: float | None) -> None:
        if cap is not None:
            _timeout_capped(request, cap)

    def _deadline_error(self, request: Any) -> Exception:
        error: Any = self._flavour.deadline_error
        raised: Exception = error(
            "retry_transport: the deadline passed before the request could be sent",
            request=request,
        )
        return raised

    def _stream_peek(self, response: Any) -> StreamPeek | None:
        """The peek of a fast path's 200 event stream; ``None`` for an encoded body (the
        machine's: it knows the encodings)."""
        for entry in response.headers._list:
            if entry[1] == b"content-encoding":
                return None
        return StreamPeek(self._peek_limit)

    def _streamed(self, response: Any, peek: StreamPeek, start: float) -> Finish:
        """How a fast path's 200 event stream whose content came is handed back: as the
        machine hands back a first attempt's success, its held bytes replayed in front of the
        rest and the rest watched for its final event (if of a protocol the watcher knows)."""
        elapsed = self._clock() - start
        history = (Attempt(1, response.status_code, None, None, "success", None, elapsed),)
        watcher = peek.watcher
        if watcher is not None and not watcher.watching:
            watcher = None
        return Finish(response, peek.held(), False, False, history, watcher=watcher)

    def _final_stream(
        self, finish: Finish, chunks: Any, current: Any, slot: bool, replay: type, request: Any
    ) -> Any:
        """The stream to hand back in place of the response's own, or ``None`` to keep it."""
        if finish.failure is not None:
            failing = self._guard(request, None, self._stream_error(finish.failure, request))
            return replay(finish.held, None, None, None, failing)
        if finish.closed:
            return self._byte_stream(finish.held)
        watcher = finish.watcher
        if chunks is None and not slot and watcher is None:
            return None
        release = self._limiter.release_slot if slot else None
        guard = None if watcher is None else self._guard(request, watcher, None)
        return replay(finish.held, chunks, current.stream, release, guard)

    def _guard(self, request: Any, watcher: Any, error: BaseException | None) -> StreamGuard:
        flavour = self._flavour

        def truncated(message: str) -> BaseException:
            error: Any = flavour.stream_truncated
            raised: BaseException = error(f"retry_transport: {message}", request=request)
            return raised

        return StreamGuard(watcher, truncated, error)

    def _stream_error(self, failure: StreamFailure, request: Any) -> BaseException:
        """The exception a failed 200 stream raises where its body is read."""
        if failure.exception is not None:
            if failure.note is not None:
                failure.exception.add_note(f"retry_transport: {failure.note}")
            return failure.exception
        cls: Any = (
            self._flavour.read_timeout
            if failure.kind == "stall"
            else self._flavour.stream_truncated
        )
        message = failure.message
        if not message.startswith("retry_transport: "):
            message = f"retry_transport: {message}"
        error: BaseException = cls(message, request=request)
        return error

    def _failure(self, fail: Fail, request: Any) -> BaseException:
        """The exception to raise for ``fail``, noted with the attempt count."""
        exc = self._deadline_error(request) if fail.exception is None else fail.exception
        if len(fail.history) > 1:
            exc.add_note(f"retry_transport: gave up after {len(fail.history)} attempts")
        return exc

    def _report(self, report: Report) -> RetryEvent | None:
        """Log ``report``; the event to tell the hooks of, if there are hooks and an event."""
        event = report.event
        if event is None:
            extra = self._log_extra
        else:
            event = dataclasses.replace(event, blocked_for=self._limiter.blocked_for())
            extra = event.log_extra()
        logger.log(
            report.level, report.message, *report.args, exc_info=report.exc_info, extra=extra
        )
        return event if self._hooks else None

    def _hook_failed(self, hook: Hook, event: RetryEvent, why: str | None = None) -> None:
        if why is None:
            logger.exception(
                "retry_transport: hook %r raised on a %s event",
                hook,
                event.kind,
                extra=self._log_extra,
            )
        else:
            logger.error(
                "retry_transport: hook %r skipped on a %s event: %s",
                hook,
                event.kind,
                why,
                extra=self._log_extra,
            )

    def _hand_back(self, finish: Finish, stream: Any) -> Any:
        """Set the final stream, the give-up header and the history on the response."""
        response = finish.response
        if stream is not None:
            response.stream = stream
        if finish.closed:
            # Closed before a retry that could not be made; its whole body is in the new
            # stream. Still marked closed, the client would refuse to read it (StreamClosed).
            response.is_closed = False
        if finish.mark and self._policy.give_up_header and "x-should-retry" not in response.headers:
            response.headers["x-should-retry"] = "false"
        response.extensions = {**response.extensions, "retry_history": finish.history}
        return response
