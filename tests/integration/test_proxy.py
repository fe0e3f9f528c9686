"""The retry sidecar (``python -m retry_transport proxy``) with real clients in front of it.

uvicorn serves the sidecar on a free loopback port (in a thread, or as a child process for
signals and memory); the scripted `Upstream` plays the provider behind it. In front: the real
anthropic SDK (on an httpx2 client), the real openai SDK (on an httpx client), a plain httpx
client and curl. Async tests run their client side on asyncio and on trio.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anthropic
import anyio
import anyio.to_thread
import httpx
import httpx2
import openai
import pytest

from retry_transport.__main__ import main
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_error,
    anthropic_message,
    anthropic_stream_error,
    openai_chat,
    openai_chat_stream_error,
    stream_reply,
)
from retry_transport.testing.upstream.streams import STREAM_PATHS, StreamProtocol

from ..proxy_helpers import Gate, Sidecar, SidecarProcess, Trickle, settings_for

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

KEY = "sk-ant-test-do-not-log-0123456789"
OPENAI_KEY = "sk-openai-test-do-not-log-9876543210"
KEYS = {"anthropic": KEY, "openai": OPENAI_KEY}
MESSAGES: Any = [{"role": "user", "content": "hi"}]
PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions", "httpx": "/v1/messages"}
KINDS = ["anthropic", "openai", "httpx"]
PROXY = [sys.executable, "-m", "retry_transport", "proxy"]
NIM_DEGRADED = {"status": 400, "detail": "Function 'f': DEGRADED function cannot be invoked"}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- clients ----------------------------------------------------------------------------------


async def ask(kind: str, base: str, *, stream: bool = False) -> str:
    """Ask for a completion through ``base`` as client ``kind``; the text answered."""
    if kind == "anthropic":
        async with anthropic.AsyncAnthropic(
            base_url=base, api_key=KEY, http_client=httpx2.AsyncClient()
        ) as client:
            if stream:
                async with client.messages.stream(
                    model="claude-sonnet-5", max_tokens=16, messages=MESSAGES
                ) as events:
                    return await events.get_final_text()
            message = await client.messages.create(
                model="claude-sonnet-5", max_tokens=16, messages=MESSAGES
            )
            block = message.content[0]
            assert block.type == "text"
            return block.text
    if kind == "openai":
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1",
            api_key=OPENAI_KEY,
            http_client=cast(Any, httpx.AsyncClient()),  # openai>=3 takes classic httpx too
        ) as client:
            if stream:
                chunks: Any = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True
                )
                deltas = [chunk.choices[0].delta async for chunk in chunks if chunk.choices]
                return "".join(delta.content or "" for delta in deltas)
            completion = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            return completion.choices[0].message.content or ""
    body = {"model": "claude-sonnet-5", "max_tokens": 16, "messages": MESSAGES, "stream": stream}
    async with httpx.AsyncClient(base_url=base, headers={"x-api-key": KEY}) as plain:
        if not stream:
            response = await plain.post("/v1/messages", json=body)
            response.raise_for_status()
            return str(response.json()["content"][0]["text"])
        async with plain.stream("POST", "/v1/messages", json=body) as streamed:
            streamed.raise_for_status()
            return "".join([text async for text in anthropic_texts(streamed.aiter_lines())])


async def anthropic_texts(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The text deltas of an Anthropic event stream; fails on an error event."""
    async for line in lines:
        if not line.startswith("data: "):
            continue
        data = json.loads(line.removeprefix("data: "))
        assert data["type"] != "error", data
        if data["type"] == "content_block_delta":
            yield data["delta"]["text"]


def success(kind: str, text: str, *, stream: bool = False) -> Reply:
    if kind == "openai":
        return openai_chat(text, stream=stream)
    return anthropic_message(text, stream=stream)


def overloaded_before_content(kind: str) -> Reply:
    if kind == "openai":
        return openai_chat_stream_error("role", message="Overloaded", code=529)
    return anthropic_stream_error("preamble")


