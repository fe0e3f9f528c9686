"""RetryTransport under a plain httpx.AsyncClient.

Run: python examples/httpx_client.py [BASE_URL]
Without BASE_URL it starts the demo's embedded flaky upstream, which answers 503 twice and
then 200, and prints each attempt the transport made.
"""

from __future__ import annotations

import sys

import anyio
import httpx

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.testing.upstream import Reply, Upstream

POLICY = RetryPolicy(congestion_backoff=Backoff(base=0.1, cap=1.0))  # short waits for the demo


async def main(base_url: str) -> None:
    transport = RetryTransport(httpx.AsyncHTTPTransport(), policy=POLICY)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        response = await client.post("/v1/echo", json={"hello": "world"})
    print(f"final status: {response.status_code}")
    for attempt in response.extensions["retry_history"]:
        print(f"  attempt {attempt.number}: status {attempt.status}, {attempt.reason}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1])
    else:
        with Upstream() as upstream:
            upstream.script(
                "/v1/echo", Reply.json(503, {"error": "busy"}), Reply.json(503, {}), Reply(200)
            )
            anyio.run(main, upstream.url)
