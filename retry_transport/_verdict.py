"""What a classifier is given (an `Outcome`) and what it answers (a `Classification`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Classification", "Outcome", "Verdict"]


class Verdict(enum.Enum):
    """How one failed attempt should be treated.

    - ``CONGESTION``: the upstream is overloaded or rate limiting. Retried with the congestion
      backoff, and every request sharing the limiter pauses.
    - ``TRANSIENT``: a per-request hiccup. Retried with the transient backoff; blocks nobody.
    - ``FATAL``: a real error. Returned (or raised) at once.
    - ``UNRECOGNISED``: a 400 that no rule knows. Retried like ``TRANSIENT``, but only up to
      ``RetryPolicy.unclassified_400_attempts`` tries in total.
    """

    CONGESTION = "congestion"
    TRANSIENT = "transient"
    FATAL = "fatal"
    UNRECOGNISED = "unrecognised"

    @property
    def retryable(self) -> bool:
        """Whether this verdict allows another attempt at all."""
        return self is not Verdict.FATAL


@dataclass(frozen=True, slots=True)
class Classification:
    """A verdict with the reason that produced it (the name of the matched rule)."""

    verdict: Verdict
    reason: str
    wait: float | None = None
    """A wait in seconds the error body named ("try again in 7.5s"), if any."""
    attempts: int | None = None
    """At most this many tries in total for this verdict (a sampling failure: 2), if set."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result, as a classifier sees it.

    Exactly one of ``status`` and ``exception`` is set. ``body`` holds at most ``peek_limit``
    bytes of the error body (or, for a stream, the payload of the error event), possibly
    truncated. ``headers`` keys are lower-case.
    """

    method: str
    url: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    exception: BaseException | None = None
    stream_error: bool = False
    """True when ``body`` is the payload of an error event inside a 200 event stream."""
