"""Retry configuration: frozen, validated, pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._backoff import Backoff
from ._checks import check_count as _check_count
from ._checks import check_number as _check_number
from ._verdict import Classification, Outcome

__all__ = ["DEFAULT_IDEMPOTENT_METHODS", "Backoff", "Classifier", "RetryPolicy"]

Classifier = Callable[[Outcome], Classification | None]
"""A callable consulted before the default classifier; ``None`` means "no opinion"."""

DEFAULT_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What to retry, how often and how long to wait. Pure configuration: no state.

    Derive variants with :func:`dataclasses.replace`; invalid values raise ``ValueError``
    naming the field.
    """

    max_attempts: int = 5
    """Total tries, the first included."""
    congestion_backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=60.0))
    """Backoff after 429 / 5xx / overload, when the server names no wait."""
    transient_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=60.0))
    """Backoff after transient 400s and connection errors."""
    max_retry_after: float = 60.0
    """A server asking to wait longer than this gets its response returned at once."""
    deadline: float | None = None
    """Seconds for all attempts and waits together; no wait runs past it."""
    classifier: Classifier | None = None
    """Consulted before the default classifier; return ``None`` to defer to it."""
    peek_sse: bool = True
    """Hold a 200 event stream's preamble and retry an error that arrives before content."""
    peek_limit: int = 65536
    """Bytes of an error body or of a stream's preamble read to classify it."""
    unclassified_400_attempts: int = 3
    """Total tries for a 400 that no rule recognises."""
    give_up_header: bool = True
    """Add ``x-should-retry: false`` to error responses handed back (unless already present),
    so an SDK's own retry loop does not multiply this transport's attempts."""
    retry_read_errors: bool = False
    """Retry read timeouts and mid-response disconnects of non-idempotent requests (POST)
    even without an ``Idempotency-Key`` header. The upstream may have acted on the request."""
    idempotent_methods: frozenset[str] = DEFAULT_IDEMPOTENT_METHODS
    """Methods that are safe to resend after a read timeout or a mid-response disconnect."""
    first_content_timeout: float | None = 120.0
    """Per attempt, the longest wait in seconds from sending the request to the first content
    event of a 200 event stream (for a first attempt sent at once without a ``deadline``, from
    when its headers came back: no clock is read before it; see `Attempt.elapsed`). Pings,
    comments and lifecycle events such as Anthropic's ``message_start`` are not content.
    Past it the attempt is abandoned and retried; on the
    last attempt, or past the deadline, the caller gets the library's ``ReadTimeout``. ``None``
    turns it off (the request's own read timeout still applies).

    Why 120 s: a stall must be cut well before the SDKs' 600 s read timeout, but never a model
    that is merely thinking. Reasoning models on a chat wire stream nothing until their first
    answer token: one gateway measured a p99 first token of 94 s for such a model over a
    million completions (experientiallabs/experiential#1054, which chose 120 s after finding
    that 15 s would have cut 6% of them), and cache-cold extended-thinking prompts are reported
    at 60-120 s (BlockRunAI/Franklin#74), while ordinary models answer within seconds (p99
    14.8 s over 2,400 streamed requests, Wei-Shaw/sub2api#5290). Models that think silently for
    longer need a larger value, or ``None``."""
    stateful_paths: tuple[str, ...] = ()
    """Path patterns added to the built-in list of POST paths that create server-side state
    (``retry_transport._stateful.STATEFUL_PATHS``): such a POST is re-sent only after a
    connect-phase error, a 429 or an overload naming its wait, or with an ``Idempotency-Key``.
    A pattern matches the end of the path segment by segment; ``*`` matches within a segment."""

    def __post_init__(self) -> None:
        _check_count("RetryPolicy", "max_attempts", self.max_attempts)
        _check_count("RetryPolicy", "unclassified_400_attempts", self.unclassified_400_attempts)
        _check_count("RetryPolicy", "peek_limit", self.peek_limit)
        _check_number("RetryPolicy", "max_retry_after", self.max_retry_after, positive=False)
        if self.deadline is not None:
            _check_number("RetryPolicy", "deadline", self.deadline, positive=True)
        if self.first_content_timeout is not None:
            _check_number(
                "RetryPolicy", "first_content_timeout", self.first_content_timeout, positive=True
            )
        paths: object = self.stateful_paths
        if (
            isinstance(paths, str)
            or not isinstance(paths, tuple | list | frozenset | set)
            or not all(isinstance(p, str) and p.strip("/") for p in paths)
        ):
            raise ValueError(
                f"RetryPolicy.stateful_paths must be a sequence of path patterns, got {paths!r}"
            )
        object.__setattr__(self, "stateful_paths", tuple(paths))
        for name in ("congestion_backoff", "transient_backoff"):
            if not isinstance(getattr(self, name), Backoff):
                raise ValueError(
                    f"RetryPolicy.{name} must be a Backoff, got {getattr(self, name)!r}"
                )
        if self.classifier is not None and not callable(self.classifier):
            raise ValueError(f"RetryPolicy.classifier must be callable, got {self.classifier!r}")
        for name in ("peek_sse", "give_up_header", "retry_read_errors"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RetryPolicy.{name} must be a bool, got {getattr(self, name)!r}")
        methods: object = self.idempotent_methods
        if not isinstance(methods, frozenset | set | tuple | list) or not all(
            isinstance(m, str) for m in methods
        ):
            raise ValueError(
                f"RetryPolicy.idempotent_methods must be a set of method names, got {methods!r}"
            )
        object.__setattr__(self, "idempotent_methods", frozenset(m.upper() for m in methods))
