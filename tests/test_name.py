"""The ``name=`` label: on every log record, on `RetryEvent`, and on the hooks' metrics."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import httpx
import pytest

from retry_transport import RetryEvent, RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing import ScriptedTransport, Step

from .transport_helpers import Sleeps

URL = "http://api.test/v1/chat/completions"
POLICY = RetryPolicy(max_attempts=2)


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "retry_transport"]


def sync_transport(script: ScriptedTransport, **kw: Any) -> SyncRetryTransport:
    sleeps = Sleeps()
    kw.setdefault("policy", POLICY)
    return SyncRetryTransport(script, sleep=sleeps.sync, clock=sleeps.clock, **kw)


def test_every_record_of_a_named_transport_carries_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="retry_transport")

    def broken_hook(event: RetryEvent) -> None:
        raise RuntimeError("hook bug")

    def broken_classifier(outcome: object) -> None:
        raise RuntimeError("classifier bug")

    script = ScriptedTransport([503, 503, 404])
    transport = sync_transport(
        script,
        name="nim",
        hooks=[broken_hook],
        policy=RetryPolicy(max_attempts=2, classifier=broken_classifier),
    )
    with httpx.Client(transport=transport) as client:
        assert client.post(URL, json={}).status_code == 503  # a retry, then a give-up
        assert client.post(URL, json={}).status_code == 404  # not retried: a DEBUG line
    records = ours(caplog)
    levels = {r.levelno for r in records}
    assert {logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR} <= levels
    assert [getattr(r, "retry_transport_name", None) for r in records] == ["nim"] * len(records)


def test_an_unnamed_transport_puts_no_name_field(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="retry_transport")
    with httpx.Client(transport=sync_transport(ScriptedTransport([503, 200]))) as client:
        assert client.get(URL).status_code == 200
    assert ours(caplog)
    assert not any(hasattr(r, "retry_transport_name") for r in ours(caplog))


@pytest.mark.anyio
async def test_hooks_are_told_the_name_on_the_async_transport() -> None:
    events: list[RetryEvent] = []
    sleeps = Sleeps()
    transport = RetryTransport(
        ScriptedTransport([Step(429, headers={"retry-after": "1"}), 200]),
        policy=POLICY,
        sleep=sleeps,
        clock=sleeps.clock,
        hooks=[events.append],
        name="deepseek",
    )
    assert transport.name == "deepseek"
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(URL)).status_code == 200
    assert [(e.kind, e.transport_name) for e in events] == [("retry", "deepseek")]
    assert events[0].log_extra()["retry_transport_name"] == "deepseek"


def test_events_default_to_no_name() -> None:
    events: list[RetryEvent] = []
    transport = sync_transport(ScriptedTransport([503, 200]), hooks=[events.append])
    assert transport.name is None
    with httpx.Client(transport=transport) as client:
        client.get(URL)
    assert [e.transport_name for e in events] == [None]
    assert "retry_transport_name" not in events[0].log_extra()


@pytest.mark.parametrize("name", [3, b"nim", ["nim"]])
def test_a_name_that_is_no_string_raises_type_error_naming_it(name: object) -> None:
    with pytest.raises(TypeError, match="name"):
        SyncRetryTransport(ScriptedTransport([200]), name=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_name_raises_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match="name must not be empty"):
        SyncRetryTransport(ScriptedTransport([200]), name=name)


def test_dict_config_can_route_the_logger_and_keep_the_structured_fields() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"keep": {"()": Keep, "level": "INFO"}},
            "loggers": {
                "retry_transport": {"handlers": ["keep"], "level": "INFO", "propagate": False}
            },
        }
    )
    logger = logging.getLogger("retry_transport")
    try:
        with httpx.Client(
            transport=sync_transport(ScriptedTransport([503, 200]), name="nim")
        ) as client:
            assert client.get(URL).status_code == 200
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    assert [(r.levelname, r.retry_transport_name, r.retry_status) for r in seen] == [  # type: ignore[attr-defined]
        ("INFO", "nim", 503)
    ]
