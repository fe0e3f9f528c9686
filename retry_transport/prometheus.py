"""Prometheus metrics of retry decisions (extra ``retry-transport[prometheus]``).

>>> from prometheus_client import CollectorRegistry
>>> from retry_transport import RetryTransport
>>> from retry_transport.prometheus import PrometheusHook
>>> metrics = PrometheusHook(registry=CollectorRegistry())
>>> transport = RetryTransport(hooks=[metrics])

`retry_transport` itself never imports this module or prometheus-client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ._events import RetryEvent
from ._headroom import LABELS, headroom_samples
from ._limiter import SharedLimiter
from ._metric_names import BLOCKED_SECONDS, GIVEUPS, HEADROOM, PACE, RETRIES, verdict_label

__all__ = ["PrometheusHook"]

_STREAM_FAILURES = {
    "stream stalled before its first content": "stall",
    "stream truncated before its first content": "truncation",
}


class PrometheusHook:
    """A hook for ``hooks=[...]`` that counts retries and give-ups and shows shared blocks.

    Registers on ``registry`` (default: prometheus-client's global ``REGISTRY``):

    - ``retry_transport_retries_total{host, verdict, name}``: retries scheduled;
    - ``retry_transport_giveups_total{host, verdict, name}``: retryable failures handed back
      (attempts, budget or deadline spent); ``verdict`` is ``none`` when the deadline passed
      before any attempt;
    - ``retry_transport_stream_failures_total{host, kind, name}``: 200 event streams that
      stalled before their first content (``kind="stall"``) or were cut before it
      (``kind="truncation"``), whether retried or handed back;
    - ``retry_transport_blocked_seconds{host, name}``: seconds left of the shared block on
      requests to ``host`` (after a 429 or an overload), as last reported by a retry or
      give-up there, counting down at scrape time to 0;
    - ``retry_transport_paced_seconds_total{host, name}``: seconds attempts waited before
      they were sent (pacing, or a block on their scope), as reported by retries and
      give-ups: the wait of a request answered at its first attempt is in its history
      (`Attempt.paced`) only, since hooks hear of retries and give-ups alone;
    - with `watch` (a limiter): ``retry_transport_headroom{origin, model, dimension}``, what the
      provider's rate-limit headers last said is left per scope (the least over the keys of
      one origin and model: neither a key nor its fingerprint is ever a label), and
      ``retry_transport_pace{origin, model, dimension}``, the refill per second it paces
      against. The label set is bounded: past 10 origins or 25 models of one origin (in
      sorted order) the rest are shown folded as ``other``; scopes the limiter has forgotten
      (idle for ten minutes) are not shown.

    ``host`` is the upstream's host name, without the port; ``name`` is the transport's
    ``name=`` label (empty for a transport without one). Metric names can be registered
    once per registry: make one hook and give it to every transport. ``clock`` (monotonic
    seconds) exists for tests.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self._clock = clock
        self._lock = threading.Lock()
        self._blocked_until: dict[tuple[str, str], float] = {}
        self.retries = Counter(
            RETRIES.name, RETRIES.help, ["host", "verdict", "name"], registry=registry
        )
        self.giveups = Counter(
            GIVEUPS.name, GIVEUPS.help, ["host", "verdict", "name"], registry=registry
        )
        self.stream_failures = Counter(
            "retry_transport_stream_failures",
            "Event streams that stalled or were cut before their first content, by upstream "
            "host, kind (stall, truncation) and transport name.",
            ["host", "kind", "name"],
            registry=registry,
        )
        self._registry = registry
        self._watched: list[SharedLimiter] = []
        self.paced_seconds = Counter(
            "retry_transport_paced_seconds",
            "Seconds attempts of retried or given-up requests waited before they were sent, by "
            "upstream host and transport name.",
            ["host", "name"],
            registry=registry,
        )
        self.blocked_seconds = Gauge(
            BLOCKED_SECONDS.name, BLOCKED_SECONDS.help, ["host", "name"], registry=registry
        )

    def __call__(self, event: RetryEvent) -> None:
        """Count ``event`` and note the block it reports."""
        host = urlsplit(event.url).hostname or ""
        name = event.transport_name or ""
        verdict = verdict_label(event)
        counter = self.retries if event.kind == "retry" else self.giveups
        counter.labels(host=host, verdict=verdict, name=name).inc()
        stream = _STREAM_FAILURES.get(event.cause)
        if stream is not None:
            self.stream_failures.labels(host=host, kind=stream, name=name).inc()
        if event.paced > 0.0:
            self.paced_seconds.labels(host=host, name=name).inc(event.paced)
        key = (host, name)
        with self._lock:
            known = key in self._blocked_until
            self._blocked_until[key] = self._clock() + event.blocked_for
        if not known:
            self.blocked_seconds.labels(host=host, name=name).set_function(lambda: self._left(key))

    def _left(self, key: tuple[str, str]) -> float:
        return max(0.0, self._blocked_until[key] - self._clock())

    def watch(self, limiter: SharedLimiter) -> None:
        """Expose ``limiter``'s per-scope headroom (``retry_transport_headroom`` and
        ``retry_transport_pace``), read at scrape time."""
        with self._lock:
            first = not self._watched
            self._watched.append(limiter)
        if first:
            self._registry.register(_HeadroomCollector(self._watched))


class _HeadroomCollector(Collector):
    """Reads the watched limiters' headroom at scrape time; labels: origin, model, dimension."""

    def __init__(self, limiters: list[SharedLimiter]) -> None:
        self._limiters = limiters

    def collect(self) -> list[GaugeMetricFamily]:
        left = GaugeMetricFamily(HEADROOM.name, HEADROOM.help, labels=LABELS)
        pace = GaugeMetricFamily(PACE.name, PACE.help, labels=LABELS)
        for sample in headroom_samples(list(self._limiters)):
            values = [sample.origin, sample.model, sample.dimension]
            left.add_metric(values, sample.remaining)
            pace.add_metric(values, sample.pace)
        return [left, pace]

    def describe(self) -> list[GaugeMetricFamily]:
        return []
