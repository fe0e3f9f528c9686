"""OpenTelemetry: retry decisions recorded on the current span (extra ``retry-transport[otel]``).

>>> from retry_transport import RetryTransport
>>> from retry_transport.otel import OpenTelemetryHook
>>> transport = RetryTransport(hooks=[OpenTelemetryHook()])

`retry_transport` itself never imports this module or OpenTelemetry. Only the API package
(``opentelemetry-api``) is needed; spans and metrics go wherever the application's SDK sends
them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.util.types import AttributeValue

from ._events import RetryEvent
from ._headroom import HeadroomSample, headroom_samples
from ._limiter import SharedLimiter
from ._metric_names import HEADROOM, PACE

__all__ = ["RESEND_COUNT", "OpenTelemetryHook"]

RESEND_COUNT = "http.request.resend_count"
"""The semantic-convention attribute: how many times the request was sent again."""


class OpenTelemetryHook:
    """A hook for ``hooks=[...]`` that records each retry decision on the current span.

    Every scheduled retry sets `RESEND_COUNT` (``http.request.resend_count``) to the number of
    the resend about to be made and adds an event ``retry_transport.retry``; a give-up sets it
    to the number of resends actually made (left unset if no resend was ever announced) and
    adds an event ``retry_transport.give_up``. Event attributes: ``http.request.method``,
    ``url.full`` (scheme, host, port and path: never the query), ``http.response.status_code``
    or ``error.type``, and ``retry_transport.attempt``, ``.max_attempts``, ``.verdict``,
    ``.reason``, ``.delay`` (seconds, retries only), ``.blocked_for`` (seconds of shared
    block left), ``.paced`` (seconds the attempt waited before it was sent, when it did) and
    ``.name`` (the transport's ``name=`` label, when it has one). No header or body is ever
    recorded.

    The current span is the one active where the request is sent: an HTTP client span if the
    client was instrumented with ``HTTPXClientInstrumentor().instrument_client(client)`` (which
    wraps this transport, so one span covers all attempts), or else the application's own span
    around the call. With no span recording, the hook does nothing. Use one hook for any number
    of transports, sync or async.

    `watch` (a limiter) adds two observable gauges, read whenever the application's metric
    reader collects: ``retry_transport_headroom`` and ``retry_transport_pace``, the names and
    attributes (``origin``, ``model``, ``dimension``) of `retry_transport.prometheus`'s. They
    come from ``meter_provider`` (default: the global one, as set by the application). An
    instrument name is created once per meter provider: watch every limiter through one hook.
    """

    __slots__ = ("_lock", "_meter_provider", "_watched")

    def __init__(self, *, meter_provider: MeterProvider | None = None) -> None:
        self._meter_provider = meter_provider
        self._lock = threading.Lock()
        self._watched: list[SharedLimiter] = []

    def __call__(self, event: RetryEvent) -> None:
        """Record ``event`` on the current span."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        if event.kind == "retry":
            span.set_attribute(RESEND_COUNT, event.attempt)
        elif event.attempt > 1 or (
            # Given up while waiting to send the resend a retry event announced: correct it.
            event.attempt == 1 and event.status is None and event.exception is None
        ):
            span.set_attribute(RESEND_COUNT, event.attempt - 1)
        span.add_event(f"retry_transport.{event.kind}", _attributes(event))

    def watch(self, limiter: SharedLimiter) -> None:
        """Observe ``limiter``'s per-scope headroom (a `SharedLimiter` or `RedisLimiter`).

        ``retry_transport_headroom{origin, model, dimension}`` is what the provider's
        rate-limit headers last said is left (the least over the keys of one origin and
        model: neither a key nor its fingerprint is ever an attribute), and
        ``retry_transport_pace`` the refill per second it paces against. The attribute set
        is bounded: past 10 origins or 25 models of one origin (in sorted order) the rest
        are reported folded as ``other``; scopes the limiter has forgotten (idle for ten
        minutes) are not reported.
        """
        with self._lock:
            first = not self._watched
            self._watched.append(limiter)
        if first:
            meter = metrics.get_meter("retry_transport", meter_provider=self._meter_provider)
            meter.create_observable_gauge(
                HEADROOM.name, callbacks=[self._observe_headroom], description=HEADROOM.help
            )
            meter.create_observable_gauge(
                PACE.name, callbacks=[self._observe_pace], unit="1/s", description=PACE.help
            )

    def _samples(self) -> list[HeadroomSample]:
        with self._lock:
            watched = list(self._watched)
        return headroom_samples(watched)

    def _observe_headroom(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sample.remaining, sample.labels) for sample in self._samples()]

    def _observe_pace(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sample.pace, sample.labels) for sample in self._samples()]


def _attributes(event: RetryEvent) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": event.method,
        "url.full": event.url,
        "retry_transport.attempt": event.attempt,
        "retry_transport.max_attempts": event.max_attempts,
        "retry_transport.verdict": "none" if event.verdict is None else event.verdict.value,
        "retry_transport.reason": event.reason,
        "retry_transport.blocked_for": event.blocked_for,
    }
    if event.paced > 0.0:
        attributes["retry_transport.paced"] = event.paced
    if event.delay is not None:
        attributes["retry_transport.delay"] = event.delay
    if event.transport_name is not None:
        attributes["retry_transport.name"] = event.transport_name
    if event.status is not None:
        attributes["http.response.status_code"] = event.status
    if event.exception is not None:
        attributes["error.type"] = event.exception
    return attributes
