"""retry_transport.otel with the real OpenTelemetry SDK and an in-memory span exporter.

A private TracerProvider (never the global one) records the spans; the hook writes to
whichever span is current where the request is sent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.instrumentation.httpx import SyncOpenTelemetryTransport
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from retry_transport import (
    RateLimit,
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport._scope import Fingerprinter
from retry_transport.otel import RESEND_COUNT, OpenTelemetryHook
from retry_transport.testing import ScriptedTransport, Step

from .transport_helpers import FakeClock, Sleeps

URL = "http://api.test/v1/chat/completions?key=sk-secret"
POLICY = RetryPolicy(max_attempts=3)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.clear()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests")
    provider.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def sync_transport(script: ScriptedTransport) -> SyncRetryTransport:
    sleeps = Sleeps()
    return SyncRetryTransport(
        script, policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock, hooks=[OpenTelemetryHook()]
    )


def test_retries_set_the_resend_count_and_add_one_event_each(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    script = ScriptedTransport([503, Step.raising("ConnectError"), 200])
    with (
        tracer.start_as_current_span("chat"),
        httpx.Client(transport=sync_transport(script)) as client,
    ):
        assert client.post(URL, json={}).status_code == 200
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes[RESEND_COUNT] == 2
    assert [event.name for event in span.events] == ["retry_transport.retry"] * 2
    first, second = (dict(event.attributes or {}) for event in span.events)
    assert first == {
        "http.request.method": "POST",
        "url.full": "http://api.test/v1/chat/completions",
        "retry_transport.attempt": 1,
        "retry_transport.max_attempts": 3,
        "retry_transport.verdict": "congestion",
        "retry_transport.reason": first["retry_transport.reason"],
        "retry_transport.delay": first["retry_transport.delay"],
        "retry_transport.blocked_for": first["retry_transport.blocked_for"],
        "http.response.status_code": 503,
    }
    assert second["error.type"] == "ConnectError"
    assert second["retry_transport.verdict"] == "transient"
    assert "http.response.status_code" not in second
    assert script.call_count == 3


def test_a_give_up_adds_its_event_and_counts_only_resends_made(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    script = ScriptedTransport([529], repeat_last=True)
    with (
        tracer.start_as_current_span("chat"),
        httpx.Client(transport=sync_transport(script)) as client,
    ):
        assert client.post(URL, json={}).status_code == 529
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes[RESEND_COUNT] == 2  # three attempts: two resends
    names = [event.name for event in span.events]
    assert names == ["retry_transport.retry", "retry_transport.retry", "retry_transport.give_up"]
    give_up = dict(span.events[-1].attributes or {})
    assert give_up["retry_transport.reason"] == "3 attempts made"
    assert "retry_transport.delay" not in give_up
    assert script.call_count == 3


def test_an_attempt_that_waited_for_pacing_says_how_long(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    # A declared limit of one attempt in 10 s: the resend waits 9 s more than its backoff,
    # and the window's margin (0.2 s).
    sleeps = Sleeps()
    limiter = SharedLimiter(rate=RateLimit(1, per=10.0), clock=sleeps.clock, random=lambda: 0.0)
    transport = SyncRetryTransport(
        ScriptedTransport([503, 503]),
        policy=RetryPolicy(max_attempts=2),
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
        hooks=[OpenTelemetryHook()],
    )
    with tracer.start_as_current_span("chat"), httpx.Client(transport=transport) as client:
        assert client.post(URL, json={}).status_code == 503
    retry, give_up = (dict(event.attributes or {}) for event in only_span(exporter).events)
    assert "retry_transport.paced" not in retry  # the first attempt went at once
    assert give_up["retry_transport.paced"] == pytest.approx(9.2)


def test_a_resend_announced_but_never_sent_is_not_counted(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    # After the retry is scheduled, another request's block outlasts the deadline: the resend
    # is never sent and the give-up puts the count back to the resends made, none.
    sleeps = Sleeps()
    limiter = SharedLimiter(clock=sleeps.clock)

    def long_block(event: RetryEvent) -> None:
        if event.kind == "retry":
            limiter.block_sync(100.0)

    script = ScriptedTransport([503, 200])
    transport = SyncRetryTransport(
        script,
        policy=RetryPolicy(max_attempts=3, deadline=10.0),
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        hooks=[OpenTelemetryHook(), long_block],
    )
    with tracer.start_as_current_span("chat"), httpx.Client(transport=transport) as client:
        assert client.get(URL).status_code == 503
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes[RESEND_COUNT] == 0
    assert [event.name for event in span.events] == [
        "retry_transport.retry",
        "retry_transport.give_up",
    ]
    assert script.call_count == 1


def test_a_give_up_at_the_first_attempt_sets_no_resend_count(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    def body() -> Iterator[bytes]:
        yield b"a streamed body cannot be sent twice"

    script = ScriptedTransport([503, 200])
    with (
        tracer.start_as_current_span("chat"),
        httpx.Client(transport=sync_transport(script)) as client,
    ):
        assert client.post(URL, content=body()).status_code == 503
    span = only_span(exporter)
    assert RESEND_COUNT not in (span.attributes or {})
    (give_up,) = span.events
    assert give_up.name == "retry_transport.give_up"
    assert dict(give_up.attributes or {})["retry_transport.reason"] == (
        "request body cannot be replayed"
    )
    assert script.call_count == 1


def test_a_request_that_is_not_retried_leaves_the_span_alone(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    script = ScriptedTransport([404])
    with (
        tracer.start_as_current_span("chat"),
        httpx.Client(transport=sync_transport(script)) as client,
    ):
        assert client.get(URL).status_code == 404
    span = only_span(exporter)
    assert RESEND_COUNT not in (span.attributes or {})
    assert span.events == ()


def test_without_a_recording_span_the_hook_does_nothing() -> None:
    script = ScriptedTransport([503, 200])
    with httpx.Client(transport=sync_transport(script)) as client:
        assert client.get(URL).status_code == 200
    assert script.call_count == 2


@pytest.mark.anyio
async def test_async_transport_records_on_the_callers_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    script = ScriptedTransport([502, 200])
    sleeps = Sleeps()
    transport = RetryTransport(
        script, policy=POLICY, sleep=sleeps, clock=sleeps.clock, hooks=[OpenTelemetryHook()]
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("chat"):
            assert (await client.get(URL)).status_code == 200
    chat = next(span for span in exporter.get_finished_spans() if span.name == "chat")
    outer = next(span for span in exporter.get_finished_spans() if span.name == "outer")
    assert chat.attributes is not None
    assert chat.attributes[RESEND_COUNT] == 1
    assert [event.name for event in chat.events] == ["retry_transport.retry"]
    assert outer.events == ()
    assert sleeps.waits != []


def test_an_instrumented_client_gets_one_span_for_all_attempts(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    script = ScriptedTransport([429, 503, 200])
    instrumented = SyncOpenTelemetryTransport(sync_transport(script), tracer_provider=provider)
    with httpx.Client(transport=instrumented) as client:
        assert client.post(URL, json={}).status_code == 200
    provider.shutdown()
    span = only_span(exporter)  # the HTTP client span, around the retries
    assert span.attributes is not None
    assert span.attributes[RESEND_COUNT] == 2
    assert len(span.events) == 2
    assert script.call_count == 3


def test_importing_the_package_never_imports_this_module_or_opentelemetry() -> None:
    code = (
        "import sys, retry_transport, retry_transport.testing\n"
        "names = ('opentelemetry', 'retry_transport.otel')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
        "import retry_transport.otel\n"
        "print('opentelemetry.trace' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_a_named_transport_puts_its_name_on_every_event(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    sleeps = Sleeps()
    transport = SyncRetryTransport(
        ScriptedTransport([503, 503]),
        policy=RetryPolicy(max_attempts=2),
        sleep=sleeps.sync,
        clock=sleeps.clock,
        hooks=[OpenTelemetryHook()],
        name="nim",
    )
    with tracer.start_as_current_span("chat"), httpx.Client(transport=transport) as client:
        assert client.post(URL, json={}).status_code == 503
    events = only_span(exporter).events
    assert [e.name for e in events] == ["retry_transport.retry", "retry_transport.give_up"]
    assert [dict(e.attributes or {})["retry_transport.name"] for e in events] == ["nim", "nim"]


# -- headroom gauges -------------------------------------------------------------------------


class Metrics:
    """A private MeterProvider (never the global one) and its in-memory reader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])


