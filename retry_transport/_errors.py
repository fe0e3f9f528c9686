"""The library's own exceptions, all under one base class."""

from __future__ import annotations

__all__ = ["DeadlineExceeded", "RetryTransportError", "StreamTruncated"]


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


class StreamTruncated(RetryTransportError):
    """An event stream of a recognised protocol ended without its final event.

    Raised where the caller's iteration of the body ends (the body ended cleanly, or reading it
    failed; the read error is then the ``__cause__``), so that no SDK hands back half an answer
    as complete. The instance raised is also the wrapped library's ``RemoteProtocolError``
    (httpx or httpx2): catch either. The message names the final event that was missing.
    """