async def eventually(check: Callable[[], Awaitable[bool] | bool]) -> None:
    """Wait until ``check()`` holds (polling; a condition, never a duration, is awaited)."""
    with anyio.fail_after(10.0):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.005)


async def until_blocked(sidecar: Sidecar, upstream: str = "/") -> None:
    """Wait until the sidecar's limiter for ``upstream`` holds a block (after a 429)."""

    async def blocked() -> bool:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{sidecar.url}/_retry_transport/healthz")
        return float(response.json()["upstreams"][upstream]["blocked_for"]) > 0.0

    await eventually(blocked)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


# -- the import boundary and the command line -------------------------------------------------


def test_the_library_never_imports_the_proxy_stack() -> None:
    code = (
        "import sys, retry_transport, retry_transport.__main__\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'uvicorn', 'prometheus_client'})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: --upstream"),
        (["--upstream", "ftp://example.com"], "http:// or https:// URL"),
        (["--upstream", "https://user:pw@example.com"], "must not carry credentials"),
        (["--upstream", "https://example.com/?key=1"], "no query"),
        (["--upstream", "a b=https://example.com"], "must be letters, digits"),
        (["--upstream", "https://a.example", "--upstream", "https://b.example"], "only one"),
        (["--upstream", "x=https://a.example", "--upstream", "x=https://b.example"], "twice"),
        (["--upstream", "https://a.example", "--max-attempts", "0"], "--max-attempts: must be"),
        (["--upstream", "https://a.example", "--max-attempts", "x"], "an integer >= 1, got 'x'"),
        (["--upstream", "https://a.example", "--grace", "-1"], "an integer >= 0, got '-1'"),
        (["--upstream", "https://a.example:99999"], "invalid port"),
        (["--upstream", "https://a.example", "--deadline", "-1"], "> 0, got '-1'"),
        (["--upstream", "https://a.example", "--max-retry-after", "nan"], ">= 0, got 'nan'"),
        (["--upstream", "https://a.example", "--peek-limit", "lots"], "size in bytes"),
        (["--upstream", "https://a.example", "--port", "70000"], "port number"),
        (["--upstream", "https://a.example", "--host", ""], "argument --host: must be an IP"),
        (["--upstream", "https://a.example", "--host", "[::1]"], "IPv6 without brackets"),
        (["--upstream", "https://a.example", "--host", "bad host!"], "or a host name, got"),
        (["--upstream", "https://a.example", "--redis", "http://x"], "argument --redis: must be"),
        (["--upstream", "https://a.example", "--redis-timeout", "0"], "--redis-timeout: must be"),
        (["--upstream", "https://a.example", "--log-level", "loud"], "invalid choice"),
    ],
)
def test_invalid_options_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["proxy", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_options_become_settings() -> None:
    settings = settings_for(
        "--upstream",
        "https://API.anthropic.com:443/",
        "--upstream",
        "or=https://openrouter.ai/api/",
        "--max-attempts",
        "7",
        "--deadline",
        "90",
        "--replay-limit",
        "1m",
        "--read-timeout",
        "0",
        "--no-retry-budget",
    )
    root, named = settings.upstreams
    assert (root.name, root.url) == (None, "https://api.anthropic.com")
    assert (named.name, named.url) == ("or", "https://openrouter.ai/api")
    assert named.limiter_name == "proxy:https://openrouter.ai/api"
    assert settings.policy.max_attempts == 7
    assert settings.policy.deadline == 90.0
    assert settings.replay_limit == 1024 * 1024
    assert settings.read_timeout is None
    assert settings.budget is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8787)


def test_without_the_proxy_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "retry_transport.proxy.serving", None)
    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--upstream", "https://api.anthropic.com"])
    assert exited.value.code == 2
    assert "pip install 'retry-transport[proxy]'" in capsys.readouterr().err


