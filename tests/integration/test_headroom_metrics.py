"""The sidecar's ``/metrics`` show each upstream's per-scope headroom: origin and model, never
the key, the label set bounded.

A real sidecar (uvicorn in a thread) in front of the loopback upstream, which enforces a rate per
key and model and answers with OpenAI's ``x-ratelimit-*`` headers. Its bucket clock stands
still, so what it reports left is exact. The scrape is parsed by prometheus-client's own
parser. Clients run on asyncio and on trio.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from retry_transport.testing.upstream import ProviderRateLimit, Upstream

from ..proxy_helpers import Sidecar

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

pytestmark = pytest.mark.anyio

parser = pytest.importorskip("prometheus_client.parser")

KEYS = ("sk-headroom-one-do-not-show-0123", "sk-headroom-two-do-not-show-4567")
LIMIT = 60


@pytest.fixture
def limited() -> Iterator[Upstream]:
    with Upstream() as upstream:
        upstream.rate_limit = ProviderRateLimit(
            requests=LIMIT, window_seconds=60.0, dialect="openai", clock=lambda: 1e9
        )
        yield upstream


def headroom_rows(text: str, name: str) -> dict[tuple[str, str, str], float]:
    """The samples of gauge ``name``, by (origin, model, dimension); only those labels exist."""
    rows: dict[tuple[str, str, str], float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name:
                continue
            assert sorted(sample.labels) == ["dimension", "model", "origin"], sample
            labels = sample.labels
            rows[(labels["origin"], labels["model"], labels["dimension"])] = sample.value
    return rows


async def post(client: httpx.AsyncClient, key: str, model: str) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text


def assert_no_key_material(text: str) -> None:
    for key in KEYS:
        assert key not in text
        assert key[-8:] not in text
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            for value in sample.labels.values():
                # A credential fingerprint is 16 hex digits: no label holds one.
                assert re.search(r"[0-9a-f]{16}", value) is None, sample


async def scrape_after_four_requests(limited: Upstream, *argv: str) -> str:
    """Two keys on gpt-a (key one twice), key one on gpt-b; then the sidecar's metrics."""
    with Sidecar("--upstream", f"openai={limited.url}", *argv) as sidecar:
        async with httpx.AsyncClient(base_url=f"{sidecar.url}/openai") as client:
            await post(client, KEYS[0], "gpt-a")
            await post(client, KEYS[0], "gpt-a")
            await post(client, KEYS[1], "gpt-a")
            await post(client, KEYS[0], "gpt-b")
            return (await client.get(f"{sidecar.url}/_retry_transport/metrics")).text


def assert_headroom_of_four_requests(limited: Upstream, text: str) -> None:
    origin = limited.url
    # Per origin and model, the least left over the keys (key one spent two of gpt-a's).
    assert headroom_rows(text, "retry_transport_headroom") == {
        (origin, "gpt-a", "requests"): LIMIT - 2,
        (origin, "gpt-b", "requests"): LIMIT - 1,
    }
    pace = headroom_rows(text, "retry_transport_pace")
    assert set(pace) == {(origin, "gpt-a", "requests"), (origin, "gpt-b", "requests")}
    assert all(value > 0.0 for value in pace.values())
    assert_no_key_material(text)


async def test_metrics_show_headroom_per_origin_and_model_never_the_key(
    limited: Upstream,
) -> None:
    text = await scrape_after_four_requests(limited)
    assert_headroom_of_four_requests(limited, text)


async def test_a_sidecar_on_redis_shows_the_same_headroom(
    limited: Upstream, redis_server: RedisServer
) -> None:
    text = await scrape_after_four_requests(limited, "--redis", redis_server.url)
    assert_headroom_of_four_requests(limited, text)


async def test_models_beyond_the_cap_are_shown_folded_as_other(limited: Upstream) -> None:
    models = [f"model-{n:02d}" for n in range(30)]
    with Sidecar("--upstream", limited.url) as sidecar:
        async with httpx.AsyncClient(base_url=sidecar.url) as client:
            for model in models:
                await post(client, KEYS[0], model)
            text = (await client.get("/_retry_transport/metrics")).text
    rows = headroom_rows(text, "retry_transport_headroom")
    assert {model for _, model, _ in rows} == {*models[:25], "other"}
    assert rows[(limited.url, "other", "requests")] == LIMIT - 1
    assert_no_key_material(text)


async def test_before_any_answer_the_headroom_gauges_are_empty(limited: Upstream) -> None:
    with Sidecar("--upstream", limited.url) as sidecar:
        async with httpx.AsyncClient(base_url=sidecar.url) as client:
            text = (await client.get("/_retry_transport/metrics")).text
    assert "# TYPE retry_transport_headroom gauge" in text
    assert headroom_rows(text, "retry_transport_headroom") == {}
