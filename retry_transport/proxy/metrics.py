"""The sidecar's counters, shown by ``GET /metrics`` in Prometheus text format.

Each upstream's `RetryTransport` is given that upstream's `UpstreamMetrics` as a hook: retries
and give-ups are counted from the `RetryEvent`s it is told, requests and client disconnects by
the forwarder. The names are the ones `retry_transport.prometheus.PrometheusHook` registers
(defined once, in ``_metric_names``), labelled by ``upstream`` (the route name, ``/`` at the
root) where the hook labels by host. Each upstream's limiter is watched for its per-scope
headroom, shown at scrape time as the hook's ``watch`` shows it: ``retry_transport_headroom``
and ``retry_transport_pace`` by ``origin``, ``model`` and ``dimension``, never by key, the
label set bounded (``_headroom``). Everything works without prometheus-client; there is then
nothing to show.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from .._events import RetryEvent
from .._headroom import LABELS, HeadroomSource, headroom_samples
from .._metric_names import (
    BLOCKED_SECONDS,
    CLIENT_DISCONNECTS,
    GIVEUPS,
    HEADROOM,
    PACE,
    REQUESTS,
    RETRIES,
    MetricName,
    verdict_label,
)

__all__ = ["Metrics", "UpstreamMetrics"]


def _prometheus() -> Any:
    """The prometheus_client module, or None when it is not installed (an optional extra:
    imported by name so that type checking does not need it either)."""
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        return None


class UpstreamMetrics:
    """The counters of one upstream (no-ops without prometheus-client); a hook for its
    transport."""

    __slots__ = ("_codes", "_metrics", "_name")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        self._codes: dict[int, Any] = {}
        """The request counter's child by status code, its labels resolved once."""

    def request(self, code: int) -> None:
        """One request answered with status ``code`` (the sidecar's own 4xx/502/504 included)."""
        child = self._codes.get(code)
        if child is None:
            if self._metrics.requests is None:
                return
            child = self._codes[code] = self._metrics.requests.labels(self._name, str(code))
        child.inc()

    def client_disconnect(self) -> None:
        """One request abandoned because its client went away."""
        if self._metrics.disconnects is not None:
            self._metrics.disconnects.labels(self._name).inc()

    def __call__(self, event: RetryEvent) -> None:
        """Count a retry scheduled or a request given up on, by the verdict it reports."""
        family = self._metrics.retries if event.kind == "retry" else self._metrics.giveups
        if family is not None:
            family.labels(self._name, verdict_label(event)).inc()


class _HeadroomCollector:
    """Reads the watched limiters' headroom at scrape time (a prometheus-client collector)."""

    def __init__(self, family: Any) -> None:
        self._family = family  # prometheus-client's GaugeMetricFamily
        self.limiters: dict[str, HeadroomSource] = {}  # by upstream

    def collect(self) -> list[Any]:
        left = self._family(HEADROOM.name, HEADROOM.help, labels=LABELS)
        pace = self._family(PACE.name, PACE.help, labels=LABELS)
        for sample in headroom_samples(list(self.limiters.values())):
            values = [sample.origin, sample.model, sample.dimension]
            left.add_metric(values, sample.remaining)
            pace.add_metric(values, sample.pace)
        return [left, pace]


class Metrics:
    """Every upstream's counters, in a registry of their own (one per sidecar app)."""

    def __init__(self, upstreams: Iterable[str]) -> None:
        prometheus_client = _prometheus()
        self.requests: Any = None
        self.disconnects: Any = None
        self.retries: Any = None
        self.giveups: Any = None
        self.blocked: Any = None
        self._registry: Any = None
        self._headroom: _HeadroomCollector | None = None
        if prometheus_client is not None:
            registry = prometheus_client.CollectorRegistry()
            self._registry = registry

            def make(kind: Any, metric: MetricName, *labels: str) -> Any:
                return kind(metric.name, metric.help, labels, registry=registry)

            counter, gauge = prometheus_client.Counter, prometheus_client.Gauge
            self.requests = make(counter, REQUESTS, "upstream", "code")
            self.disconnects = make(counter, CLIENT_DISCONNECTS, "upstream")
            self.retries = make(counter, RETRIES, "upstream", "verdict")
            self.giveups = make(counter, GIVEUPS, "upstream", "verdict")
            self.blocked = make(gauge, BLOCKED_SECONDS, "upstream")
            self._headroom = _HeadroomCollector(prometheus_client.metrics_core.GaugeMetricFamily)
            registry.register(self._headroom)
        self._upstreams = {name: UpstreamMetrics(self, name) for name in upstreams}

    def upstream(self, name: str) -> UpstreamMetrics:
        """The counters of upstream ``name``."""
        return self._upstreams[name]

    def watch_block(self, name: str, blocked_for: Callable[[], float]) -> None:
        """Report ``blocked_for()`` as upstream ``name``'s block gauge."""
        if self.blocked is not None:
            self.blocked.labels(name).set_function(blocked_for)

    def watch_headroom(self, name: str, limiter: HeadroomSource) -> None:
        """Show the per-scope headroom and pace of ``limiter``, upstream ``name``'s."""
        if self._headroom is not None:
            self._headroom.limiters[name] = limiter

    def render(self) -> tuple[bytes, str] | None:
        """The text exposition and its content type; None without prometheus-client."""
        prometheus_client = _prometheus()
        if self._registry is None or prometheus_client is None:
            return None
        body: bytes = prometheus_client.generate_latest(self._registry)
        return body, str(prometheus_client.CONTENT_TYPE_LATEST)
