"""Storm protection against the real loopback upstream: an outage is not multiplied.

Backoffs are shortened to milliseconds so that the retry budget, not the waiting, is what
limits the retries; nothing here asserts on time, only on what the upstream received.
"""

from __future__ import annotations

import anyio
import httpx
import pytest

from retry_transport import Backoff, RetryBudget, RetryPolicy, RetryTransport, SharedLimiter
from retry_transport.testing.upstream import Reply, Upstream

pytestmark = pytest.mark.anyio

CALLERS = 50
REQUESTS_EACH = 10
FAST = RetryPolicy(
    congestion_backoff=Backoff(base=0.001, cap=0.005),
    transient_backoff=Backoff(base=0.001, cap=0.005),
)


async def outage(
    upstream: Upstream, limiter: SharedLimiter, requests_each: int = REQUESTS_EACH
) -> float:
    """Upstream requests per logical request, 50 callers against an always-503 upstream."""
    upstream.script("/v1/chat/completions", Reply.json(503, {"error": "down"}))
    transport = RetryTransport(httpx.AsyncHTTPTransport(), policy=FAST, limiter=limiter)
    async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as client:

        async def caller() -> None:
            for _ in range(requests_each):
                response = await client.post("/v1/chat/completions", json={"q": 1})
                assert response.status_code == 503

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for _ in range(CALLERS):
                    group.start_soon(caller)
    return upstream.count("/v1/chat/completions") / (CALLERS * requests_each)


async def test_outage_amplification_stays_within_the_default_budget(upstream: Upstream) -> None:
    ratio = await outage(upstream, SharedLimiter())
    assert 1.0 < ratio <= 1.3


async def test_without_a_budget_the_same_outage_is_multiplied(upstream: Upstream) -> None:
    ratio = await outage(upstream, SharedLimiter(budget=None), requests_each=1)
    assert ratio == FAST.max_attempts  # every logical request tried five times


async def test_a_tighter_budget_means_fewer_retries(upstream: Upstream) -> None:
    # The budget alone (pacing off): pacing stretches the outage in time, and the budget's
    # per-second floor then weighs more against the fewer first attempts.
    limiter = SharedLimiter(budget=RetryBudget(ratio=0.05), pacing=False)
    ratio = await outage(upstream, limiter)
    assert ratio <= 1.1
