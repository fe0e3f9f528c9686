"""retry_transport.testing as a user's test suite uses it: the switch, the pytest fixture and
the scripted transport, for httpx and httpx2, sync and async, and under the real SDKs."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

import retry_transport.testing
from retry_transport import RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing import (
    Received,
    ScriptedTransport,
    ScriptExhausted,
    Step,
    is_testing,
    no_waiting,
    retry_no_wait,  # noqa: F401 - the fixture, registered for this module
)

from .transport_helpers import FLAVOURS, Sleeps, lib

ROOT = Path(__file__).resolve().parent.parent
TRANSIENT_400 = Step.json(
    400, {"error": {"message": "Provider returned error: Invalid request sent to provider"}}
)


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def forbidden_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s although waiting is off")


async def forbidden_async_sleep(seconds: float) -> None:
    forbidden_sleep(seconds)


# -- the switch -------------------------------------------------------------------------------


def test_no_waiting_makes_retries_skip_every_sleep(flavour: str) -> None:
    script = ScriptedTransport([503, 429, 200], flavour=flavour)  # type: ignore[arg-type]
    transport = SyncRetryTransport(script, sleep=forbidden_sleep)
    with no_waiting(), lib(flavour).Client(transport=transport) as client:
        assert is_testing()
        assert client.get("http://up.test/").status_code == 200
    assert not is_testing()
    assert script.call_count == 3


def test_waiting_is_back_after_the_block() -> None:
    sleeps = Sleeps()
    script = ScriptedTransport([503, 200])
    with no_waiting():
        pass
    transport = SyncRetryTransport(script, sleep=sleeps.sync, clock=sleeps.clock)
    with httpx.Client(transport=transport) as client:
        assert client.get("http://up.test/").status_code == 200
    assert len(sleeps.waits) == 1


def test_no_waiting_can_cap_attempts() -> None:
    script = ScriptedTransport([503], repeat_last=True)
    transport = SyncRetryTransport(script, policy=RetryPolicy(max_attempts=5))
    with no_waiting(max_attempts=2), httpx.Client(transport=transport) as client:
        assert client.get("http://up.test/").status_code == 503
    assert script.call_count == 2


def test_no_waiting_nests_and_restores_the_outer_setting() -> None:
    with no_waiting(max_attempts=3):
        with no_waiting():
            assert is_testing()
        assert is_testing()
        script = ScriptedTransport([503], repeat_last=True)
        with httpx.Client(transport=SyncRetryTransport(script)) as client:
            client.get("http://up.test/")
        assert script.call_count == 3
    assert not is_testing()


@pytest.mark.anyio
async def test_no_waiting_applies_to_the_async_transport(flavour: str) -> None:
    script = ScriptedTransport([502, Step.raising("ConnectError"), 200], flavour=flavour)  # type: ignore[arg-type]
    transport = RetryTransport(script, sleep=forbidden_async_sleep)
    with no_waiting():
        async with lib(flavour).AsyncClient(transport=transport) as client:
            assert (await client.get("http://up.test/")).status_code == 200
    assert script.call_count == 3


@pytest.mark.usefixtures("retry_no_wait")
def test_the_fixture_switches_waiting_off_for_the_test() -> None:
    assert is_testing()
    script = ScriptedTransport([Step.raising("ConnectError"), 200])
    with httpx.Client(transport=SyncRetryTransport(script, sleep=forbidden_sleep)) as client:
        assert client.get("http://up.test/").status_code == 200


USER_TEST = """
    import httpx
    import pytest

    from retry_transport import SyncRetryTransport
    from retry_transport.testing import ScriptedTransport, Step

    SLEPT = []


    def client():
        script = ScriptedTransport([Step.raising("ConnectError"), Step(200)])
        return httpx.Client(transport=SyncRetryTransport(script, sleep=SLEPT.append))


    def test_with_the_fixture(retry_no_wait):
        assert client().get("http://up.test/").status_code == 200
        assert SLEPT == []


    def test_without_it_waiting_is_back():
        assert client().get("http://up.test/").status_code == 200
        assert len(SLEPT) == 1


    @pytest.mark.usefixtures("retry_no_wait")
    def test_by_marker():
        SLEPT.clear()
        assert client().get("http://up.test/").status_code == 200
        assert SLEPT == []
