"""The record of one attempt, as it rides on ``response.extensions["retry_history"]``."""

from __future__ import annotations

from dataclasses import dataclass

from ._verdict import Verdict

__all__ = ["Attempt"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a request.

    ``status`` is the HTTP status (``None`` after an exception); ``exception`` the exception's
    class name (never its message, which may hold a URL). ``verdict`` is ``None`` for an attempt
    that succeeded. ``delay`` is the wait scheduled after this attempt, ``None`` if none
    followed. ``elapsed`` is seconds since the transport started its clock for the request:
    when the request reached it if the limiter held it or a ``deadline`` is set (the deadline
    counts from there), else when its first attempt, sent at once, was answered or failed (no
    clock is read before such an attempt: its own duration is not counted).
    ``paced`` is how long the attempt waited before it was sent (the limiter's pacing or a
    block on its scope): 0.0 when it went at once.
    """

    number: int
    status: int | None
    exception: str | None
    verdict: Verdict | None
    reason: str
    delay: float | None
    elapsed: float
    paced: float = 0.0
