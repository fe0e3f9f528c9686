"""The real openai and anthropic SDKs through RetryTransport against a real loopback upstream.

openai is driven through a classic httpx client and through an httpx2 client; anthropic (which
rejects classic httpx clients) through httpx2. Older SDK lines (openai 1.x, anthropic 0.x, run by
.ci/legacy-sdks.sh) take classic httpx clients only: each case whose flavour the installed SDK
refuses is skipped. Every test runs on asyncio and trio. The SDKs
keep their default ``max_retries`` (2) unless a test says otherwise: the give-up header must
keep their own loop from multiplying our attempts.
"""

from __future__ import annotations

from typing import Any, Literal

import anthropic
import openai
import pytest

from retry_transport import RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_error,
    anthropic_message,
    anthropic_stream_error,
    openai_chat,
    openai_error,
    openai_responses,
    openai_responses_failed,
)

from ..transport_helpers import Sleeps, lib

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(max_attempts=3)
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def takes(sdk: str, flavour: str) -> bool:
    """Whether the installed SDK line accepts an http client of ``flavour``."""
    sdk_class: Any = openai.OpenAI if sdk == "openai" else anthropic.Anthropic
    with lib(flavour).Client() as http_client:
        try:
            sdk_class(api_key="k", http_client=http_client)
        except TypeError:
            return False
    return True


def flavoured(sdk: str, flavour: str) -> Any:
    """A parameter for (sdk, flavour), skipped when the installed SDK refuses the flavour."""
    version = anthropic.__version__ if sdk == "anthropic" else openai.__version__
    refused = pytest.mark.skipif(
        not takes(sdk, flavour), reason=f"{sdk} {version} takes no {flavour} client"
    )
    return pytest.param((sdk, flavour), id=f"{sdk}-{flavour}", marks=refused)


OPENAI_CASES = [flavoured("openai", "httpx"), flavoured("openai", "httpx2")]
# anthropic through classic httpx is a case only on the SDK lines that take it (0.x).
CASES = [
    *OPENAI_CASES,
    *([flavoured("anthropic", "httpx")] if takes("anthropic", "httpx") else []),
    flavoured("anthropic", "httpx2"),
]
ANTHROPIC_FLAVOUR = "httpx2" if takes("anthropic", "httpx2") else "httpx"


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    sdk, flavour = request.param
    return str(sdk), str(flavour)


def sdk_client(
    case: tuple[str, str], up: Upstream, sleeps: Sleeps, policy: RetryPolicy = POLICY
) -> Any:
    sdk, flavour = case
    module = lib(flavour)
    transport = RetryTransport(
        module.AsyncHTTPTransport(), policy=policy, sleep=sleeps, clock=sleeps.clock
    )
    http_client = module.AsyncClient(transport=transport)
    if sdk == "openai":
        return openai.AsyncOpenAI(
            base_url=up.url + "/v1", api_key="sk-test", http_client=http_client
        )
    return anthropic.AsyncAnthropic(base_url=up.url, api_key="sk-ant-test", http_client=http_client)


async def ask(sdk: str, client: Any) -> str:
    messages = [{"role": "user", "content": "hi"}]
    if sdk == "openai":
        completion = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return str(completion.choices[0].message.content)
    message = await client.messages.create(
        model="claude-sonnet-5", max_tokens=16, messages=messages
    )
    return str(message.content[0].text)


def error(sdk: str, status: int, message: str, kind: str, *, headers: Any = ()) -> Reply:
    if sdk == "openai":
        return openai_error(status, message, kind, headers=headers)
    return anthropic_error(status, kind, message, headers=headers)


def success(sdk: str, text: str) -> Reply:
    return openai_chat(text) if sdk == "openai" else anthropic_message(text)


async def test_503s_then_success_recover(case: tuple[str, str], upstream: Upstream) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    upstream.script(
        path,
        error(sdk, 503, "busy", "api_error"),
        error(sdk, 503, "busy", "api_error"),
        success(sdk, "recovered"),
    )
    sleeps = Sleeps()
    async with sdk_client(case, upstream, sleeps) as client:
        assert await ask(sdk, client) == "recovered"
    assert upstream.count(path) == 3
    assert len(sleeps.waits) == 2


async def test_sdk_default_retries_do_not_multiply_ours(
    case: tuple[str, str], upstream: Upstream
) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    upstream.script(path, error(sdk, 503, "still down", "api_error"))
    async with sdk_client(case, upstream, Sleeps()) as client:
        assert client.max_retries == 2
        with pytest.raises((openai.InternalServerError, anthropic.InternalServerError)) as raised:
            await ask(sdk, client)
    assert "still down" in str(raised.value)
    assert upstream.count(path) == POLICY.max_attempts  # 3, not 3 x 3


