"""retry_transport.prometheus with the real prometheus-client and a private CollectorRegistry."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from retry_transport import (
    RateLimit,
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport.prometheus import PrometheusHook
from retry_transport.testing import ScriptedTransport, Step

from .transport_helpers import FakeClock, Sleeps

POLICY = RetryPolicy(max_attempts=3)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """A sample's value; ``transport`` is its ``name`` label (empty: a transport without one)."""
    labels["name"] = labels.pop("transport", "")
    return registry.get_sample_value(name, labels)


def client(script: ScriptedTransport, hook: PrometheusHook, sleeps: Sleeps) -> httpx.Client:
    transport = SyncRetryTransport(
        script, policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock, hooks=[hook]
    )
    return httpx.Client(transport=transport)


def test_retries_and_give_ups_are_counted_by_host_and_verdict() -> None:
    registry = CollectorRegistry()
    sleeps = Sleeps()
    hook = PrometheusHook(registry=registry, clock=sleeps.clock)
    recovering = ScriptedTransport([503, Step.raising("ConnectError"), 200])
    failing = ScriptedTransport([503], repeat_last=True)
    with client(recovering, hook, sleeps) as one, client(failing, hook, sleeps) as two:
        assert one.get("http://a.test:8080/v1/x?key=secret").status_code == 200
        assert two.get("http://b.test/v1/x").status_code == 503

    assert (
        value(registry, "retry_transport_retries_total", host="a.test", verdict="congestion") == 1
    )
    assert value(registry, "retry_transport_retries_total", host="a.test", verdict="transient") == 1
    assert (
        value(registry, "retry_transport_retries_total", host="b.test", verdict="congestion") == 2
    )
    assert (
        value(registry, "retry_transport_giveups_total", host="b.test", verdict="congestion") == 1
    )
    assert (
        value(registry, "retry_transport_giveups_total", host="a.test", verdict="congestion")
        is None
    )
    assert b"secret" not in generate_latest(registry)


@pytest.mark.parametrize("name", [None, "nim"])
def test_seconds_an_attempt_waited_for_pacing_are_counted_by_host(name: str | None) -> None:
    # A declared limit of one attempt in 10 s: the retry waits 9 s more than its backoff, and
    # the window's margin (0.2 s).
    registry = CollectorRegistry()
    sleeps = Sleeps()
    hook = PrometheusHook(registry=registry, clock=sleeps.clock)
    events: list[RetryEvent] = []
    limiter = SharedLimiter(rate=RateLimit(1, per=10.0), clock=sleeps.clock, random=lambda: 0.0)
    transport = SyncRetryTransport(
        ScriptedTransport([503, 503]),
        policy=RetryPolicy(max_attempts=2),
        limiter=limiter,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=lambda: 0.5,
        hooks=[hook, events.append],
        name=name,
    )
    with httpx.Client(transport=transport) as paced:
        assert paced.post("http://a.test/v1/x", json={}).status_code == 503
    assert [(event.kind, event.paced) for event in events] == [
        ("retry", 0.0),
        ("give_up", pytest.approx(9.2)),
    ]
    assert registry.get_sample_value(
        "retry_transport_paced_seconds_total", {"host": "a.test", "name": name or ""}
    ) == pytest.approx(9.2)


def test_the_blocked_gauge_shows_the_block_and_counts_down() -> None:
    registry = CollectorRegistry()
    sleeps = Sleeps()
    scrape_time = FakeClock()
    hook = PrometheusHook(registry=registry, clock=scrape_time)
    limited = ScriptedTransport([Step(429, headers={"retry-after": "30"}), 200])
    seen: list[float | None] = []

    def scrape(_: object) -> None:
        seen.append(value(registry, "retry_transport_blocked_seconds", host="api.test"))

    transport = SyncRetryTransport(
        limited,
        policy=POLICY,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        hooks=[hook, scrape],
    )
    with httpx.Client(transport=transport) as http:
        assert http.get("http://api.test/v1/x").status_code == 200
    assert seen == [30.0]  # scraped while the retry was being scheduled
    assert sleeps.waits == [30.0]
    scrape_time.now += 20
    assert value(registry, "retry_transport_blocked_seconds", host="api.test") == 10.0
    scrape_time.now += 10
    assert value(registry, "retry_transport_blocked_seconds", host="api.test") == 0.0
    scrape_time.now += 10
    assert value(registry, "retry_transport_blocked_seconds", host="api.test") == 0.0


@pytest.mark.anyio
async def test_async_transport_counts_too() -> None:
    registry = CollectorRegistry()
    sleeps = Sleeps()
    hook = PrometheusHook(registry=registry, clock=sleeps.clock)
    script = ScriptedTransport(
        [Step.json(400, {"error": {"message": "DEGRADED function cannot be invoked"}}), 200]
    )
    transport = RetryTransport(
        script, policy=POLICY, sleep=sleeps, clock=sleeps.clock, hooks=[hook]
    )
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.post("http://nim.test/v1/chat/completions", json={})).status_code == 200
    assert (
        value(registry, "retry_transport_retries_total", host="nim.test", verdict="transient") == 1
    )
    assert value(registry, "retry_transport_blocked_seconds", host="nim.test") == 0.0


