# mypy: disable-error-code="misc"
"""Typing-only classes for "of either flavour": httpx and httpx2 at once.

A retry transport is handed to httpx and httpx2 clients alike, and hands back responses of
the wrapped transport's flavour; at run time each instance is of a subclass made for its
flavour (see `Flavour.transport_class`). For the type checker these classes derive from both
libraries' classes, so that either client accepts a transport and either library's code
accepts the response. Both libraries declare the same methods with their own types, which
mypy reports as incompatible bases ("misc"): that code is disabled for this module only,
which holds nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["AnyTransportBase", "AsyncTransportBase", "BothResponse", "SyncTransportBase"]

if TYPE_CHECKING:
    import httpx
    import httpx2

    class AsyncTransportBase(httpx.AsyncBaseTransport, httpx2.AsyncBaseTransport):
        """An ``AsyncBaseTransport`` of httpx and of httpx2."""

    class SyncTransportBase(httpx.BaseTransport, httpx2.BaseTransport):
        """A ``BaseTransport`` of httpx and of httpx2."""

    class AnyTransportBase(
        httpx.BaseTransport,
        httpx.AsyncBaseTransport,
        httpx2.BaseTransport,
        httpx2.AsyncBaseTransport,
    ):
        """A sync and async transport of httpx and of httpx2 (as a scripted test double is)."""

    class BothResponse(httpx.Response, httpx2.Response):
        """A response of the wrapped transport's flavour, typed as both flavours' one."""

else:
    AsyncTransportBase = SyncTransportBase = AnyTransportBase = BothResponse = object
