"""Transport-level retries for httpx and httpx2 clients, and the openai and anthropic SDKs.

Hand a `RetryTransport` (async) or `SyncRetryTransport` (sync) to any client as ``transport=``.
"""

from __future__ import annotations

from ._async import RetryTransport
from ._backoff import Backoff
from ._budget import RetryBudget
from ._classify import classify
from ._errors import DeadlineExceeded, RetryTransportError, StreamTruncated
from ._events import Hook, RetryEvent
from ._history import Attempt
from ._limiter import Limiter, SharedLimiter
from ._pacing import RateLimit
from ._policy import RetryPolicy
from ._sync import SyncRetryTransport
from ._verdict import Classification, Outcome, Verdict

__version__ = "0.1.0.dev0"

__all__ = [
    "Attempt",
    "Backoff",
    "Classification",
    "DeadlineExceeded",
    "Hook",
    "Limiter",
    "Outcome",
    "RateLimit",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "RetryTransport",
    "RetryTransportError",
    "SharedLimiter",
    "StreamTruncated",
    "SyncRetryTransport",
    "Verdict",
    "__version__",
    "classify",
]