def test_the_default_registry_is_prometheus_clients_global_one() -> None:
    hook = PrometheusHook()
    try:
        assert (
            REGISTRY.get_sample_value(
                "retry_transport_retries_total", {"host": "x", "verdict": "congestion", "name": ""}
            )
            is None
        )
        hook.retries.labels(host="x", verdict="congestion", name="").inc()
        assert (
            REGISTRY.get_sample_value(
                "retry_transport_retries_total", {"host": "x", "verdict": "congestion", "name": ""}
            )
            == 1
        )
    finally:
        for metric in (hook.retries, hook.giveups, hook.blocked_seconds):
            REGISTRY.unregister(metric)


def test_a_second_hook_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    PrometheusHook(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusHook(registry=registry)


def test_importing_the_package_never_imports_this_module_or_prometheus_client() -> None:
    code = (
        "import sys, retry_transport, retry_transport.testing\n"
        "names = ('prometheus_client', 'retry_transport.prometheus')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
        "import retry_transport.prometheus\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_stalls_and_truncations_before_content_are_counted_apart() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    sse: dict[str, str] = {"content-type": "text/event-stream"}
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    whole = start + b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    sleeps = Sleeps()
    replies = iter([httpx.ReadTimeout("slow"), None, None])
    bodies = [start, start, whole + b'event: message_stop\ndata: {"type":"message_stop"}\n\n']

    class Body(httpx.SyncByteStream):
        def __init__(self, body: bytes, error: Exception | None) -> None:
            self.body, self.error = body, error

        def __iter__(self) -> Any:
            yield self.body
            if self.error is not None:
                raise self.error

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=sse, stream=Body(bodies.pop(0), next(replies)))

    events: list[RetryEvent] = []
    transport = SyncRetryTransport(
        httpx.MockTransport(handler),
        policy=POLICY,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        hooks=[hook, events.append],
    )
    with httpx.Client(transport=transport) as http:
        assert http.post("http://s.test/v1/messages").status_code == 200
    assert [e.cause for e in events] == [
        "stream stalled before its first content",
        "stream truncated before its first content",
    ]
    for kind in ("stall", "truncation"):
        labels = {"host": "s.test", "kind": kind, "name": ""}
        assert registry.get_sample_value("retry_transport_stream_failures_total", labels) == 1


def test_the_transport_name_is_a_label_of_every_metric() -> None:
    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry, clock=lambda: 100.0)
    sleeps = Sleeps()
    script = ScriptedTransport([Step(429, headers={"retry-after": "3"}), 200, 503, 200])
    for name in ("nim", "deepseek"):
        transport = SyncRetryTransport(
            script, policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock, hooks=[hook], name=name
        )
        with httpx.Client(transport=transport) as http:
            assert http.post("http://api.test/v1/x", json={}).status_code == 200
    retries = "retry_transport_retries_total"
    assert value(registry, retries, host="api.test", verdict="congestion", transport="nim") == 1
    assert (
        value(registry, retries, host="api.test", verdict="congestion", transport="deepseek") == 1
    )
    assert value(registry, retries, host="api.test", verdict="congestion") is None
    blocked = "retry_transport_blocked_seconds"
    assert value(registry, blocked, host="api.test", transport="nim") == 3.0


def test_watched_limiters_show_headroom_per_origin_and_model_never_the_key() -> None:
    from retry_transport import SharedLimiter

    registry = CollectorRegistry()
    hook = PrometheusHook(registry=registry)
    limiter = SharedLimiter()
    hook.watch(limiter)
    hook.watch(SharedLimiter())  # a second limiter: one collector reads both
    headers = [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "42"),
        ("x-ratelimit-reset-requests", "18s"),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, json={})

    transport = SyncRetryTransport(httpx.MockTransport(answer), limiter=limiter)
    with httpx.Client(transport=transport) as http:
        for key in ("sk-one", "sk-two"):
            http.post(
                "https://api.test/v1/chat/completions",
                json={"model": "gpt-x"},
                headers={"authorization": f"Bearer {key}"},
            )
    labels = {"origin": "https://api.test", "model": "gpt-x", "dimension": "requests"}
    assert registry.get_sample_value("retry_transport_headroom", labels) == 42.0
    assert registry.get_sample_value("retry_transport_pace", labels) == pytest.approx(1.0)
    text = generate_latest(registry).decode()
    assert "sk-one" not in text
    assert "sk-two" not in text
    assert "key=" not in text


def test_watched_headroom_is_bounded_and_idle_scopes_vanish() -> None:
    from retry_transport import SharedLimiter

    now = [0.0]
    registry = CollectorRegistry()
    limiter = SharedLimiter(clock=lambda: now[0])
    PrometheusHook(registry=registry).watch(limiter)
    headers = [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "10"),
        ("x-ratelimit-reset-requests", "50s"),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, json={})

    def sleep(seconds: float) -> None:
        now[0] += seconds

    transport = SyncRetryTransport(
        httpx.MockTransport(answer), limiter=limiter, clock=lambda: now[0], sleep=sleep
    )
    with httpx.Client(transport=transport) as http:
        for n in range(40):
            http.post("https://api.test/v1/chat/completions", json={"model": f"m{n:02d}"})
    assert now[0] == 0.0  # one request per model: none was paced
    text = generate_latest(registry).decode()
    rows = [line for line in text.splitlines() if line.startswith("retry_transport_headroom{")]
    assert len(rows) == 26  # 25 models by name, the rest as one
    other = {"origin": "https://api.test", "model": "other", "dimension": "requests"}
    assert registry.get_sample_value("retry_transport_headroom", other) == 10.0
    now[0] += 601.0
    text = generate_latest(registry).decode()
    assert "retry_transport_headroom{" not in text