def test_a_port_in_use_exits_1_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*PROXY, "--upstream", "http://127.0.0.1:9", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1 port" in done.stderr


# -- real clients through the sidecar ---------------------------------------------------------


@pytest.mark.anyio
async def test_transient_400s_are_recovered(kind: str, upstream: Upstream) -> None:
    path = PATHS[kind]
    degraded = Reply.json(400, NIM_DEGRADED)
    upstream.script(path, degraded, degraded, success(kind, "recovered"))
    with Sidecar("--upstream", upstream.url) as sidecar:
        assert await ask(kind, sidecar.url) == "recovered"
    received = upstream.received(path)
    assert len(received) == 3
    # Auth passes through untouched; Host is the upstream's own.
    for record in received:
        if kind == "httpx":
            assert record.header("x-api-key") == KEY
        else:  # both SDKs send their key as a bearer token
            assert record.header("authorization") == f"Bearer {KEYS[kind]}"
        assert record.header("host") == f"127.0.0.1:{upstream.port}"


# The openai SDK stops reading at [DONE] and leaves its SSE generators to the collector; trio
# warns of them. (Client side only: the sidecar is not involved.)
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <async_generator object "
    "(AsyncStream|SSEDecoder|Response).:pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.anyio
async def test_overloaded_error_before_the_first_content_is_recovered(
    kind: str, upstream: Upstream
) -> None:
    path = PATHS[kind]
    upstream.script(
        path, overloaded_before_content(kind), success(kind, "hello there", stream=True)
    )
    with Sidecar("--upstream", upstream.url) as sidecar:
        assert await ask(kind, sidecar.url, stream=True) == "hello there"
    assert upstream.count(path) == 2


@pytest.mark.anyio
async def test_an_sdk_sees_the_final_error_once_without_retrying_it(upstream: Upstream) -> None:
    upstream.script("/v1/messages", anthropic_error(529, "overloaded_error", "Overloaded"))
    with (
        Sidecar("--upstream", upstream.url, "--max-attempts", "2") as sidecar,
        pytest.raises(anthropic.APIStatusError, match="Overloaded") as raised,
    ):
        await ask("anthropic", sidecar.url)
    assert raised.value.status_code == 529
    # The SDK's own max_retries (2) is not spent: x-should-retry: false came back.
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert upstream.count("/v1/messages") == 2


@pytest.mark.anyio
async def test_a_429_with_retry_after_holds_every_client_of_its_scope_until_it_lifts(
    upstream: Upstream,
) -> None:
    retry_after = 1.0
    upstream.script(
        "/v1/messages",
        anthropic_error(429, "rate_limit_error", "slow down", headers=(("retry-after", "1"),)),
        anthropic_message("first"),
    )
    upstream.script("/v1/chat/completions", openai_chat("second"))
    answers: dict[str, str] = {}

    async def run(kind: str) -> None:
        answers[kind] = await ask(kind, sidecar.url)

    with Sidecar("--upstream", upstream.url) as sidecar:
        async with anyio.create_task_group() as group:
            group.start_soon(run, "anthropic")
            await until_blocked(sidecar)
            group.start_soon(run, "openai")
            group.start_soon(run, "httpx")
    assert answers == {"anthropic": "first", "openai": "second", "httpx": "first"}
    first, *later = upstream.received()
    assert first.path == "/v1/messages"
    assert len(later) == 3
    # The block started once the 429 was read, after `first` arrived: nothing of its scope
    # (the same key and model) may come sooner. The OpenAI client's key and model are another
    # scope, which a 429 for this one does not hold.
    same_scope = [record for record in later if record.path == "/v1/messages"]
    assert len(same_scope) == 2
    assert all(record.at >= first.at + retry_after for record in same_scope), [
        record.at - first.at for record in same_scope
    ]


