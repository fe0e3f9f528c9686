"""OpenTelemetry: retry decisions recorded on the current span (extra ``retry-transport[otel]``).

>>> from retry_transport import RetryTransport
>>> from retry_transport.otel import OpenTelemetryHook
>>> transport = RetryTransport(hooks=[OpenTelemetryHook()])

`retry_transport` itself never imports this module or OpenTelemetry. Only the API package
(``opentelemetry-api``) is needed; spans go wherever the application's SDK sends them.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from ._events import RetryEvent

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
    """

    __slots__ = ()

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
