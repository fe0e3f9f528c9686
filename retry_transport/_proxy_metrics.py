"""The sidecar's counters, shown by ``GET /metrics`` in Prometheus text format.

Retries and give-ups are counted from the ``retry_transport`` logger's records (one per
scheduled retry, one per give-up, each carrying its verdict), attributed to the upstream whose
request is being handled through a context variable: the transport logs from the task that
sends the request. Everything works without prometheus-client; there is then nothing to show.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Metrics", "UpstreamMetrics", "counting"]

_CURRENT: contextvars.ContextVar[UpstreamMetrics | None] = contextvars.ContextVar(
    "retry_transport_proxy_upstream", default=None
)
_LIBRARY_LOGGER = "retry_transport"


def _prometheus() -> Any:
    """The prometheus_client module, or None when it is not installed (an optional extra:
    imported by name so that type checking does not need it either)."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        return None


class UpstreamMetrics:
    """The counters of one upstream (no-ops without prometheus-client)."""

    __slots__ = ("_give_ups", "_metrics", "_name", "_retries")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        self._retries: dict[str, Any] = {}
        self._give_ups: dict[str, Any] = {}

    def request(self, code: int) -> None:
        """One request answered with status ``code`` (the sidecar's own 502/504 included)."""
        if self._metrics.requests is not None:
            self._metrics.requests.labels(self._name, str(code)).inc()

    def client_disconnect(self) -> None:
        """One request abandoned because its client went away."""
        if self._metrics.disconnects is not None:
            self._metrics.disconnects.labels(self._name).inc()

    def retry(self, verdict: str) -> None:
        """One retry scheduled after an attempt judged ``verdict``."""
        self._inc(self._metrics.retries, self._retries, verdict)

    def give_up(self, verdict: str) -> None:
        """One request given up on (its last attempt judged ``verdict``)."""
        self._inc(self._metrics.give_ups, self._give_ups, verdict)

    def _inc(self, family: Any, children: dict[str, Any], verdict: str) -> None:
        if family is None:
            return
        child = children.get(verdict)
        if child is None:
            child = children[verdict] = family.labels(self._name, verdict)
        child.inc()


class Metrics:
    """Every upstream's counters, in a registry of their own (one per sidecar app)."""

    def __init__(self, upstreams: Iterable[str]) -> None:
        prometheus_client = _prometheus()
        self.available = prometheus_client is not None
        self.requests: Any = None
        self.disconnects: Any = None
        self.retries: Any = None
        self.give_ups: Any = None
        self.blocked: Any = None
        self._registry: Any = None
        if prometheus_client is not None:
            registry = prometheus_client.CollectorRegistry()
            self._registry = registry
            prefix = "retry_transport_proxy"
            self.requests = prometheus_client.Counter(
                f"{prefix}_requests",
                "Requests answered, by upstream and status code sent to the client.",
                ("upstream", "code"),
                registry=registry,
            )
            self.disconnects = prometheus_client.Counter(
                f"{prefix}_client_disconnects",
                "Requests cancelled upstream because the client went away.",
                ("upstream",),
                registry=registry,
            )
            self.retries = prometheus_client.Counter(
                f"{prefix}_retries",
                "Retries scheduled, by upstream and the verdict on the failed attempt.",
                ("upstream", "verdict"),
                registry=registry,
            )
            self.give_ups = prometheus_client.Counter(
                f"{prefix}_give_ups",
                "Requests given up on after retrying, by upstream and last verdict.",
                ("upstream", "verdict"),
                registry=registry,
            )
            self.blocked = prometheus_client.Gauge(
                f"{prefix}_blocked_seconds",
                "Seconds left of the shared block after a 429 or an overload.",
                ("upstream",),
                registry=registry,
            )
        self._upstreams = {name: UpstreamMetrics(self, name) for name in upstreams}

    def upstream(self, name: str) -> UpstreamMetrics:
        """The counters of upstream ``name``."""
        return self._upstreams[name]

    def watch_block(self, name: str, blocked_for: Callable[[], float]) -> None:
        """Report ``blocked_for()`` as upstream ``name``'s block gauge."""
        if self.blocked is not None:
            self.blocked.labels(name).set_function(blocked_for)

    def render(self) -> tuple[bytes, str] | None:
        """The text exposition and its content type; None without prometheus-client."""
        prometheus_client = _prometheus()
        if self._registry is None or prometheus_client is None:
            return None
        body: bytes = prometheus_client.generate_latest(self._registry)
        return body, str(prometheus_client.CONTENT_TYPE_LATEST)


class _RecordCounter(logging.Handler):
    """Counts the transport's retry and give-up records for the upstream being served."""

    def emit(self, record: logging.LogRecord) -> None:
        upstream = _CURRENT.get()
        if upstream is None or not hasattr(record, "retry_verdict"):
            return
        verdict = getattr(record, "retry_verdict", None) or "none"
        if record.levelno >= logging.WARNING:
            upstream.give_up(verdict)
        elif record.levelno >= logging.INFO and getattr(record, "retry_delay", None) is not None:
            upstream.retry(verdict)


_COUNTER = _RecordCounter(logging.INFO)


def install() -> None:
    """Attach the record counter to the ``retry_transport`` logger (once).

    The logger must then let INFO records through: its level is lowered to INFO if it is
    higher. What is printed is decided by the handlers' own levels, so this prints nothing more.
    """
    logger = logging.getLogger(_LIBRARY_LOGGER)
    if _COUNTER not in logger.handlers:
        logger.addHandler(_COUNTER)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def counting(upstream: UpstreamMetrics) -> contextvars.Token[UpstreamMetrics | None]:
    """Attribute the transport's records in this context to ``upstream``; reset the token."""
    return _CURRENT.set(upstream)


def stop_counting(token: contextvars.Token[UpstreamMetrics | None]) -> None:
    """Undo `counting`."""
    _CURRENT.reset(token)
