"""RetryTransport under the openai SDK (httpx2 client, as openai>=3 uses by default).

Run: python examples/openai_client.py [BASE_URL]
Without BASE_URL it starts the demo's embedded flaky upstream, which first answers with NVIDIA
NIM's transient "DEGRADED function cannot be invoked" 400, then with a completion.
"""

from __future__ import annotations

import sys

import anyio
import httpx2
import openai

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.testing.upstream import Reply, Upstream, openai_chat

POLICY = RetryPolicy(transient_backoff=Backoff(base=0.1, cap=1.0))  # short waits for the demo


async def main(base_url: str) -> None:
    # The SDK's own pool size goes on the wrapped transport (a client's `limits=` is ignored
    # once it is given a transport); DefaultAsyncHttpxClient keeps the SDK's timeout and
    # redirect defaults.
    wrapped = httpx2.AsyncHTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
    transport = RetryTransport(wrapped, policy=POLICY)
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="sk-example",
        http_client=openai.DefaultAsyncHttpxClient(transport=transport),
        max_retries=0,  # the transport is the one retry authority
    )
    print(f"timeout: {client.timeout}")
    async with client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
        )
    print(f"answer: {completion.choices[0].message.content}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1])
    else:
        with Upstream() as upstream:
            degraded = {
                "status": 400,
                "title": "Bad Request",
                "detail": "Function id 'f00': DEGRADED function cannot be invoked",
            }
            upstream.script(
                "/v1/chat/completions", Reply.json(400, degraded), openai_chat("hello from NIM")
            )
            anyio.run(main, upstream.url + "/v1")
