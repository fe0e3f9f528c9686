"""A scripted loopback LLM provider for tests: a real HTTP/1.1 server on 127.0.0.1.

Start an `Upstream`, point a client (an SDK, httpx, a proxy) at its `url`, and script what each
path answers with `Reply` values, or with the provider answers built by the functions in
`retry_transport.testing.upstream.providers`::

    from retry_transport.testing.upstream import Upstream, anthropic_error, anthropic_message

    with Upstream() as up:
        up.script("/v1/messages", anthropic_error(529, "overloaded_error", "Overloaded"),
                  anthropic_message("hi"))
        client = anthropic.Anthropic(base_url=up.url, api_key="test")
        ...
        assert up.count("/v1/messages") == 2

The server runs in background threads, so sync, asyncio and trio clients all reach it, and
needs nothing beyond the standard library. Every request is recorded as a
`retry_transport.testing.Received`, the same shape `ScriptedTransport` records.

Modules, one idea each:

- `~retry_transport.testing.upstream.server`: `Upstream`, the server and its lifecycle.
- `~retry_transport.testing.upstream.wire`: `Reply`, `Fault` and the SSE encoding.
- `~retry_transport.testing.upstream.providers`: canned OpenAI, Anthropic and Gemini answers,
  their error bodies and in-band stream errors.
- `~retry_transport.testing.upstream.streams`: each protocol's stream whole, cut short or
  stalled (`stream_reply` with a `StreamFault`).
- `~retry_transport.testing.upstream.ratelimit`: `ProviderRateLimit`, token buckets per API
  key and model that answer 429 and send a provider's rate-limit headers.
"""

from __future__ import annotations

from .._received import Received
from .providers import (
    anthropic_error,
    anthropic_message,
    anthropic_stream_error,
    gemini_error,
    gemini_generate,
    openai_chat,
    openai_chat_stream_error,
    openai_error,
    openai_responses,
    openai_responses_failed,
)
from .ratelimit import DIALECTS, Dialect, ProviderRateLimit, Scope, ScopeCounts, go_duration
from .server import Responder, Upstream
from .streams import (
    STREAM_FAULTS,
    STREAM_PATHS,
    STREAM_PROTOCOLS,
    StreamFault,
    StreamProtocol,
    stream_reply,
    stream_request,
)
from .wire import Fault, Newline, Reply, sse_comment, sse_event

__all__ = [
    "DIALECTS",
    "STREAM_FAULTS",
    "STREAM_PATHS",
    "STREAM_PROTOCOLS",
    "Dialect",
    "Fault",
    "Newline",
    "ProviderRateLimit",
    "Received",
    "Reply",
    "Responder",
    "Scope",
    "ScopeCounts",
    "StreamFault",
    "StreamProtocol",
    "Upstream",
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream_error",
    "gemini_error",
    "gemini_generate",
    "go_duration",
    "openai_chat",
    "openai_chat_stream_error",
    "openai_error",
    "openai_responses",
    "openai_responses_failed",
    "sse_comment",
    "sse_event",
    "stream_reply",
    "stream_request",
]
