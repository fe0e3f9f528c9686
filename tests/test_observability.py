"""What users see of retry decisions: log records with structured fields, and hooks.

Requests go to the real loopback upstream; sleeping is injected, never real. Every request
carries secrets in its query, headers and body, and the upstream answers with secrets in its
headers and body: none of them may reach a log record or a hook's event.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from retry_transport import (
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SyncRetryTransport,
    Verdict,
)
from retry_transport.testing import ScriptedTransport, Step
from retry_transport.testing.upstream import Reply, Upstream, openai_chat, openai_error

from .transport_helpers import Sleeps

PATH = "/v1/chat/completions"
SECRETS = ("sk-query-secret", "sk-header-secret", "sk-body-secret", "up-body-secret", "up-hdr")
POLICY = RetryPolicy(max_attempts=3)


def half() -> float:
    """The injected random source: backoff waits are exactly half their cap."""
    return 0.5


def url(up: Upstream) -> str:
    return f"{up.url}{PATH}?api-key=sk-query-secret"


def send_kwargs() -> dict[str, Any]:
    return {
        "headers": {"Authorization": "Bearer sk-header-secret"},
        "json": {"model": "m", "messages": [{"role": "user", "content": "sk-body-secret"}]},
    }


def busy(status: int = 503, *headers: tuple[str, str]) -> Reply:
    return openai_error(
        status, "busy, see up-body-secret", headers=(("x-upstream-token", "up-hdr"), *headers)
    )


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures the ``retry_transport`` logger, DEBUG and up."""
    caplog.set_level(logging.DEBUG, logger="retry_transport")
    return caplog


def ours(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "retry_transport" and (level is None or r.levelno == level)
    ]


def fields(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key.startswith("retry_")}


def assert_no_secrets(records: list[logging.LogRecord]) -> None:
    for record in records:
        text = record.getMessage() + repr(vars(record))
        for secret in SECRETS:
            assert secret not in text, (secret, record.getMessage())


def sync_client(up: Upstream, sleeps: Sleeps, **kw: Any) -> httpx.Client:
    transport = SyncRetryTransport(
        httpx.HTTPTransport(),
        policy=POLICY,
        sleep=sleeps.sync,
        clock=sleeps.clock,
        random=half,
        **kw,
    )
    return httpx.Client(transport=transport)


def async_client(up: Upstream, sleeps: Sleeps, **kw: Any) -> httpx.AsyncClient:
    transport = RetryTransport(
        httpx.AsyncHTTPTransport(),
        policy=POLICY,
        sleep=sleeps,
        clock=sleeps.clock,
        random=half,
        **kw,
    )
    return httpx.AsyncClient(transport=transport)


# -- logging ----------------------------------------------------------------------------------


def test_each_retry_logs_one_info_record_with_structured_fields(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(503), busy(429, ("retry-after", "2")), openai_chat("ok"))
    sleeps = Sleeps()
    with sync_client(upstream, sleeps) as client:
        assert client.post(url(upstream), **send_kwargs()).status_code == 200

    infos = ours(records, logging.INFO)
    assert len(infos) == 2
    assert ours(records, logging.WARNING) == []
    first, second = (fields(record) for record in infos)
    target = upstream.url + PATH
    assert first == {
        "retry_event": "retry",
        "retry_method": "POST",
        "retry_url": target,
        "retry_attempt": 1,
        "retry_max_attempts": 3,
        "retry_verdict": "congestion",
        "retry_reason": first["retry_reason"],
        "retry_delay": 1.0,  # full jitter: uniform(0, base 2.0), random() == 0.5
        "retry_status": 503,
        "retry_exception": None,
        "retry_blocked_for": pytest.approx(1.0),  # a congestion retry blocks for its wait
        "retry_cause": first["retry_reason"],
        "retry_paced": 0.0,
    }
    assert isinstance(first["retry_reason"], str)
    assert first["retry_reason"]
    assert second["retry_attempt"] == 2
    assert second["retry_status"] == 429
    assert second["retry_delay"] == 2.0  # Retry-After, exactly
    assert second["retry_blocked_for"] == pytest.approx(2.0)
    message = infos[0].getMessage()
    assert message.startswith(f"retrying POST {target} in ")
    assert "attempt 1/3" in message
    assert "congestion" in message
    assert_no_secrets(ours(records))


def test_give_up_logs_one_warning_with_the_reason(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(503))
    with sync_client(upstream, Sleeps()) as client:
        response = client.post(url(upstream), **send_kwargs())
    assert response.status_code == 503
    assert len(ours(records, logging.INFO)) == 2
    (warning,) = ours(records, logging.WARNING)
    extra = fields(warning)
    assert extra["retry_event"] == "give_up"
    assert extra["retry_attempt"] == 3
    assert extra["retry_reason"] == "3 attempts made"
    assert extra["retry_verdict"] == "congestion"
    assert extra["retry_status"] == 503
    assert extra["retry_delay"] is None
    assert warning.getMessage().startswith(f"giving up on POST {upstream.url}{PATH} after 3 ")
    assert_no_secrets(ours(records))