async def test_permanent_400_costs_one_request_and_surfaces_the_message(
    case: tuple[str, str], upstream: Upstream
) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    message = "This model's maximum context length is 8192 tokens, you asked for 9100"
    upstream.script(path, error(sdk, 400, message, "invalid_request_error"))
    async with sdk_client(case, upstream, Sleeps()) as client:
        with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as raised:
            await ask(sdk, client)
    assert "maximum context length" in str(raised.value)
    assert upstream.count(path) == 1


async def test_429_with_retry_after_waits_exactly_that_long(
    case: tuple[str, str], upstream: Upstream
) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    limited = error(sdk, 429, "slow down", "rate_limit_error", headers=(("retry-after", "2"),))
    upstream.script(path, limited, success(sdk, "after the wait"))
    sleeps = Sleeps()
    async with sdk_client(case, upstream, sleeps) as client:
        assert await ask(sdk, client) == "after the wait"
    assert sleeps.waits[0] == 2.0
    assert upstream.count(path) == 2


async def test_dropped_connection_is_retried(case: tuple[str, str], upstream: Upstream) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    upstream.script(path, Reply(fault="drop"), success(sdk, "second try"))
    async with sdk_client(case, upstream, Sleeps()) as client:
        assert await ask(sdk, client) == "second try"
    assert upstream.count(path) == 2


async def test_nim_degraded_400_is_recovered(case: tuple[str, str], upstream: Upstream) -> None:
    sdk, _ = case
    path = PATHS[sdk]
    degraded = Reply.json(
        400,
        {
            "status": 400,
            "title": "Bad Request",
            "detail": "Function id 'abc': DEGRADED function cannot be invoked",
        },
    )
    upstream.script(path, degraded, success(sdk, "healthy again"))
    async with sdk_client(case, upstream, Sleeps()) as client:
        assert await ask(sdk, client) == "healthy again"
    assert upstream.count(path) == 2


@pytest.mark.parametrize("after", ["nothing", "preamble"])
async def test_anthropic_stream_overloaded_before_content_recovers(
    after: Literal["nothing", "preamble"], upstream: Upstream
) -> None:
    upstream.script(
        "/v1/messages",
        anthropic_stream_error(after),
        anthropic_message("streamed", stream=True),
    )
    async with sdk_client(("anthropic", ANTHROPIC_FLAVOUR), upstream, Sleeps()) as client:
        stream = await client.messages.create(
            model="claude-sonnet-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        text = "".join(
            [
                event.delta.text
                async for event in stream
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            ]
        )
    assert text == "streamed"
    assert upstream.count("/v1/messages") == 2


# The SDK abandons its own SSE generators when it raises mid-stream; trio warns of them.
SDK_ABANDONED_GENERATORS = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <async_generator object (AsyncStream|SSEDecoder)"
    ":pytest.PytestUnraisableExceptionWarning"
)


@SDK_ABANDONED_GENERATORS
async def test_anthropic_stream_error_after_content_is_not_retried(upstream: Upstream) -> None:
    upstream.script("/v1/messages", anthropic_stream_error("first_delta"), anthropic_message())
    async with sdk_client(("anthropic", ANTHROPIC_FLAVOUR), upstream, Sleeps()) as client:
        stream = await client.messages.create(
            model="claude-sonnet-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async for _ in stream:
                pass
    assert upstream.count("/v1/messages") == 1


@pytest.mark.parametrize("case_", OPENAI_CASES)
async def test_openai_responses_stream_failed_before_output_recovers(
    case_: tuple[str, str], upstream: Upstream
) -> None:
    upstream.script("/v1/responses", openai_responses_failed(), openai_responses("ok", stream=True))
    async with sdk_client(case_, upstream, Sleeps()) as client:
        stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
    assert "".join(deltas) == "ok"
    assert upstream.count("/v1/responses") == 2


@pytest.mark.parametrize("case_", CASES)
def test_sync_clients_recover_too(case_: tuple[str, str], upstream: Upstream) -> None:
    sdk, flavour = case_
    path = PATHS[sdk]
    upstream.script(
        path, error(sdk, 529, "Overloaded", "overloaded_error"), success(sdk, "sync ok")
    )
    module = lib(flavour)
    sleeps = Sleeps()
    transport = SyncRetryTransport(
        module.HTTPTransport(), policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock
    )
    http_client = module.Client(transport=transport)
    client: Any
    if sdk == "openai":
        client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", http_client=http_client)
        with client:
            answer = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "sync ok"
    else:
        client = anthropic.Anthropic(base_url=upstream.url, api_key="k", http_client=http_client)
        with client:
            message = client.messages.create(
                model="claude-sonnet-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
            assert message.content[0].text == "sync ok"
    assert upstream.count(path) == 2
    assert len(sleeps.waits) == 1
