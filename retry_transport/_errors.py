"""The library's own exceptions, all under one base class."""

from __future__ import annotations

__all__ = ["DeadlineExceeded", "RetryTransportError"]


class RetryTransportError(Exception):
    """Base class of every exception raised by retry_transport itself.

    Upstream responses and transport exceptions are handed back as they came; this class is
    only for situations the transport creates.
    """


class DeadlineExceeded(RetryTransportError):
    """A request could not be sent before the policy's deadline.

    Raised when a shared block or a concurrency cap would keep a request waiting past the
    deadline and there is no upstream response to hand back instead. The instance raised is
    also the wrapped library's ``PoolTimeout`` (httpx or httpx2), so clients and SDKs treat it
    as a timeout.
    """
