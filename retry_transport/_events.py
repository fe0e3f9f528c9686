"""What hooks are told: one small frozen event per scheduled retry and per give-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ._verdict import Verdict

__all__ = ["Hook", "RetryEvent"]


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A retry decision, free of secrets: no headers, no body, no query string.

    ``kind`` is ``"retry"`` (another attempt follows after ``delay`` seconds) or ``"give_up"``
    (a retryable failure is handed back: attempts, budget or deadline exhausted). ``verdict``
    and ``reason`` are the last attempt's (``verdict`` is ``None`` when the deadline passed
    before any attempt could be sent); ``reason`` then says why it stopped. ``url`` is
    scheme, host, port and path. ``blocked_for`` is the shared block left, in seconds, as the
    limiter knows it. ``paced`` is how long the attempt waited before it was sent (pacing or
    a block on its scope), 0.0 when it went at once. ``transport_name`` is the transport's
    ``name=`` label (``None``: none). ``cause`` is what the last attempt ran into, in the words
    of its verdict (for a retry the same as ``reason``; for a give-up, say, ``stream stalled
    before its first content`` while ``reason`` is ``5 attempts made``), empty when no attempt
    was made.
    """

    kind: Literal["retry", "give_up"]
    method: str
    url: str
    attempt: int
    max_attempts: int
    verdict: Verdict | None
    reason: str
    delay: float | None
    status: int | None
    exception: str | None
    blocked_for: float
    paced: float = 0.0
    transport_name: str | None = None
    cause: str = ""

    def log_extra(self) -> dict[str, object]:
        """The structured fields put on the ``retry_transport`` log record (``extra=``).

        ``retry_transport_name`` is there only when the transport has a name.
        """
        extra: dict[str, object] = {
            "retry_event": self.kind,
            "retry_method": self.method,
            "retry_url": self.url,
            "retry_attempt": self.attempt,
            "retry_max_attempts": self.max_attempts,
            "retry_verdict": None if self.verdict is None else self.verdict.value,
            "retry_reason": self.reason,
            "retry_delay": self.delay,
            "retry_status": self.status,
            "retry_exception": self.exception,
            "retry_blocked_for": self.blocked_for,
            "retry_paced": self.paced,
            "retry_cause": self.cause,
        }
        if self.transport_name is not None:
            extra["retry_transport_name"] = self.transport_name
        return extra


Hook = Callable[[RetryEvent], Awaitable[None] | None]
"""A callable told of each `RetryEvent`; it may be a coroutine function on `RetryTransport`
(not on `SyncRetryTransport`, which logs and skips such a hook)."""
