"""The sidecar's settings: what `cli` validates and every other module of the sidecar reads.

Standard library and the decision core only, so the command line can build them without the
``proxy`` extra installed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .._budget import RetryBudget
from .._policy import RetryPolicy

__all__ = ["DEFAULT_PORT", "MIB", "OWN_PREFIX", "ProxySettings", "UpstreamSpec", "address_kind"]

DEFAULT_PORT = 8787
OWN_PREFIX = "/_retry_transport"
"""Path prefix of the sidecar's own endpoints; no upstream name can take it."""
MIB = 1024 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def address_kind(host: str) -> str | None:
    """What ``host`` is to this machine: ``"any"`` for a wildcard address, ``"loopback"``
    for a loopback address or name, the address itself for another IP address, None for a
    host name."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return "loopback"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified:
        return "any"
    return "loopback" if address.is_loopback else str(address)


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One upstream: served under ``/<name>/`` (or at the root when ``name`` is None)."""

    name: str | None
    url: str
    """``scheme://host[:port][/base-path]``, without a trailing slash, query or user info."""

    @property
    def label(self) -> str:
        """The upstream's name in logs, metrics and /healthz: its route name, or "/" at the
        root."""
        return "/" if self.name is None else self.name

    @property
    def limiter_name(self) -> str:
        """The name sidecars share a Redis block under: the upstream's URL, not the route."""
        return f"proxy:{self.url}"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Everything the sidecar needs, validated."""

    upstreams: tuple[UpstreamSpec, ...]
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    max_concurrency: int | None = None
    replay_limit: int = 8 * MIB
    """Request bodies up to this many bytes are kept, so the request can be retried."""
    connect_timeout: float = 10.0
    read_timeout: float | None = 600.0
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_password: str | None = field(default=None, repr=False)
    redis_timeout: float = 0.1
    """Seconds each call to Redis may take before the limiter goes on alone for it."""
    grace: int = 25
    """Seconds in-flight responses get to finish after SIGTERM."""
    log_level: str = "info"
    workers: int = 1
    """Processes accepting on the one listening socket, each with its own event loop, pool
    and limiter (shared only through ``redis_url``)."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers, from connecting (or from the end
    of the previous response on a kept-alive connection)."""
    body_timeout: float | None = 60.0
    """Longest silence while a request's body arrives (None: no limit)."""
    max_connections: int = 1000
    """Client connections open at once; one more is answered 503 and closed."""