@pytest.mark.anyio
async def test_a_stream_is_passed_on_as_it_comes(upstream: Upstream) -> None:
    events = anthropic_message("one two three", stream=True).chunks
    assert isinstance(events, tuple)
    # message_start, content_block_start, ping, the first delta | the rest.
    gate = Gate(list(events[:4]), list(events[4:]), timeout=5.0)
    upstream.script(
        "/v1/messages", Reply(200, headers=(("content-type", "text/event-stream"),), chunks=gate)
    )
    body = {"model": "m", "max_tokens": 8, "messages": MESSAGES, "stream": True}
    texts: list[str] = []
    with Sidecar("--upstream", upstream.url) as sidecar:
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", f"{sidecar.url}/v1/messages", json=body) as response,
        ):
            async for text in anthropic_texts(response.aiter_lines()):
                texts.append(text)
                gate.open()  # the first content came through before the rest was sent
    assert not gate.timed_out  # the first content came while the upstream held the rest
    assert "".join(texts) == "one two three"


@pytest.mark.anyio
async def test_a_client_disconnect_cancels_the_upstream_request_at_once(
    upstream: Upstream,
) -> None:
    trickle = Trickle(b"x" * 1024, count=3000, interval=0.01)  # 30 s if nobody stops it
    upstream.script(
        "/download", Reply(200, headers=(("content-type", "text/plain"),), chunks=trickle)
    )
    with Sidecar("--upstream", upstream.url) as sidecar:
        # A raw client: it reads the head and some body, then hangs up.
        async with await anyio.connect_tcp("127.0.0.1", sidecar.port) as client:
            await client.send(b"GET /download HTTP/1.1\r\nhost: sidecar\r\n\r\n")
            received = b""
            while b"xxxx" not in received:
                received += await client.receive()
            assert received.startswith(b"HTTP/1.1 200 ")
        closed_at = time.monotonic()
        assert await anyio.to_thread.run_sync(trickle.stopped.wait, 10.0)
    assert trickle.stopped_at - closed_at < 1.0
    assert trickle.sent < 200


@pytest.mark.anyio
async def test_a_client_disconnect_during_a_retry_wait_sends_nothing_more(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "retry_transport")
    upstream.script(
        "/v1/messages", Reply(503, headers=(("retry-after", "30"),)), anthropic_message()
    )
    with Sidecar("--upstream", upstream.url) as sidecar:
        async with httpx.AsyncClient() as client:
            with anyio.move_on_after(10.0):
                async with anyio.create_task_group() as group:
                    group.start_soon(client.post, f"{sidecar.url}/v1/messages")
                    await until_blocked(sidecar)
                    group.cancel_scope.cancel()  # the client gives up and hangs up
        await eventually(lambda: logged(caplog, "client went away"))
    assert upstream.count("/v1/messages") == 1


