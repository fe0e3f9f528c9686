"""The request and response surface the drivers touch, as small Protocols.

httpx and httpx2 have the same API with different classes; these Protocols name what the
drivers read and write of either, so that the drivers' code is typed for both flavours at
once without importing httpx2.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Protocol

__all__ = ["HeadersLike", "RequestLike", "ResponseLike", "URLLike"]


class URLLike(Protocol):
    """What `safe_url` reads of a URL."""

    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def path(self) -> str: ...


class HeadersLike(Protocol):
    """What the drivers read and write of headers (``httpx.Headers`` and httpx2's).

    ``_list`` is the raw (name, lower-case name, value) list both keep, read on the success
    path where decoding the headers would cost more than everything else.
    """

    _list: list[tuple[bytes, bytes, bytes]]

    def get(self, key: str, default: str = ...) -> str | None: ...
    def __contains__(self, key: object) -> bool: ...
    def __setitem__(self, key: str, value: str) -> None: ...
    def items(self) -> Iterable[tuple[str, str]]: ...


class RequestLike(Protocol):
    """What the drivers read and write of a request."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> URLLike: ...
    @property
    def headers(self) -> HeadersLike: ...

    stream: object
    extensions: MutableMapping[str, object]


class ResponseLike(Protocol):
    """What the drivers read and write of a response."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> HeadersLike: ...

    stream: object
    extensions: MutableMapping[str, object]
    is_closed: bool