"""


@pytest.mark.parametrize(
    "conftest",
    [
        'pytest_plugins = ["retry_transport.testing"]\n',
        "from retry_transport.testing import retry_no_wait  # noqa: F401\n",
    ],
    ids=["pytest_plugins", "import"],
)
def test_the_pytest_fixture_in_a_users_suite(tmp_path: Path, conftest: str) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


# -- the scripted transport -------------------------------------------------------------------


def test_it_is_a_transport_of_the_clients_library(flavour: str) -> None:
    module = lib(flavour)
    other = lib("httpx2" if flavour == "httpx" else "httpx")
    script = ScriptedTransport([200], flavour=flavour)  # type: ignore[arg-type]
    assert isinstance(script, ScriptedTransport)
    assert isinstance(script, module.BaseTransport)
    assert isinstance(script, module.AsyncBaseTransport)
    assert not isinstance(script, other.BaseTransport)
    with module.Client(transport=script) as client:
        response = client.get("http://up.test/")
    assert isinstance(response, module.Response)


def test_sync_client_gets_each_step_in_turn_and_every_request_is_recorded(flavour: str) -> None:
    script = ScriptedTransport(
        [
            Step(201, "created", {"x-id": "7"}),
            Step.json(404, {"error": "nope"}),
            Step(200, b"\x00bytes"),
        ],
        flavour=flavour,  # type: ignore[arg-type]
    )
    with lib(flavour).Client(transport=script) as client:
        first = client.post("http://up.test/a?q=1", json={"n": 1}, headers={"X-Key": "k"})
        second = client.get("http://up.test/b")
        third = client.put("http://up.test/c", content=b"raw")
    assert (first.status_code, first.text, first.headers["x-id"]) == (201, "created", "7")
    assert (second.status_code, second.json()) == (404, {"error": "nope"})
    assert second.headers["content-type"] == "application/json"
    assert third.content == b"\x00bytes"
    assert script.call_count == 3
    received = script.requests[0]
    assert isinstance(received, Received)
    assert (received.method, received.url) == ("POST", "http://up.test/a?q=1")
    assert (received.path, received.connection) == ("/a?q=1", 0)
    assert received.header("X-KEY") == "k"
    assert received.json() == {"n": 1}
    assert [r.method for r in script.requests] == ["POST", "GET", "PUT"]
    assert script.requests[2].content == b"raw"


@pytest.mark.anyio
async def test_async_client_is_served_the_same_way(flavour: str) -> None:
    script = ScriptedTransport([Step(503), Step(200, "ok")], flavour=flavour)  # type: ignore[arg-type]
    async with lib(flavour).AsyncClient(transport=script) as client:
        assert (await client.get("http://up.test/")).status_code == 503
        response = await client.post("http://up.test/", content=b"body")
    assert response.text == "ok"
    assert script.requests[1].content == b"body"


@pytest.mark.parametrize(
    "spec",
    ["ReadTimeout", "class", "instance"],
)
def test_a_step_can_raise_by_name_class_or_instance(flavour: str, spec: str) -> None:
    module = lib(flavour)
    exception: Any = {
        "ReadTimeout": "ReadTimeout",
        "class": module.ReadTimeout,
        "instance": module.ReadTimeout("scripted ReadTimeout"),
    }[spec]
    script = ScriptedTransport([Step.raising(exception)], flavour=flavour)  # type: ignore[arg-type]
    with module.Client(transport=script) as client, pytest.raises(module.ReadTimeout) as raised:
        client.get("http://up.test/")
    assert "ReadTimeout" in str(raised.value)
    assert script.call_count == 1


def test_an_unknown_exception_name_is_reported() -> None:
    script = ScriptedTransport([Step.raising("NoSuchError")])
    with httpx.Client(transport=script) as client, pytest.raises(ValueError, match="NoSuchError"):
        client.get("http://up.test/")


def test_a_request_past_the_script_fails_loudly() -> None:
    script = ScriptedTransport([200])
    with httpx.Client(transport=script) as client:
        client.get("http://up.test/")
        with pytest.raises(ScriptExhausted, match=r"request 2 \(GET http://up.test/x\)"):
            client.get("http://up.test/x")
    assert script.call_count == 2


def test_repeat_last_serves_the_last_step_forever() -> None:
    script = ScriptedTransport([503, 200], repeat_last=True)
    with httpx.Client(transport=script) as client:
        statuses = [client.get("http://up.test/").status_code for _ in range(4)]
    assert statuses == [503, 200, 200, 200]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "status"),
        ({"status": True}, "status"),
        ({"body": 5}, "body"),
        ({"status": 500, "exception": "ConnectError"}, "raises or answers"),
        ({"body": "x", "exception": "ConnectError"}, "raises or answers"),
        ({"exception": 42}, "exception"),
    ],
)
def test_invalid_steps_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Step(**kwargs)


def test_invalid_scripts_are_refused() -> None:
    with pytest.raises(ValueError, match="steps"):
        ScriptedTransport([])
    with pytest.raises(ValueError, match="flavour"):
        ScriptedTransport([200], flavour="requests")  # type: ignore[arg-type]


def test_sse_step_is_peeked_and_retried_before_content(flavour: str) -> None:
    overloaded = Step.sse(
        [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})]
    )
    streamed = Step.sse([("message_start", {"type": "message_start"}), (None, "[DONE]")])
    script = ScriptedTransport([overloaded, streamed], flavour=flavour)  # type: ignore[arg-type]
    with no_waiting(), lib(flavour).Client(transport=SyncRetryTransport(script)) as client:
        response = client.post("http://up.test/v1/messages")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text == (
        'event: message_start\ndata: {"type": "message_start"}\n\ndata: [DONE]\n\n'
    )
    assert script.call_count == 2


# -- what users write: their code, the real SDK, a transient 400, no network -----------------


@pytest.mark.anyio
async def test_openai_code_survives_a_transient_400_without_a_network() -> None:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "fine"},
                "finish_reason": "stop",
            }
        ],
    }
    script = ScriptedTransport([TRANSIENT_400, Step.json(200, completion)], flavour="httpx2")
    http_client = httpx2.AsyncClient(transport=RetryTransport(script))
    with no_waiting():
        async with openai.AsyncOpenAI(api_key="sk-test", http_client=http_client) as client:
            answer = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    assert answer.choices[0].message.content == "fine"
    assert script.call_count == 2
    assert script.requests[0].url == "https://api.openai.com/v1/chat/completions"
    assert script.requests[0].content == script.requests[1].content


def test_anthropic_code_survives_a_transient_400_without_a_network() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "fine"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    script = ScriptedTransport([TRANSIENT_400, Step.json(200, message)], flavour="httpx2")
    http_client = httpx2.Client(transport=SyncRetryTransport(script))
    with no_waiting(), anthropic.Anthropic(api_key="k", http_client=http_client) as client:
        answer = client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "fine"
    assert script.call_count == 2


def test_the_module_examples_run() -> None:
    result = doctest.testmod(retry_transport.testing)
    assert result.failed == 0
    assert result.attempted >= 5


def test_a_plain_exception_class_is_raised_as_well() -> None:
    script = ScriptedTransport([Step.raising(RuntimeError)])
    with httpx.Client(transport=script) as client, pytest.raises(RuntimeError, match="scripted"):
        client.get("http://up.test/")


def test_json_and_sse_steps_keep_a_content_type_given() -> None:
    step = Step.json(200, [1], {"Content-Type": "application/problem+json"})
    assert step.headers == (("Content-Type", "application/problem+json"),)
    stream = Step.sse([(None, "a\nb")], headers=[("content-type", "text/event-stream; x=1")])
    assert stream.headers == (("content-type", "text/event-stream; x=1"),)
    assert stream.body == "data: a\ndata: b\n\n"
    script = ScriptedTransport([step, 204])
    assert script.steps == (step, Step(204))


@pytest.mark.parametrize("cap", [0, True, 1.5])
def test_an_invalid_attempt_cap_is_refused(cap: Any) -> None:
    with pytest.raises(ValueError, match="max_attempts"), no_waiting(max_attempts=cap):
        pass
    assert not is_testing()