def test_an_unreachable_upstream_is_a_502_after_the_retries(
    upstream: Upstream,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with Sidecar("--upstream", dead, "--max-attempts", "3") as sidecar, httpx.Client() as client:
        response = client.post(f"{sidecar.url}/v1/messages", json={})
    assert response.status_code == 502
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["type"] == "upstream_unreachable"
    assert "ConnectError" in error["message"]
    assert "gave up after 3 attempts" in error["message"]


def test_the_deadline_is_a_504(upstream: Upstream) -> None:
    upstream.script("/v1/messages", Reply(200, body=b"late", delay=5.0))  # cut short at stop
    with (
        Sidecar("--upstream", upstream.url, "--deadline", "0.2") as sidecar,
        httpx.Client() as client,
    ):
        response = client.post(f"{sidecar.url}/v1/messages", json={})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "upstream_timeout"
    assert "the deadline of 0.2 s (--deadline) passed after 1 attempt" in error["message"]
    assert "ReadTimeout: -" not in error["message"]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_body_within_the_replay_limit_is_replayed(upstream: Upstream) -> None:
    upstream.script("/upload", Reply(503), Reply(201))
    data = bytes(range(256)) * 16  # 4 KiB, sent chunked
    with (
        Sidecar("--upstream", upstream.url, "--replay-limit", "8k") as sidecar,
        httpx.Client() as client,
    ):
        response = client.post(f"{sidecar.url}/upload", content=_chunks(data, 1000))
    assert response.status_code == 201
    assert [record.content for record in upstream.received("/upload")] == [data, data]


@pytest.mark.parametrize("announced", [False, True], ids=["chunked", "content-length"])
def test_a_body_over_the_replay_limit_is_streamed_and_sent_once(
    announced: bool, upstream: Upstream
) -> None:
    upstream.script("/upload", Reply(503), Reply(201))
    data = bytes(range(256)) * 256  # 64 KiB
    headers = {"content-length": str(len(data))} if announced else {}
    with (
        Sidecar("--upstream", upstream.url, "--replay-limit", "8k") as sidecar,
        httpx.Client() as client,
    ):
        response = client.post(
            f"{sidecar.url}/upload", content=_chunks(data, 4096), headers=headers
        )
    assert response.status_code == 503  # handed back: the body could not be sent again
    assert response.headers["x-should-retry"] == "false"
    assert [record.content for record in upstream.received("/upload")] == [data]


def test_hop_by_hop_headers_are_dropped_and_the_rest_passes_untouched(
    upstream: Upstream,
) -> None:
    upstream.script(
        "/v1/models/a%2Fb",
        Reply(
            200,
            b"{}",
            (
                ("connection", "x-upstream-hop"),
                ("x-upstream-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("x-upstream-kept", "yes"),
            ),
        ),
    )
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        response = client.get(
            f"{sidecar.url}/v1/models/a%2Fb?after=x%20y&limit=1",
            headers={
                "authorization": "Bearer sk-secret",
                "x-api-key": KEY,
                "anthropic-version": "2023-06-01",
                "connection": "keep-alive, x-client-hop",
                "x-client-hop": "1",
                "keep-alive": "timeout=5",
                "proxy-authorization": "Basic cHJveHk=",
                "te": "trailers",
                "x-custom": "a, b",
            },
        )
    assert response.status_code == 200
    assert response.headers["x-upstream-kept"] == "yes"
    assert "x-upstream-hop" not in response.headers
    assert "keep-alive" not in response.headers
    (record,) = upstream.received()
    assert record.path == "/v1/models/a%2Fb?after=x%20y&limit=1"
    sent = dict(record.headers)
    assert sent["authorization"] == "Bearer sk-secret"
    assert sent["x-api-key"] == KEY
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["x-custom"] == "a, b"
    assert sent["host"] == f"127.0.0.1:{upstream.port}"
    for hop in ("x-client-hop", "keep-alive", "proxy-authorization", "te"):
        assert hop not in sent
    assert sent.get("connection", "keep-alive") == "keep-alive"  # httpcore's own, if any


@pytest.mark.anyio
async def test_named_upstreams_are_served_under_their_prefixes(upstream: Upstream) -> None:
    with Upstream() as other:
        other.script("/api/v1/chat/completions", openai_chat("from openrouter"))
        with Sidecar(
            "--upstream", f"anthropic={upstream.url}", "--upstream", f"or={other.url}/api"
        ) as sidecar:
            assert await ask("anthropic", f"{sidecar.url}/anthropic") == "hello"
            assert await ask("openai", f"{sidecar.url}/or") == "from openrouter"
            async with httpx.AsyncClient() as client:
                unknown = await client.get(f"{sidecar.url}/nowhere/v1/models")
                health = await client.get(f"{sidecar.url}/healthz")
    assert upstream.received()[0].path == "/v1/messages"
    assert other.received()[0].path == "/api/v1/chat/completions"
    assert unknown.status_code == 404
    assert "/anthropic/, /or/" in unknown.json()["error"]["message"]
    assert set(health.json()["upstreams"]) == {"anthropic", "or"}


def test_a_root_upstream_gets_slash_healthz_and_the_sidecar_keeps_its_own(
    upstream: Upstream,
) -> None:
    upstream.script("/healthz", Reply.json(200, {"upstream": True}))
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        theirs = client.get(f"{sidecar.url}/healthz")
        ours = client.get(f"{sidecar.url}/_retry_transport/healthz")
        posted = client.post(f"{sidecar.url}/_retry_transport/healthz")
    assert theirs.json() == {"upstream": True}
    assert ours.json() == {
        "status": "ok",
        "upstreams": {"/": {"url": upstream.url, "blocked_for": 0.0}},
    }
    assert posted.status_code == 405
    assert upstream.count() == 1


def test_metrics_count_retries_and_give_ups_by_upstream_and_verdict(
    upstream: Upstream,
) -> None:
    pytest.importorskip("prometheus_client")
    upstream.script("/v1/messages", anthropic_error(529, "overloaded_error", "Overloaded"))
    upstream.script("/v1/models", Reply.json(400, NIM_DEGRADED), Reply.json(200, {}))
    with (
        Sidecar("--upstream", f"a={upstream.url}", "--max-attempts", "2") as sidecar,
        httpx.Client() as client,
    ):
        assert client.post(f"{sidecar.url}/a/v1/messages").status_code == 529
        assert client.get(f"{sidecar.url}/a/v1/models").status_code == 200
        text = client.get(f"{sidecar.url}/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['retry_transport_retries_total{upstream="a",verdict="congestion"}'] == 1
    assert samples['retry_transport_retries_total{upstream="a",verdict="transient"}'] == 1
    assert samples['retry_transport_giveups_total{upstream="a",verdict="congestion"}'] == 1
    assert samples['retry_transport_proxy_requests_total{code="529",upstream="a"}'] == 1
    assert samples['retry_transport_proxy_requests_total{code="200",upstream="a"}'] == 1


def test_metrics_count_from_hooks_and_leave_every_logger_level_alone(
    upstream: Upstream,
) -> None:
    pytest.importorskip("prometheus_client")
    library = logging.getLogger("retry_transport")
    before = library.level, list(library.handlers)
    library.setLevel(logging.ERROR)  # no retry record is even made
    upstream.script("/v1/models", Reply(503), Reply.json(200, {}))
    try:
        with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
            assert client.get(f"{sidecar.url}/v1/models").status_code == 200
            text = client.get(f"{sidecar.url}/_retry_transport/metrics").text
            assert library.level == logging.ERROR
            assert library.handlers == before[1]
    finally:
        library.setLevel(before[0])
    assert 'retry_transport_retries_total{upstream="/",verdict="congestion"} 1.0' in text


def test_metrics_without_prometheus_client_are_a_404(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with Sidecar("--upstream", f"a={upstream.url}") as sidecar, httpx.Client() as client:
        response = client.get(f"{sidecar.url}/_retry_transport/metrics")
    assert response.status_code == 404
    assert "prometheus-client" in response.text


def test_secrets_are_never_logged(upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.script("/v1/messages", Reply.json(400, NIM_DEGRADED), anthropic_message())
    with Sidecar("--upstream", upstream.url) as sidecar, httpx.Client() as client:
        response = client.post(
            f"{sidecar.url}/v1/messages?key=sk-query-secret",
            headers={"authorization": "Bearer sk-bearer-secret", "x-api-key": KEY},
            json={},
        )
    assert response.status_code == 200
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.name != "httpx"  # the test's own client, which logs its URLs
    )
    assert "retrying POST" in logged
    for secret in ("sk-query-secret", "sk-bearer-secret", KEY):
        assert secret not in logged


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_streams_through_the_sidecar(upstream: Upstream) -> None:
    upstream.script(
        "/v1/messages", anthropic_stream_error("nothing"), anthropic_message("hi curl", stream=True)
    )
    with Sidecar("--upstream", upstream.url) as sidecar:
        done = subprocess.run(
            [
                *("curl", "-sS", "-N", "--fail-with-body", f"{sidecar.url}/v1/messages"),
                *("-H", f"x-api-key: {KEY}", "-H", "content-type: application/json"),
                *("-d", json.dumps({"model": "m", "max_tokens": 8, "stream": True})),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    data = [
        json.loads(line.removeprefix("data: "))
        for line in done.stdout.splitlines()
        if line.startswith("data: ")
    ]
    assert "error" not in [event["type"] for event in data]
    assert "".join(e["delta"]["text"] for e in data if e["type"] == "content_block_delta") == (
        "hi curl"
    )
    assert upstream.count("/v1/messages") == 2


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the clients' side is not the point
async def test_sidecars_sharing_redis_honour_one_429(
    redis_server: RedisServer, upstream: Upstream
) -> None:
    wait = 0.4
    upstream.script(
        "/v1/messages",
        anthropic_error(
            429, "rate_limit_error", "slow down", headers=(("retry-after-ms", f"{wait * 1000:g}"),)
        ),
        anthropic_message("done"),
    )
    shared = ("--upstream", upstream.url, "--redis", redis_server.url)
    with Sidecar(*shared) as first, Sidecar(*shared) as second:
        async with anyio.create_task_group() as group:
            group.start_soon(ask, "httpx", first.url)
            await until_blocked(first)
            assert await ask("httpx", second.url) == "done"
    one, *later = upstream.received()
    assert len(later) == 2
    assert all(record.at >= one.at + wait for record in later)


# -- as a process: memory and signals ---------------------------------------------------------

_MIB = 1024 * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_256_mib_stream_passes_with_flat_memory(upstream: Upstream, tmp_path: Path) -> None:
    block, count = b"\xab" * (256 * 1024), 1024  # 256 MiB

    def chunks() -> Iterator[bytes]:
        for _ in range(count):
            yield block

    upstream.script(
        "/big", Reply(200, headers=(("content-type", "application/octet-stream"),), chunks=chunks)
    )
    with SidecarProcess(tmp_path / "sidecar.log", "--upstream", upstream.url) as sidecar:
        with httpx.Client() as client:
            assert client.get(f"{sidecar.url}/v1/models").status_code == 200  # warm up
            before = sidecar.peak_rss()
            size = 0
            with client.stream("GET", f"{sidecar.url}/big") as response:
                for chunk in response.iter_raw():
                    size += len(chunk)
        grown = sidecar.peak_rss() - before
    assert size == len(block) * count
    assert grown < 32 * _MIB, f"peak memory grew by {grown / _MIB:.1f} MiB"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_lets_an_inflight_stream_finish_then_exits_0(
    upstream: Upstream, tmp_path: Path
) -> None:
    gate = Gate([b"first part;"], [b"second part"], timeout=20.0)
    upstream.script("/stream", Reply(200, headers=(("content-type", "text/plain"),), chunks=gate))
    log = tmp_path / "sidecar.log"
    with SidecarProcess(log, "--upstream", upstream.url, "--grace", "20") as sidecar:
        port = int(sidecar.url.rsplit(":", 1)[1])
        with httpx.Client() as client, client.stream("GET", f"{sidecar.url}/stream") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"first part;"
            sidecar.terminate()
            deadline = time.monotonic() + 30.0
            while _accepts(port):  # it stops accepting new connections...
                assert time.monotonic() < deadline, "still accepting after SIGTERM"
                time.sleep(0.01)
            gate.open()  # ...while the stream in flight goes on to its end
            assert b"".join(chunks) == b"second part"
        assert sidecar.wait(timeout=20) == 0
    assert "Shutting down" in log.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_cuts_a_stream_off_after_the_grace_period_and_exits_0(
    upstream: Upstream, tmp_path: Path
) -> None:
    gate = Gate([b"first part;"], [b"never sent"], timeout=20.0)
    upstream.script("/stream", Reply(200, headers=(("content-type", "text/plain"),), chunks=gate))
    try:
        with (
            SidecarProcess(tmp_path / "log", "--upstream", upstream.url, "--grace", "1") as proc,
            httpx.Client() as client,
            client.stream("GET", f"{proc.url}/stream") as response,
        ):
            chunks = response.iter_raw()
            assert next(chunks) == b"first part;"
            proc.terminate()
            assert proc.wait(timeout=30) == 0  # the 1 s grace, then a shutdown under coverage
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in chunks:
                    pass
            log = proc.log()
    finally:
        gate.open()
    assert "grace period of 1s over: closing 1 connection still open" in log
    assert "Traceback" not in log
    assert "CancelledError" not in log


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# -- the stream guard through the sidecar -----------------------------------------------------


def test_the_first_content_timeout_is_an_option() -> None:
    assert settings_for("--upstream", "http://u.test").policy.first_content_timeout == 120.0
    chosen = settings_for("--upstream", "http://u.test", "--first-content-timeout", "30")
    assert chosen.policy.first_content_timeout == 30.0
    off = settings_for("--upstream", "http://u.test", "--no-first-content-timeout")
    assert off.policy.first_content_timeout is None


def test_a_bad_first_content_timeout_exits_2_naming_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["proxy", "--upstream", "http://u.test", "--first-content-timeout", "0"])
    assert exited.value.code == 2
    assert "--first-content-timeout" in capsys.readouterr().err


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["anthropic", "openai_chat", "openai_responses", "gemini"])
async def test_a_stream_cut_mid_answer_is_relayed_as_an_aborted_response(
    protocol: StreamProtocol, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "retry_transport")
    cut = stream_reply(protocol, fault="cut_mid_answer")
    upstream.script(STREAM_PATHS[protocol], cut)
    assert isinstance(cut.chunks, tuple)
    received: list[bytes] = []
    with Sidecar("--upstream", upstream.url) as sidecar:
        async with (
            httpx.AsyncClient() as client,
            client.stream("POST", sidecar.url + STREAM_PATHS[protocol], json={}) as response,
        ):
            assert response.status_code == 200
            # The connection is cut without the chunked terminator: a protocol error for the
            # client, never a clean end of a shortened answer.
            with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012
                async for chunk in response.aiter_raw():
                    received.append(chunk)
    assert b"".join(received) == b"".join(cut.chunks)
    assert logged(caplog, "StreamTruncated")
    assert upstream.count(STREAM_PATHS[protocol]) == 1


@pytest.mark.anyio
async def test_a_whole_stream_still_ends_cleanly_through_the_sidecar(upstream: Upstream) -> None:
    whole = stream_reply("openai_chat", done=False, usage=True)
    upstream.script(STREAM_PATHS["openai_chat"], whole)
    assert isinstance(whole.chunks, tuple)
    with Sidecar("--upstream", upstream.url) as sidecar:
        async with httpx.AsyncClient() as client:
            response = await client.post(sidecar.url + STREAM_PATHS["openai_chat"], json={})
    assert response.content == b"".join(whole.chunks)


@pytest.mark.anyio
async def test_a_stall_before_content_is_retried_by_the_sidecar(upstream: Upstream) -> None:
    # The sidecar's transport runs on real time: a short deadline (1 s) stands for the
    # default; nothing here measures time, it only checks that the stall was retried. (0.2 s
    # could pass before the retry's first content on a loaded machine, and stall it too.)
    whole = stream_reply("anthropic")
    assert isinstance(whole.chunks, tuple)
    upstream.script(
        STREAM_PATHS["anthropic"], stream_reply("anthropic", fault="stall_after_headers"), whole
    )
    with Sidecar("--upstream", upstream.url, "--first-content-timeout", "1") as sidecar:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(sidecar.url + STREAM_PATHS["anthropic"], json={})
    assert response.content == b"".join(whole.chunks)
    assert upstream.count(STREAM_PATHS["anthropic"]) == 2
    upstream.wait_stalled(1, ended=True)  # the stalled attempt's connection was closed