@pytest.fixture
def meters() -> Iterator[Metrics]:
    made = Metrics()
    yield made
    made.provider.shutdown()


def gauges(reader: InMemoryMetricReader) -> dict[str, dict[tuple[str, str, str], float]]:
    """Each gauge's points, by (origin, model, dimension); a gauge with none is absent."""
    found: dict[str, dict[tuple[str, str, str], float]] = {}
    data = reader.get_metrics_data()
    if data is None:  # no instrument observed anything
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert isinstance(metric.data, Gauge)
                points = found.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    assert sorted(attributes) == ["dimension", "model", "origin"]
                    key = (
                        str(attributes["origin"]),
                        str(attributes["model"]),
                        str(attributes["dimension"]),
                    )
                    points[key] = float(point.value)
    return found


def ratelimited(remaining: dict[str, int]) -> httpx.MockTransport:
    """OpenAI-style rate-limit headers: ``remaining[key]`` requests left of 60 per minute."""

    def answer(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        remaining[key] -= 1
        headers = [
            ("x-ratelimit-limit-requests", "60"),
            ("x-ratelimit-remaining-requests", str(remaining[key])),
            ("x-ratelimit-reset-requests", "1m0s"),
        ]
        return httpx.Response(200, headers=headers, json={})

    return httpx.MockTransport(answer)


@pytest.mark.anyio
async def test_watched_limiters_are_observed_per_origin_and_model_never_the_key(
    meters: Metrics,
) -> None:
    hook = OpenTelemetryHook(meter_provider=meters.provider)
    limiter = SharedLimiter(fingerprint_key=b"otel-test")
    hook.watch(limiter)
    hook.watch(SharedLimiter())  # a second limiter: the same two gauges read both
    remaining = {"sk-one": 50, "sk-two": 20}
    transport = RetryTransport(ratelimited(remaining), limiter=limiter)
    async with httpx.AsyncClient(transport=transport) as client:
        for key, model in (("sk-one", "gpt-a"), ("sk-two", "gpt-a"), ("sk-one", "gpt-b")):
            response = await client.post(
                "https://api.test/v1/chat/completions",
                json={"model": model},
                headers={"authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200
    found = gauges(meters.reader)
    assert found["retry_transport_headroom"] == {
        ("https://api.test", "gpt-a", "requests"): 19.0,  # the least over the two keys
        ("https://api.test", "gpt-b", "requests"): 48.0,
    }
    assert set(found["retry_transport_pace"]) == set(found["retry_transport_headroom"])
    assert all(pace > 0.0 for pace in found["retry_transport_pace"].values())
    shown = repr(meters.reader.get_metrics_data())
    for secret in (b"sk-one", b"sk-two"):
        assert secret.decode() not in shown
        assert Fingerprinter(b"otel-test")(secret) not in shown


def test_the_gauges_are_bounded_and_idle_scopes_vanish(meters: Metrics) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(clock=clock)
    OpenTelemetryHook(meter_provider=meters.provider).watch(limiter)
    models = [f"m{n:02d}" for n in range(30)]
    # 59 of 60 left: a pace too slow for the fast path's headroom gate to open, so every
    # answer's headers are read (with ample headroom only one in a run of them is scanned).
    transport = SyncRetryTransport(ratelimited({"sk": 60}), limiter=limiter, clock=clock)
    with httpx.Client(transport=transport) as client:
        for model in models:
            client.post(
                "https://api.test/v1/chat/completions",
                json={"model": model},
                headers={"authorization": "Bearer sk"},
            )
    shown = {model for _, model, _ in gauges(meters.reader)["retry_transport_headroom"]}
    assert shown == {*models[:25], "other"}
    clock.now += 601.0  # ten minutes without a request to any of them
    assert gauges(meters.reader).get("retry_transport_headroom", {}) == {}


def test_a_paced_attempt_says_how_long_it_waited_on_its_event(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    sleeps = Sleeps()
    limiter = SharedLimiter(rate=RateLimit(requests=1, per=5.0), clock=sleeps.clock)
    transport = SyncRetryTransport(
        ScriptedTransport([503, 503, 200]),
        policy=POLICY,
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
        hooks=[OpenTelemetryHook()],
    )
    with tracer.start_as_current_span("chat"), httpx.Client(transport=transport) as client:
        response = client.post(URL, json={})
    assert response.status_code == 200
    history = response.extensions["retry_history"]
    events = [dict(e.attributes or {}) for e in only_span(exporter).events]
    assert "retry_transport.paced" not in events[0]  # the first attempt went at once
    assert events[1]["retry_transport.paced"] == history[1].paced
    assert history[1].paced > 0.0
