"""The framework recipes (README, "Recipes"), each driving the real framework through
RetryTransport against the loopback upstream: LangChain's ChatOpenAI, pydantic-ai's OpenAI and
Anthropic providers, and LiteLLM.

asyncio only: these frameworks are asyncio libraries (LangChain's ``ainvoke`` gathers asyncio
futures, which trio refuses). A framework that is not installed (the legacy-SDK environment of
``.ci/legacy-sdks.sh`` has none) skips its tests with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import httpx2
import openai
import pytest

from retry_transport import RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing import no_waiting
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_message,
    anthropic_stream_error,
    openai_chat,
    openai_error,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant")]

POLICY = RetryPolicy(max_attempts=3)
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
DEGRADED = Reply.json(
    400, {"status": 400, "detail": "Function id 'f': DEGRADED function cannot be invoked"}
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def instant() -> Iterator[None]:
    with no_waiting():
        yield


def need(module: str) -> None:
    pytest.importorskip(module, reason=f"{module} is not installed in this environment")


# -- LangChain ----------------------------------------------------------------------------------


async def test_langchain_chat_openai_recovers_async(upstream: Upstream) -> None:
    need("langchain_openai")
    from langchain_openai import ChatOpenAI

    upstream.script(CHAT, openai_error(503, "busy"), openai_chat("async answer"))
    async with httpx.AsyncClient(
        transport=RetryTransport(httpx.AsyncHTTPTransport(), policy=POLICY)
    ) as http:
        llm = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=upstream.url + "/v1",
            api_key="sk-test",  # type: ignore[arg-type]
            http_async_client=http,
            max_retries=0,
        )
        assert (await llm.ainvoke("hi")).content == "async answer"
    assert upstream.count(CHAT) == 2


def test_langchain_chat_openai_recovers_sync(upstream: Upstream) -> None:
    need("langchain_openai")
    from langchain_openai import ChatOpenAI

    upstream.script(CHAT, openai_error(529, "Overloaded"), openai_chat("sync answer"))
    with httpx.Client(transport=SyncRetryTransport(httpx.HTTPTransport(), policy=POLICY)) as http:
        llm = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=upstream.url + "/v1",
            api_key="sk-test",  # type: ignore[arg-type]
            http_client=http,
            max_retries=0,
        )
        assert llm.invoke("hi").content == "sync answer"
    assert upstream.count(CHAT) == 2


async def test_langchain_gets_the_upstream_error_after_our_attempts_only(
    upstream: Upstream,
) -> None:
    need("langchain_openai")
    from langchain_openai import ChatOpenAI

    upstream.script(CHAT, openai_error(503, "still down"))
    async with httpx.AsyncClient(
        transport=RetryTransport(httpx.AsyncHTTPTransport(), policy=POLICY)
    ) as http:
        # LangChain's default max_retries (2) is kept: the give-up header stops the SDK's loop.
        llm = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=upstream.url + "/v1",
            api_key="sk-test",  # type: ignore[arg-type]
            http_async_client=http,
        )
        with pytest.raises(openai.InternalServerError, match="still down"):
            await llm.ainvoke("hi")
    assert upstream.count(CHAT) == POLICY.max_attempts


# -- pydantic-ai ----------------------------------------------------------------------------------


async def test_pydantic_ai_openai_provider_recovers_from_a_transient_400(
    upstream: Upstream,
) -> None:
    need("pydantic_ai.providers.openai")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    upstream.script(CHAT, DEGRADED, openai_chat("agent answer"))
    async with httpx2.AsyncClient(
        transport=RetryTransport(httpx2.AsyncHTTPTransport(), policy=POLICY)
    ) as http:
        provider = OpenAIProvider(
            base_url=upstream.url + "/v1", api_key="sk-test", http_client=http
        )
        agent = Agent(OpenAIChatModel("gpt-4o-mini", provider=provider))
        result = await agent.run("hi")
    assert result.output == "agent answer"
    assert upstream.count(CHAT) == 2


async def test_pydantic_ai_anthropic_provider_recovers_from_an_overloaded_stream(
    upstream: Upstream,
) -> None:
    need("pydantic_ai.providers.anthropic")
    from pydantic_ai import Agent
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    # pydantic-ai streams Anthropic replies: the overload arrives inside a 200 event stream,
    # before the first token, and is retried.
    upstream.script(
        MESSAGES,
        anthropic_stream_error("preamble"),
        anthropic_message("claude answer", stream=True),
    )
    async with httpx2.AsyncClient(
        transport=RetryTransport(httpx2.AsyncHTTPTransport(), policy=POLICY)
    ) as http:
        provider = AnthropicProvider(base_url=upstream.url, api_key="sk-ant-test", http_client=http)
        agent = Agent(AnthropicModel("claude-sonnet-5", provider=provider))
        result = await agent.run("hi")
    assert result.output == "claude answer"
    assert upstream.count(MESSAGES) == 2


# -- LiteLLM --------------------------------------------------------------------------------------


@pytest.fixture
def litellm_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # LiteLLM fetches a model price map from the internet on import unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    need("litellm")


# pydantic warns about a TypedDict of LiteLLM's that LiteLLM loads lazily on its first call.
LITELLM_WARNS = pytest.mark.filterwarnings(
    "ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"
)


def litellm_client(upstream: Upstream) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=RetryTransport(httpx2.AsyncHTTPTransport(), policy=POLICY))
    return openai.AsyncOpenAI(base_url=upstream.url + "/v1", api_key="sk-test", http_client=http)


@LITELLM_WARNS
@pytest.mark.usefixtures("litellm_offline")
async def test_litellm_recovers_through_the_client_it_is_given(upstream: Upstream) -> None:
    import litellm

    upstream.script(
        CHAT,
        openai_error(429, "Rate limit reached", "requests", headers=(("retry-after", "1"),)),
        openai_chat("litellm answer"),
    )
    async with litellm_client(upstream) as client:
        response = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            client=client,
            max_retries=0,
            num_retries=0,
        )
    assert response.choices[0].message.content == "litellm answer"
    assert upstream.count(CHAT) == 2


@LITELLM_WARNS
@pytest.mark.usefixtures("litellm_offline")
async def test_litellm_with_its_retries_off_makes_only_our_attempts(upstream: Upstream) -> None:
    import litellm

    upstream.script(CHAT, openai_error(503, "still down"))
    async with litellm_client(upstream) as client:
        with pytest.raises(litellm.exceptions.ServiceUnavailableError, match="still down"):
            await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                client=client,
                max_retries=0,
                num_retries=0,
            )
    assert upstream.count(CHAT) == POLICY.max_attempts
