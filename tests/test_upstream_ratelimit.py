"""The upstream's rate-limit mode on the wire: token buckets per API key and model, 429s, and
each provider's rate-limit headers. Time is an injected clock; nothing waits."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from retry_transport.testing.upstream import (
    DIALECTS,
    ProviderRateLimit,
    Reply,
    Scope,
    ScopeCounts,
    Upstream,
    go_duration,
)

EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CHAT = "/v1/chat/completions"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(upstream: Upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url) as client:
        yield client


def chat(client: httpx.Client, key: str = "k1", model: str = "m", **body: object) -> httpx.Response:
    return client.post(
        CHAT, json={"model": model, **body}, headers={"authorization": f"Bearer {key}"}
    )


# -- buckets ----------------------------------------------------------------------------------


def test_requests_over_the_limit_get_429_until_the_bucket_refills(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    limit = ProviderRateLimit(requests=3, window_seconds=60, clock=clock)
    upstream.rate_limit = limit
    assert [chat(client).status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = chat(client)
    assert refused.headers["retry-after"] == "20"  # one request back every 20 s
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "requests"
    clock.now += 19.9
    assert chat(client).status_code == 429
    clock.now += 0.1
    assert chat(client).status_code == 200
    assert limit.counts() == {Scope("k1", "m"): ScopeCounts(requests=7, limited=3)}
    assert limit.totals() == ScopeCounts(7, 3)


def test_tokens_are_estimated_from_the_body_and_max_tokens(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    limit = ProviderRateLimit(requests=None, tokens=100, clock=clock)
    upstream.rate_limit = limit
    first = chat(client, max_tokens=45)
    body = len(upstream.received()[0].content)
    cost = -(-body // 4) + 45
    assert first.headers["x-ratelimit-remaining-tokens"] == str(100 - cost)
    assert "x-ratelimit-remaining-requests" not in first.headers
    assert chat(client, max_tokens=45).status_code == 429  # 2 * cost > 100
    assert limit.cost_of(upstream.received()[0]) == (-(-body // 4), 45)


@pytest.mark.parametrize(
    "body",
    [
        {"max_completion_tokens": 30},
        {"max_output_tokens": 30},
        {"generationConfig": {"maxOutputTokens": 30}},
    ],
)
def test_every_providers_output_cap_counts_as_output_tokens(
    upstream: Upstream, client: httpx.Client, body: dict[str, object]
) -> None:
    upstream.rate_limit = ProviderRateLimit(tokens=1000)
    client.post(CHAT, json=body)
    assert upstream.rate_limit.cost_of(upstream.received()[0])[1] == 30


def test_a_body_that_is_not_a_json_object_costs_its_length_only(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.rate_limit = limit = ProviderRateLimit(tokens=1000)
    client.post(CHAT, content=b"[1, 2]")
    client.post(CHAT, content=b"not json")
    client.post(CHAT, json={"max_tokens": True})
    first, second, third = upstream.received()
    assert [limit.cost_of(r)[1] for r in (first, second, third)] == [0, 0, 0]
    assert limit.scope_of(second) == Scope("", "")


def test_a_request_larger_than_the_bucket_is_always_refused(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(tokens=50, window_seconds=60, clock=clock)
    refused = chat(client, max_tokens=1000)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    clock.now += 3600
    assert chat(client, max_tokens=1000).status_code == 429


def test_a_short_window_plays_a_per_minute_limit_in_a_moment(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=60, window_seconds=0.6, clock=clock)
    assert [chat(client).status_code for _ in range(61)].count(429) == 1
    clock.now += 0.01  # a hundredth of the window: one request back
    assert chat(client).status_code == 200
    assert chat(client).status_code == 429


def test_a_refused_request_does_not_consume_the_script(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=1, clock=clock)
    upstream.script(CHAT, Reply(201, b"first"), Reply(202, b"second"))
    assert chat(client).status_code == 201
    assert chat(client).status_code == 429
    clock.now += 60
    assert chat(client).status_code == 202
    assert upstream.count(CHAT) == 3  # every request is recorded, refused or not


def test_scripted_replies_carry_the_rate_limit_headers(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=5, clock=clock)
    upstream.script(CHAT, Reply(503, b"busy", (("x-own", "1"),)))
    answer = chat(client)
    assert (answer.status_code, answer.headers["x-own"]) == (503, "1")
    assert answer.headers["x-ratelimit-remaining-requests"] == "4"


def test_set_limits_changes_the_rate_of_every_scope_mid_run(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = limit = ProviderRateLimit(
        requests=10, tokens=10_000, window_seconds=1, dialect="none", clock=clock
    )
    assert [chat(client).status_code for _ in range(11)].count(429) == 1
    limit.set_limits(requests=5)  # the upstream drops from 10 to 5 requests per second
    clock.now += 1.0
    assert [chat(client).status_code for _ in range(6)].count(429) == 1  # full at the new size
    clock.now += 0.2
    assert [chat(client).status_code for _ in range(2)] == [200, 429]  # refills at 5 per s
    limit.set_limits(tokens=20)
    assert limit.requests == 5
    assert limit.tokens == 20
    clock.now += 10
    assert chat(client, max_tokens=100).status_code == 429


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"requests": 0}, "requests"), ({"tokens": True}, "tokens"), ({"tokens": 10}, "not kept")],
)
def test_set_limits_refuses_bad_values_and_a_limit_not_kept(
    kwargs: dict[str, object], field: str
) -> None:
    limit = ProviderRateLimit(requests=5)
    with pytest.raises(ValueError, match=field):
        limit.set_limits(**kwargs)  # type: ignore[arg-type]


# -- scopes -----------------------------------------------------------------------------------


def test_each_key_and_model_has_buckets_of_its_own(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = limit = ProviderRateLimit(requests=1, clock=clock)
    assert chat(client, "a", "m1").status_code == 200
    assert chat(client, "a", "m1").status_code == 429
    assert chat(client, "a", "m2").status_code == 200
    assert chat(client, "b", "m1").status_code == 200
    assert limit.counts() == {
        Scope("a", "m1"): ScopeCounts(2, 1),
        Scope("a", "m2"): ScopeCounts(1, 0),
        Scope("b", "m1"): ScopeCounts(1, 0),
    }


@pytest.mark.parametrize(
    ("headers", "query", "key"),
    [
        ({"authorization": "Bearer sk-1"}, "", "sk-1"),
        ({"authorization": "Basic abc"}, "", "Basic abc"),
        ({"x-api-key": "ant-1"}, "", "ant-1"),
        ({"api-key": "az-1"}, "", "az-1"),
        ({"x-goog-api-key": "g-1"}, "", "g-1"),
        ({}, "?key=g-2", "g-2"),
        ({}, "", ""),
    ],
)
def test_the_key_is_read_from_each_providers_header(
    upstream: Upstream, client: httpx.Client, headers: dict[str, str], query: str, key: str
) -> None:
    upstream.rate_limit = limit = ProviderRateLimit()
    client.post(CHAT + query, json={"model": "m"}, headers=headers)
    assert limit.counts() == {Scope(key, "m"): ScopeCounts(1, 0)}


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/openai/deployments/gpt-prod/chat/completions?api-version=2024-10-21", "gpt-prod"),
        ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro"),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", "gemini-2.5-pro"),
        ("/v1/chat/completions", "from-body"),
    ],
)
def test_the_model_is_read_from_the_path_for_azure_and_gemini(
    upstream: Upstream, client: httpx.Client, path: str, model: str
) -> None:
    upstream.rate_limit = limit = ProviderRateLimit()
    client.post(path, json={"model": "from-body"}, headers={"api-key": "k"})
    assert list(limit.counts()) == [Scope("k", model)]


# -- dialects ---------------------------------------------------------------------------------


def test_openai_headers_give_limits_remaining_and_go_duration_resets(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=60, tokens=1000, clock=clock)
    answer = chat(client, max_tokens=100)
    used = 1000 - int(answer.headers["x-ratelimit-remaining-tokens"])
    assert {k: v for k, v in answer.headers.items() if k.startswith("x-ratelimit")} == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": str(1000 - used),
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": go_duration(used * 60 / 1000),
    }


def test_groq_headers_are_openais(upstream: Upstream, client: httpx.Client, clock: Clock) -> None:
    upstream.rate_limit = ProviderRateLimit(
        requests=30, window_seconds=60, dialect="groq", clock=clock
    )
    answer = chat(client)
    assert answer.headers["x-ratelimit-limit-requests"] == "30"
    assert answer.headers["x-ratelimit-reset-requests"] == "2s"


def test_anthropic_headers_give_rfc3339_resets_for_each_token_kind(
    upstream: Upstream, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(
        requests=2, tokens=10_000, dialect="anthropic", clock=clock
    )
    claude = anthropic.Anthropic(base_url=upstream.url, api_key="ant", max_retries=0)
    with claude:
        raw = claude.messages.with_raw_response.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        headers = raw.headers
        claude.messages.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(anthropic.RateLimitError) as refused:
            claude.messages.create(
                model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
            )
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert headers["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:00:30Z"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == str(10_000 - 100)
    assert headers["anthropic-ratelimit-output-tokens-reset"] == "2027-01-15T08:00:01Z"
    for kind in ("tokens", "input-tokens"):
        assert headers[f"anthropic-ratelimit-{kind}-limit"] == "10000"
        assert headers[f"anthropic-ratelimit-{kind}-reset"].startswith("2027-01-15T08:00:0")
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": refused.value.body["error"]["message"]},  # type: ignore[index]
        "request_id": refused.value.body["request_id"],  # type: ignore[index]
    }
    assert refused.value.response.headers["retry-after"] == "30"


def test_azure_headers_give_remaining_only_and_retry_after_ms(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(
        requests=1, tokens=500, window_seconds=10, dialect="azure", clock=clock
    )
    path = "/openai/deployments/d1/chat/completions?api-version=2024-10-21"
    first = client.post(path, json={}, headers={"api-key": "k"})
    second = client.post(path, json={}, headers={"api-key": "k"})
    assert {k for k in first.headers if "ratelimit" in k} == {
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
    }
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert (second.status_code, second.headers["retry-after-ms"]) == (429, "10000")
    assert second.headers["retry-after"] == "10"


def test_azure_quirks_send_minus_one_and_a_hyphenated_reset_instead_of_retry_after(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(
        requests=1, window_seconds=10, dialect="azure", clock=clock, azure_quirks=True
    )
    path = "/openai/deployments/d1/responses?api-version=preview"
    first = client.post(path, json={}, headers={"api-key": "k"})
    second = client.post(path, json={}, headers={"api-key": "k"})
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.headers.get_list("x-ratelimit-remaining-tokens") == ["-1"]
    assert (
        first.headers["x-ratelimit-limit-tokens"],
        first.headers["x-ratelimit-reset-tokens"],
    ) == (
        "-1",
        "0",
    )
    assert second.status_code == 429
    assert second.headers["x-rate-limit-reset-tokens"] == "10"
    assert "retry-after" not in second.headers


def test_azure_quirks_need_the_azure_dialect() -> None:
    with pytest.raises(ValueError, match="azure_quirks"):
        ProviderRateLimit(dialect="openai", azure_quirks=True)


def test_ietf_headers_are_structured_fields(
    upstream: Upstream, client: httpx.Client, clock: Clock
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=10, tokens=1000, dialect="ietf", clock=clock)
    answer = chat(client)
    used = 1000 - int(answer.headers["ratelimit"].split("r=")[2].split(";")[0])
    assert answer.headers["ratelimit-policy"] == (
        '"requests";q=10;w=60, "tokens";q=1000;w=60;qu="tokens"'
    )
    assert answer.headers["ratelimit"] == (
        f'"requests";r=9;t=6, "tokens";r={1000 - used};t={-(-used * 60 // 1000)}'
    )


def test_the_none_dialect_sends_no_header_even_on_a_429(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=1, dialect="none")
    ok, refused = chat(client), chat(client)
    for answer in (ok, refused):
        assert not [k for k in answer.headers if "ratelimit" in k or k.startswith("retry-after")]
    assert refused.status_code == 429


def test_retry_after_can_be_left_out(upstream: Upstream, client: httpx.Client) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=1, retry_after=False)
    chat(client)
    refused = chat(client)
    assert refused.status_code == 429
    assert "retry-after" not in refused.headers
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_429_bodies_follow_the_provider_of_the_path(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=1)
    gemini = "/v1beta/models/g:generateContent"
    client.post(gemini, json={})
    assert client.post(gemini, json={}).json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    gpt = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with gpt:
        gpt.models.with_raw_response.list()  # no model: its own scope
        with pytest.raises(openai.RateLimitError):
            gpt.models.list()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_limits_alike(upstream: Upstream, client: httpx.Client, dialect: str) -> None:
    upstream.rate_limit = ProviderRateLimit(requests=2, dialect=dialect)  # type: ignore[arg-type]
    assert [chat(client).status_code for _ in range(3)] == [200, 200, 429]


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (360, "6m0s"),
        (1.5, "1.5s"),
        (0.012, "12ms"),
        (3600, "1h0m0s"),
        (3723.25, "1h2m3.25s"),
        (179.56, "2m59.56s"),
        (7.66, "7.66s"),
        (1, "1s"),
        (0, "0s"),
        (-1, "0s"),
        (float("inf"), "0s"),
    ],
)
def test_go_duration_prints_as_go_does(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"requests": 0}, "requests"),
        ({"requests": True}, "requests"),
        ({"tokens": 1.5}, "tokens"),
        ({"requests": None, "tokens": None}, "requests and tokens"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": float("inf")}, "window_seconds"),
        ({"window_seconds": "60"}, "window_seconds"),
        ({"dialect": "aws"}, "dialect"),
    ],
)
def test_bad_limits_raise_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        ProviderRateLimit(**kwargs)  # type: ignore[arg-type]


def test_a_clock_that_is_not_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="clock"):
        ProviderRateLimit(clock=1.0)  # type: ignore[arg-type]


def test_an_upstream_takes_its_limit_at_construction(clock: Clock) -> None:
    limit = ProviderRateLimit(requests=1, clock=clock)
    with Upstream(rate_limit=limit) as up, httpx.Client(base_url=up.url) as client:
        assert [client.get("/x").status_code for _ in range(2)] == [200, 429]
    assert up.rate_limit is limit
