"""RetryTransport under the anthropic SDK, streaming (anthropic>=1 needs an httpx2 client).

Run: python examples/anthropic_client.py [BASE_URL]
Without BASE_URL it starts the demo's embedded flaky upstream, whose first stream sends an
`overloaded_error` after `message_start` and `ping`, before any content: the transport retries
it, and the caller sees one clean stream.
"""

from __future__ import annotations

import sys

import anthropic
import anyio
import httpx2

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.testing.upstream import Upstream, anthropic_message, anthropic_stream_error

POLICY = RetryPolicy(congestion_backoff=Backoff(base=0.1, cap=1.0))  # short waits for the demo


async def main(base_url: str) -> None:
    # The SDK's own pool size goes on the wrapped transport (a client's `limits=` is ignored
    # once it is given a transport); DefaultAsyncHttpxClient keeps the SDK's timeout and
    # redirect defaults.
    wrapped = httpx2.AsyncHTTPTransport(limits=anthropic.DEFAULT_CONNECTION_LIMITS)
    transport = RetryTransport(wrapped, policy=POLICY)
    client = anthropic.AsyncAnthropic(
        base_url=base_url,
        api_key="sk-ant-example",
        http_client=anthropic.DefaultAsyncHttpxClient(transport=transport),
        max_retries=0,  # the transport is the one retry authority
    )
    print(f"timeout: {client.timeout}")
    async with client:
        stream = await client.messages.create(
            model="claude-sonnet-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
        )
        text = [
            event.delta.text
            async for event in stream
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        ]
    print(f"streamed answer: {''.join(text)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1])
    else:
        with Upstream() as upstream:
            upstream.script(
                "/v1/messages",
                anthropic_stream_error("preamble"),
                anthropic_message("hello after an overload", stream=True),
            )
            anyio.run(main, upstream.url)
