"""What each transport exception means: its verdict and how much of the request was sent.

One table, read by the classifier (the verdict) and the retry machine (whether a resend is
safe). Exceptions are known by class name along their MRO, so httpx and httpx2 (which share
the names) are both covered without importing either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._verdict import Verdict

__all__ = ["EXCEPTIONS", "Meaning", "Sent", "meaning_of"]


class Sent(enum.Enum):
    """How much of the request the upstream may have acted on when the exception was raised."""

    NOTHING = "nothing"
    """Raised before any byte of the request left: always safe to send again."""
    UNANSWERED = "unanswered"
    """The connection failed while sending or before an answer: safe to send again when the
    body can be replayed."""
    MAYBE_PROCESSED = "maybe processed"
    """The whole request may have arrived and been acted on: sent again only for idempotent
    requests (or when the policy opts in)."""


@dataclass(frozen=True, slots=True)
class Meaning:
    """What one exception class means."""

    verdict: Verdict
    reason: str
    sent: Sent


EXCEPTIONS: dict[str, Meaning] = {
    "ConnectTimeout": Meaning(Verdict.TRANSIENT, "connect timeout", Sent.NOTHING),
    "PoolTimeout": Meaning(Verdict.TRANSIENT, "pool timeout", Sent.NOTHING),
    "ConnectError": Meaning(Verdict.TRANSIENT, "connect error", Sent.NOTHING),
    "ReadTimeout": Meaning(Verdict.TRANSIENT, "read timeout", Sent.MAYBE_PROCESSED),
    "WriteTimeout": Meaning(Verdict.TRANSIENT, "write timeout", Sent.UNANSWERED),
    "RemoteProtocolError": Meaning(Verdict.TRANSIENT, "connection dropped", Sent.UNANSWERED),
    "ReadError": Meaning(Verdict.TRANSIENT, "connection dropped", Sent.UNANSWERED),
    "WriteError": Meaning(Verdict.TRANSIENT, "connection dropped", Sent.UNANSWERED),
    "NetworkError": Meaning(Verdict.TRANSIENT, "connection dropped", Sent.UNANSWERED),
}
"""Exception class names (httpx and httpx2 share them) and what they mean."""


def meaning_of(exception: BaseException) -> Meaning | None:
    """The meaning of the first class along ``exception``'s MRO that the table knows."""
    for cls in type(exception).__mro__:
        known = EXCEPTIONS.get(cls.__name__)
        if known is not None:
            return known
    return None
