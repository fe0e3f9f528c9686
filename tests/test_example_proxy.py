"""examples/proxy_with_shared_limiters.py: the LLM proxy forwards, retries, and keeps one
shared limiter per upstream provider; driven in process (httpx's ASGI transport) against two
real loopback upstreams, and through the real openai and anthropic SDKs."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from retry_transport import RetryPolicy
from retry_transport.testing import no_waiting
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_message,
    anthropic_stream_error,
    openai_chat,
    openai_error,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "proxy_with_shared_limiters.py"

if TYPE_CHECKING:
    import proxy_with_shared_limiters as example
else:
    _spec = importlib.util.spec_from_file_location("proxy_with_shared_limiters", EXAMPLE)
    example = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(example)

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture
def providers() -> Iterator[tuple[Upstream, Upstream]]:
    with Upstream() as openai_up, Upstream() as anthropic_up:
        yield openai_up, anthropic_up


@pytest.fixture
def no_wait() -> Iterator[None]:
    with no_waiting():
        yield


def proxy_for(
    providers: tuple[Upstream, Upstream], policy: RetryPolicy = example.DEFAULT_POLICY
) -> example.LLMProxy:
    openai_up, anthropic_up = providers
    return example.LLMProxy({"openai": openai_up.url, "anthropic": anthropic_up.url}, policy=policy)


@pytest.fixture
async def proxy(providers: tuple[Upstream, Upstream]) -> AsyncIterator[example.LLMProxy]:
    app = proxy_for(providers)
    yield app
    await app.aclose()


@pytest.fixture
async def client(proxy: example.LLMProxy) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        yield http


async def test_requests_are_forwarded_to_their_provider_as_sent(
    providers: tuple[Upstream, Upstream], client: httpx.AsyncClient
) -> None:
    openai_up, anthropic_up = providers
    openai_up.script("/v1/models", Reply.json(200, {"data": []}, (("x-upstream", "openai"),)))
    response = await client.post(
        "/openai/v1/models?limit=2",
        content=b'{"n": 1}',
        headers={"Authorization": "Bearer sk-1", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": []}
    assert response.headers["x-upstream"] == "openai"
    assert response.headers["x-upstream-attempts"] == "1"
    (received,) = openai_up.received()
    assert (received.method, received.path, received.content) == (
        "POST",
        "/v1/models?limit=2",
        b'{"n": 1}',
    )
    assert received.header("authorization") == "Bearer sk-1"
    assert received.header("host") == openai_up.url.removeprefix("http://")
    assert anthropic_up.count() == 0


async def test_an_unknown_provider_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/mistral/v1/models")
    assert response.status_code == 404
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.usefixtures("no_wait")
async def test_a_transient_failure_is_retried_before_the_client_sees_it(
    providers: tuple[Upstream, Upstream], client: httpx.AsyncClient
) -> None:
    openai_up, _ = providers
    openai_up.script(CHAT, openai_error(503, "busy"), openai_chat("second try"))
    response = await client.post(f"/openai{CHAT}", json={"model": "m", "messages": []})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "second try"
    assert response.headers["x-upstream-attempts"] == "2"
    assert openai_up.count(CHAT) == 2


@pytest.mark.usefixtures("no_wait")
async def test_a_give_up_returns_the_upstream_error_marked_not_to_retry(
    providers: tuple[Upstream, Upstream], client: httpx.AsyncClient
) -> None:
    openai_up, _ = providers
    openai_up.script(CHAT, openai_error(503, "still down"))
    response = await client.post(f"/openai{CHAT}", json={})
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "still down"
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-upstream-attempts"] == str(example.DEFAULT_POLICY.max_attempts)


async def test_a_429_blocks_its_own_provider_only(providers: tuple[Upstream, Upstream]) -> None:
    openai_up, anthropic_up = providers
    openai_up.script(CHAT, openai_error(429, "slow down", headers=(("retry-after", "30"),)))
    # One try, and no request held past 5 s: a 30 s block makes the next request fail at once.
    proxy = proxy_for(providers, RetryPolicy(max_attempts=1, deadline=5.0))
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        limited = await http.post(f"/openai{CHAT}", json={})
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "30"
        assert proxy.limiters["openai"].blocked_for() > 25
        assert proxy.limiters["anthropic"].blocked_for() == 0.0

        other = await http.post(f"/anthropic{MESSAGES}", json={"model": "m", "messages": []})
        assert other.status_code == 200  # the other provider's traffic flows on

        held = await http.post(f"/openai{CHAT}", json={})
        assert held.status_code == 504  # the block outlasts the deadline: never sent
    await proxy.aclose()
    assert openai_up.count(CHAT) == 1
    assert anthropic_up.count(MESSAGES) == 1


@pytest.mark.usefixtures("no_wait")
async def test_an_unreachable_upstream_is_502() -> None:
    with Upstream() as gone:
        url = gone.url
    proxy = example.LLMProxy({"openai": url}, policy=RetryPolicy(max_attempts=2))
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        response = await http.get("/openai/v1/models")
    await proxy.aclose()
    assert response.status_code == 502
    assert "ConnectError" in response.json()["error"]["message"]


@pytest.mark.usefixtures("no_wait")
async def test_the_sdks_work_through_the_proxy_streams_included(
    providers: tuple[Upstream, Upstream], proxy: example.LLMProxy
) -> None:
    openai_up, anthropic_up = providers
    openai_up.script(CHAT, openai_error(502, "bad gateway"), openai_chat("through"))
    anthropic_up.script(
        MESSAGES, anthropic_stream_error("preamble"), anthropic_message("streamed", stream=True)
    )
    gpt = openai.AsyncOpenAI(
        base_url="http://proxy/openai/v1",
        api_key="sk-test",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=proxy)),
    )
    async with gpt:
        completion = await gpt.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.choices[0].message.content == "through"

    claude = anthropic.AsyncAnthropic(
        base_url="http://proxy/anthropic",
        api_key="sk-ant-test",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=proxy)),
    )
    async with claude:
        stream = await claude.messages.create(
            model="claude-sonnet-5",
            max_tokens=8,
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
    assert text == "streamed"  # the overload before the first token was retried upstream
    assert openai_up.count(CHAT) == 2
    assert anthropic_up.count(MESSAGES) == 2


async def test_lifespan_shutdown_closes_the_upstream_clients(
    providers: tuple[Upstream, Upstream],
) -> None:
    proxy = proxy_for(providers)
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await proxy({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert all(client.is_closed for client in proxy.clients.values())


@pytest.mark.usefixtures("no_wait")
async def test_the_demo_runs_against_the_loopback_upstreams() -> None:
    lines: list[str] = []
    await example.demo(lines.append)
    assert lines == [
        "openai: 200 'hello from OpenAI' after 2 tries",
        "anthropic: 200 'hello from Anthropic' after 2 tries",
    ]
