"""The metric names, defined once for `prometheus.PrometheusHook`, the sidecar and (for the
headroom gauges) `otel.OpenTelemetryHook`.

Standard library only: the sidecar's metrics work with and without prometheus-client, and
neither user imports the other. Counter names are given without prometheus-client's
``_total`` suffix, which it adds in the exposition.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._events import RetryEvent

__all__ = [
    "BLOCKED_SECONDS",
    "CLIENT_DISCONNECTS",
    "GIVEUPS",
    "HEADROOM",
    "PACE",
    "REQUESTS",
    "RETRIES",
    "MetricName",
    "verdict_label",
]


@dataclass(frozen=True, slots=True)
class MetricName:
    """A metric's name and what it counts (the ``# HELP`` line); labels belong to its user."""

    name: str
    help: str


RETRIES = MetricName("retry_transport_retries", "Retries scheduled, by upstream and verdict.")
GIVEUPS = MetricName(
    "retry_transport_giveups",
    "Retryable failures handed back (attempts, budget or deadline spent), by upstream and verdict.",
)
BLOCKED_SECONDS = MetricName(
    "retry_transport_blocked_seconds",
    "Seconds left of the shared block after a 429 or an overload, by upstream.",
)
HEADROOM = MetricName(
    "retry_transport_headroom",
    "What the provider's rate-limit headers last said is left, per scope (origin and model).",
)
PACE = MetricName(
    "retry_transport_pace",
    "The refill per second a scope is paced against (from its rate-limit headers).",
)
REQUESTS = MetricName(
    "retry_transport_proxy_requests",
    "Requests the sidecar answered, by upstream and the status code sent to the client.",
)
CLIENT_DISCONNECTS = MetricName(
    "retry_transport_proxy_client_disconnects",
    "Requests the sidecar cancelled upstream because the client went away, by upstream.",
)


def verdict_label(event: RetryEvent) -> str:
    """The ``verdict`` label of ``event``: ``none`` when the deadline passed before any
    attempt."""
    return "none" if event.verdict is None else event.verdict.value