def test_an_exception_is_logged_by_its_type_name(records: pytest.LogCaptureFixture) -> None:
    script = ScriptedTransport([Step.raising("ConnectError"), Step(200)])
    sleeps = Sleeps()
    transport = SyncRetryTransport(script, policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock)
    with httpx.Client(transport=transport) as client:
        assert client.get("http://up.test/v1/models?key=sk-query-secret").status_code == 200
    (info,) = ours(records, logging.INFO)
    extra = fields(info)
    assert extra["retry_exception"] == "ConnectError"
    assert extra["retry_status"] is None
    assert extra["retry_verdict"] == "transient"
    assert extra["retry_url"] == "http://up.test/v1/models"
    assert extra["retry_blocked_for"] == 0.0  # transient failures block nobody
    assert_no_secrets(ours(records))


def test_a_response_never_retried_is_at_most_a_debug_line(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, openai_error(404, "no such model up-body-secret", "invalid_request"))
    with sync_client(upstream, Sleeps()) as client:
        assert client.post(url(upstream), **send_kwargs()).status_code == 404
    assert [r.levelno for r in ours(records)] == [logging.DEBUG]
    assert_no_secrets(ours(records))


def test_a_success_logs_nothing(upstream: Upstream, records: pytest.LogCaptureFixture) -> None:
    with sync_client(upstream, Sleeps()) as client:
        assert client.post(url(upstream), **send_kwargs()).status_code == 200
    assert ours(records) == []


@pytest.mark.anyio
async def test_async_transport_logs_the_same_fields(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(502), openai_chat("ok"))
    async with async_client(upstream, Sleeps()) as client:
        assert (await client.post(url(upstream), **send_kwargs())).status_code == 200
    (info,) = ours(records, logging.INFO)
    assert fields(info)["retry_status"] == 502
    assert fields(info)["retry_url"] == upstream.url + PATH
    assert_no_secrets(ours(records))


# -- hooks ------------------------------------------------------------------------------------


class Recorder:
    """A plain hook and a coroutine hook that record what they are told."""

    def __init__(self) -> None:
        self.plain: list[RetryEvent] = []
        self.awaited: list[RetryEvent] = []

    def hook(self, event: RetryEvent) -> None:
        self.plain.append(event)

    async def async_hook(self, event: RetryEvent) -> None:
        self.awaited.append(event)


def explode(event: RetryEvent) -> None:
    raise RuntimeError(f"hook bug on {event.kind}")


async def async_explode(event: RetryEvent) -> None:
    raise RuntimeError(f"async hook bug on {event.kind}")


def errors_of(records: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return ours(records, logging.ERROR)


@pytest.mark.anyio
async def test_async_transport_tells_plain_and_coroutine_hooks_each_decision(
    upstream: Upstream,
) -> None:
    upstream.script(PATH, busy(503))
    seen = Recorder()
    async with async_client(upstream, Sleeps(), hooks=[seen.hook, seen.async_hook]) as client:
        assert (await client.post(url(upstream), **send_kwargs())).status_code == 503
    assert [e.kind for e in seen.plain] == ["retry", "retry", "give_up"]
    assert seen.awaited == seen.plain
    first = seen.plain[0]
    assert first.method == "POST"
    assert first.url == upstream.url + PATH
    assert (first.attempt, first.max_attempts, first.status) == (1, 3, 503)
    assert first.verdict is Verdict.CONGESTION
    assert first.delay is not None
    assert seen.plain[-1].reason == "3 attempts made"
    assert all(secret not in repr(seen.plain) for secret in SECRETS)


def test_events_are_frozen(upstream: Upstream) -> None:
    upstream.script(PATH, busy(503), openai_chat())
    seen = Recorder()
    with sync_client(upstream, Sleeps(), hooks=[seen.hook]) as client:
        client.post(url(upstream), **send_kwargs())
    (event,) = seen.plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.attempt = 5  # type: ignore[misc]


@pytest.mark.anyio
async def test_a_raising_hook_is_logged_and_never_breaks_the_request(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(503), openai_chat("recovered"))
    seen = Recorder()
    hooks = [explode, async_explode, seen.hook, seen.async_hook]
    async with async_client(upstream, Sleeps(), hooks=hooks) as client:
        response = await client.post(url(upstream), **send_kwargs())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "recovered"
    assert [e.kind for e in seen.plain] == ["retry"]  # later hooks still told
    assert len(seen.awaited) == 1
    failures = errors_of(records)
    assert len(failures) == 2
    assert all(r.exc_info is not None for r in failures)
    assert {str(r.exc_info[1]) for r in failures if r.exc_info} == {
        "hook bug on retry",
        "async hook bug on retry",
    }


def test_sync_transport_tells_its_hooks_and_survives_a_raising_one(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(529), busy(503), openai_chat("recovered"))
    seen = Recorder()
    with sync_client(upstream, Sleeps(), hooks=[explode, seen.hook]) as client:
        response = client.post(url(upstream), **send_kwargs())
    assert response.status_code == 200
    assert [(e.kind, e.attempt, e.status) for e in seen.plain] == [
        ("retry", 1, 529),
        ("retry", 2, 503),
    ]
    assert len(errors_of(records)) == 2
    assert upstream.count(PATH) == 3


def test_a_coroutine_hook_on_the_sync_transport_is_reported_not_awaited(
    upstream: Upstream, records: pytest.LogCaptureFixture
) -> None:
    upstream.script(PATH, busy(503), openai_chat())
    seen = Recorder()
    with sync_client(upstream, Sleeps(), hooks=[seen.async_hook, seen.hook]) as client:
        assert client.post(url(upstream), **send_kwargs()).status_code == 200
    assert seen.awaited == []
    assert len(seen.plain) == 1
    (failure,) = errors_of(records)
    assert "async hook on a sync transport" in failure.getMessage()
