"""More LLM SDKs that take an httpx (or httpx2) client, through RetryTransport, for real.

google-genai, mistralai, groq, together and cohere, each driven through its own async client
(asyncio and trio) and sync client against the loopback upstream playing its wire format:
a transient 400 is recovered, a permanent 400 reaches the SDK's own error after one request.
Each SDK gets a client of every flavour it accepts (groq and together check for a classic
``httpx`` client with ``isinstance``; cohere fails every call through an httpx2 client). The SDKs
that retry on their own are told not to (``max_retries=0``); the test of a 503 proves the
upstream then sees our attempts only. mistralai's async client runs on asyncio only. The README's
recipes for these SDKs and for openai and anthropic are executed as written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import cohere
import groq
import httpx2
import mistralai.client
import openai
import pytest
import together
from cohere.core.api_error import ApiError as CohereApiError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from retry_transport import RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing.upstream import Reply, Upstream, openai_chat, openai_error

from ..transport_helpers import Sleeps, lib

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(max_attempts=3)
TRANSIENT = "Function id 'f00': DEGRADED function cannot be invoked"
PERMANENT = "This model's maximum context length is 8192 tokens, you asked for 9100"
GEMINI = "gemini-2.5-flash"


# ---------------------------------------------------------------------------------------------
# Each provider's wire format (success and error bodies), as its SDK parses them


def gemini_reply(text: str) -> Reply:
    return Reply.json(
        200,
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
            "modelVersion": GEMINI,
        },
    )


def gemini_error(status: int, message: str) -> Reply:
    # Google's own status field: INTERNAL for a per-request fault (transient), INVALID_ARGUMENT
    # for a request that cannot succeed, UNAVAILABLE for an outage.
    if status >= 500:
        state = "UNAVAILABLE"
    else:
        state = "INVALID_ARGUMENT" if message == PERMANENT else "INTERNAL"
    return Reply.json(status, {"error": {"code": status, "message": message, "status": state}})


def cohere_reply(text: str) -> Reply:
    return Reply.json(
        200,
        {
            "id": "c0ffee",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"billed_units": {"input_tokens": 1, "output_tokens": 1}},
        },
    )


def cohere_error(status: int, message: str) -> Reply:
    return Reply.json(status, {"message": message})


def mistral_error(status: int, message: str) -> Reply:
    kind = "invalid_request_error" if status == 400 else "service_unavailable"
    return Reply.json(status, {"object": "error", "message": message, "type": kind})


def openai_style_error(status: int, message: str) -> Reply:
    return openai_error(status, message, "server_error" if status >= 500 else "bad_request")


# ---------------------------------------------------------------------------------------------
# Each SDK: how to hand it a client and ask it one question

MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def ask_gemini(url: str, http: Any) -> str:
    options = genai_types.HttpOptions(base_url=url, api_version="v1beta", httpx_async_client=http)
    client = genai.Client(api_key="k", http_options=options)
    answer: Any = await client.aio.models.generate_content(model=GEMINI, contents="hi")
    return str(answer.text)


def ask_gemini_sync(url: str, http: Any) -> str:
    options = genai_types.HttpOptions(base_url=url, api_version="v1beta", httpx_client=http)
    client = genai.Client(api_key="k", http_options=options)
    return str(client.models.generate_content(model=GEMINI, contents="hi").text)


async def ask_mistral(url: str, http: Any) -> str:
    client = mistralai.client.Mistral(api_key="k", server_url=url, async_client=http)
    answer: Any = await client.chat.complete_async(model="mistral-small-latest", messages=MESSAGES)
    return str(answer.choices[0].message.content)


def ask_mistral_sync(url: str, http: Any) -> str:
    client = mistralai.client.Mistral(api_key="k", server_url=url, client=http)
    answer: Any = client.chat.complete(model="mistral-small-latest", messages=MESSAGES)
    return str(answer.choices[0].message.content)


async def ask_groq(url: str, http: Any) -> str:
    client = groq.AsyncGroq(api_key="k", base_url=url, http_client=http, max_retries=0)
    answer: Any = await client.chat.completions.create(model="llama-3.3-70b", messages=MESSAGES)
    return str(answer.choices[0].message.content)


def ask_groq_sync(url: str, http: Any) -> str:
    client = groq.Groq(api_key="k", base_url=url, http_client=http, max_retries=0)
    answer: Any = client.chat.completions.create(model="llama-3.3-70b", messages=MESSAGES)
    return str(answer.choices[0].message.content)


async def ask_together(url: str, http: Any) -> str:
    client = together.AsyncTogether(api_key="k", base_url=url, http_client=http, max_retries=0)
    answer: Any = await client.chat.completions.create(
        model="meta-llama/Llama-3-8b", messages=MESSAGES
    )
    return str(answer.choices[0].message.content)


def ask_together_sync(url: str, http: Any) -> str:
    client = together.Together(api_key="k", base_url=url, http_client=http, max_retries=0)
    answer: Any = client.chat.completions.create(model="meta-llama/Llama-3-8b", messages=MESSAGES)
    return str(answer.choices[0].message.content)


async def ask_cohere(url: str, http: Any) -> str:
    client = cohere.AsyncClientV2(api_key="k", base_url=url, httpx_client=http, max_retries=0)
    answer: Any = await client.chat(model="command-a-03-2025", messages=MESSAGES)
    return str(answer.message.content[0].text)


def ask_cohere_sync(url: str, http: Any) -> str:
    client = cohere.ClientV2(api_key="k", base_url=url, httpx_client=http, max_retries=0)
    answer: Any = client.chat(model="command-a-03-2025", messages=MESSAGES)
    return str(answer.message.content[0].text)


@dataclass(frozen=True)
class Sdk:
    name: str
    path: str
    flavours: tuple[str, ...]
    ask: Callable[[str, Any], Awaitable[str]]
    ask_sync: Callable[[str, Any], str]
    reply: Callable[[str], Reply]
    error: Callable[[int, str], Reply]
    raises: type[Exception]
    trio: bool = True  # False: the SDK's async client runs on asyncio only


SDKS = [
    Sdk(
        "google-genai",
        f"/v1beta/models/{GEMINI}:generateContent",
        ("httpx", "httpx2"),
        ask_gemini,
        ask_gemini_sync,
        gemini_reply,
        gemini_error,
        genai_errors.APIError,
    ),
    Sdk(
        "mistralai",
        "/v1/chat/completions",
        ("httpx", "httpx2"),
        ask_mistral,
        ask_mistral_sync,
        openai_chat,
        mistral_error,
        mistralai.client.errors.SDKError,
        trio=False,  # its async client calls asyncio.to_thread for its hooks
    ),
    Sdk(
        "groq",
        "/openai/v1/chat/completions",
        ("httpx",),
        ask_groq,
        ask_groq_sync,
        openai_chat,
        openai_style_error,
        groq.APIStatusError,
    ),
    Sdk(
        "together",
        "/v1/chat/completions",
        ("httpx",),
        ask_together,
        ask_together_sync,
        openai_chat,
        openai_style_error,
        together.APIStatusError,
    ),
    Sdk(
        "cohere",
        "/v2/chat",
        ("httpx",),
        ask_cohere,
        ask_cohere_sync,
        cohere_reply,
        cohere_error,
        CohereApiError,
    ),
]
CASES = [
    pytest.param(sdk, flavour, id=f"{sdk.name}-{flavour}")
    for sdk in SDKS
    for flavour in sdk.flavours
]


def async_client(flavour: str, sleeps: Sleeps) -> Any:
    module = lib(flavour)
    transport = RetryTransport(
        module.AsyncHTTPTransport(), policy=POLICY, sleep=sleeps, clock=sleeps.clock
    )
    return module.AsyncClient(transport=transport)


def sync_client(flavour: str, sleeps: Sleeps) -> Any:
    module = lib(flavour)
    transport = SyncRetryTransport(
        module.HTTPTransport(), policy=POLICY, sleep=sleeps.sync, clock=sleeps.clock
    )
    return module.Client(transport=transport)


def on(backend: str, sdk: Sdk) -> None:
    """Skip an asyncio-only SDK on trio (`test_an_asyncio_only_sdk_fails_on_trio` covers it)."""
    if backend == "trio" and not sdk.trio:
        pytest.skip(f"{sdk.name}'s async client runs on asyncio only")


@pytest.mark.parametrize(("sdk", "flavour"), CASES)
async def test_a_transient_400_is_recovered(
    sdk: Sdk, flavour: str, upstream: Upstream, anyio_backend: str
) -> None:
    on(anyio_backend, sdk)
    upstream.script(sdk.path, sdk.error(400, TRANSIENT), sdk.reply("recovered"))
    sleeps = Sleeps()
    async with async_client(flavour, sleeps) as http:
        assert await sdk.ask(upstream.url, http) == "recovered"
    assert upstream.count(sdk.path) == 2
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize(("sdk", "flavour"), CASES)
async def test_a_permanent_400_is_answered_after_one_request(
    sdk: Sdk, flavour: str, upstream: Upstream, anyio_backend: str
) -> None:
    on(anyio_backend, sdk)
    upstream.script(sdk.path, sdk.error(400, PERMANENT), sdk.reply("never"))
    async with async_client(flavour, Sleeps()) as http:
        with pytest.raises(sdk.raises, match="maximum context length"):
            await sdk.ask(upstream.url, http)
    assert upstream.count(sdk.path) == 1


@pytest.mark.parametrize(("sdk", "flavour"), CASES)
async def test_an_outage_costs_our_attempts_only(
    sdk: Sdk, flavour: str, upstream: Upstream, anyio_backend: str
) -> None:
    on(anyio_backend, sdk)
    upstream.script(sdk.path, sdk.error(503, "the service is unavailable"))
    async with async_client(flavour, Sleeps()) as http:
        with pytest.raises(sdk.raises, match="unavailable"):
            await sdk.ask(upstream.url, http)
    assert upstream.count(sdk.path) == POLICY.max_attempts  # the SDK's own loop added none


@pytest.mark.parametrize(("sdk", "flavour"), CASES)
def test_the_sync_client_recovers_and_fails_fast_too(
    sdk: Sdk, flavour: str, upstream: Upstream
) -> None:
    upstream.script(sdk.path, sdk.error(400, TRANSIENT), sdk.reply("sync ok"))
    sleeps = Sleeps()
    with sync_client(flavour, sleeps) as http:
        assert sdk.ask_sync(upstream.url, http) == "sync ok"
        assert upstream.count(sdk.path) == 2
        upstream.reset()
        upstream.script(sdk.path, sdk.error(400, PERMANENT))
        with pytest.raises(sdk.raises, match="maximum context length"):
            sdk.ask_sync(upstream.url, http)
    assert upstream.count(sdk.path) == 1
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("sdk", [sdk for sdk in SDKS if not sdk.trio], ids=lambda sdk: sdk.name)
async def test_an_asyncio_only_sdk_fails_on_trio_before_any_request(
    sdk: Sdk, upstream: Upstream, anyio_backend: str
) -> None:
    # The README says so; this fails (and the README must change) once the SDK runs on trio.
    async with async_client(sdk.flavours[0], Sleeps()) as http:
        with pytest.raises(RuntimeError, match="no running event loop"):
            await sdk.ask(upstream.url, http)
    assert upstream.count(sdk.path) == 0


def pool_size(client: Any) -> int:
    """How many connections the client's (wrapped) pool may open (httpcore's own attribute)."""
    return int(client._transport.transport._pool._max_connections)


@pytest.mark.parametrize("sdk", [openai, anthropic], ids=lambda sdk: sdk.__name__)
async def test_the_readme_recipe_keeps_the_sdks_pool_and_timeout(sdk: Any) -> None:
    plain = httpx2.AsyncClient(transport=RetryTransport(httpx2.AsyncHTTPTransport()))
    wrapped = httpx2.AsyncHTTPTransport(limits=sdk.DEFAULT_CONNECTION_LIMITS)
    kept = sdk.DefaultAsyncHttpxClient(transport=RetryTransport(wrapped))
    async with plain, kept:
        assert pool_size(plain) == 100  # httpx's default: the SDK's own 1000 is gone
        assert pool_size(kept) == sdk.DEFAULT_CONNECTION_LIMITS.max_connections == 1000
        assert kept.timeout == sdk.DEFAULT_TIMEOUT
        assert kept.follow_redirects
        assert not plain.follow_redirects
        # The SDK still sends its own timeout per request while the client keeps httpx's.
        assert httpx2.Timeout(600, connect=5.0) == sdk.DEFAULT_TIMEOUT
        make = sdk.AsyncOpenAI if sdk is openai else sdk.AsyncAnthropic
        assert make(api_key="k", http_client=plain).timeout == sdk.DEFAULT_TIMEOUT
        custom = httpx2.AsyncClient(transport=RetryTransport(), timeout=30.0)
        assert make(api_key="k", http_client=custom).timeout == httpx2.Timeout(30.0)


README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def readme_block(containing: str) -> str:
    (block,) = [b for b in README.split("```python\n")[1:] if containing in b.split("```")[0]]
    return block.split("```")[0]


@pytest.mark.parametrize(
    ("marker", "clients"),
    [
        ("openai.DefaultAsyncHttpxClient", ["client"]),
        ("anthropic.DefaultAsyncHttpxClient", ["client"]),
        (
            "mistralai.client.Mistral(",
            ["gemini", "mistral", "groq_client", "together_client", "cohere_client"],
        ),
    ],
)
async def test_the_readme_recipes_build_clients_on_the_transport(
    marker: str, clients: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("OPENAI", "ANTHROPIC", "GEMINI", "MISTRAL", "GROQ", "TOGETHER", "CO"):
        monkeypatch.setenv(f"{key}_API_KEY", "k")
    namespace: dict[str, Any] = {}
    exec(readme_block(marker), namespace)
    for name in clients:
        client = namespace[name]
        http = {
            "gemini": lambda c: c._api_client._async_httpx_client,
            "mistral": lambda c: c.sdk_configuration.async_client,
            "cohere_client": lambda c: c._client_wrapper.httpx_client.httpx_client,
        }.get(name, lambda c: c._client)(client)
        assert isinstance(http._transport, RetryTransport), name
        await http.aclose()


def test_sdks_renaming_the_base_classes_do_not_change_a_transports_flavour() -> None:
    # Importing these SDKs renames the __module__ of the base classes they re-export.
    assert httpx2.BaseTransport.__module__ == "openai"
    assert lib("httpx").BaseTransport.__module__ in ("groq", "together")

    class Flaky(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.calls = 0

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            self.calls += 1
            return httpx2.Response(503 if self.calls == 1 else 200)

    sleeps = Sleeps()
    flaky = Flaky()
    transport = SyncRetryTransport(flaky, sleep=sleeps.sync, clock=sleeps.clock)
    assert isinstance(transport, httpx2.BaseTransport)
    with httpx2.Client(transport=transport) as client:
        response = client.get("http://upstream.test/")
    assert isinstance(response, httpx2.Response)
    assert response.status_code == 200
    assert flaky.calls == 2
