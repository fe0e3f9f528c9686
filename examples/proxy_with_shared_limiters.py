"""A small LLM proxy that forwards requests upstream through `RetryTransport`.

``/openai/...`` goes to the OpenAI upstream and ``/anthropic/...`` to the Anthropic one (add
more providers in `LLMProxy`'s mapping). Each provider gets one `SharedLimiter`, shared by
every request the proxy sends it: a 429 or an overload from one provider pauses the proxy's
traffic to *that* provider for the time it asked (no retry storm), while traffic to the others
flows on. Transient failures (a 503, NIM's "DEGRADED function", an ``overloaded_error`` before
the first streamed token) are retried before the client sees anything; what cannot be retried
comes back as the upstream sent it, with ``x-should-retry: false`` so the client's SDK does not
retry it again.

The proxy is a plain ASGI application (no framework). Try it against the project's loopback
upstream, which plays a flaky provider::

    python examples/proxy_with_shared_limiters.py

Serve it with any ASGI server, for example::

    OPENAI_UPSTREAM=https://api.openai.com ANTHROPIC_UPSTREAM=https://api.anthropic.com \\
        uvicorn --factory --app-dir examples proxy_with_shared_limiters:create_app

and point the SDKs at it: ``openai.OpenAI(base_url="http://localhost:8000/openai/v1")``,
``anthropic.Anthropic(base_url="http://localhost:8000/anthropic")``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio
import httpx

from retry_transport import RetryPolicy, RetryTransport, SharedLimiter

__all__ = ["LLMProxy", "create_app", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 7.6.1) and those the HTTP client sets itself.
_NOT_FORWARDED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)

DEFAULT_POLICY = RetryPolicy(max_attempts=4, deadline=120.0)
"""Four tries at most, and no request held longer than two minutes in all."""


class LLMProxy:
    """An ASGI app forwarding ``/<provider>/<path>`` to ``upstreams[provider] + /<path>``.

    One `SharedLimiter` (``limiters[provider]``) and one pooled client per provider. The
    response streams back as it arrives, with ``x-upstream-attempts`` telling how many tries
    it took. A request that could not be sent before the policy's deadline (a long block in
    force) is answered ``504``; an upstream that cannot be reached, ``502``.
    """

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        max_concurrency: int | None = None,
    ) -> None:
        self.limiters = {name: SharedLimiter(max_concurrency=max_concurrency) for name in upstreams}
        self.clients = {
            name: httpx.AsyncClient(
                base_url=url,
                transport=RetryTransport(
                    httpx.AsyncHTTPTransport(), policy=policy, limiter=self.limiters[name]
                ),
                timeout=httpx.Timeout(600.0, connect=10.0),
            )
            for name, url in upstreams.items()
        }

    async def aclose(self) -> None:
        """Close every upstream client."""
        for client in self.clients.values():
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported ASGI scope type {scope['type']!r}")
        provider, _, rest = scope["path"].lstrip("/").partition("/")
        client = self.clients.get(provider)
        if client is None:
            await _reply(send, 404, f"unknown provider {provider!r}")
            return
        target = "/" + rest
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _NOT_FORWARDED]
        request = client.build_request(
            scope["method"], target, headers=headers, content=await _body(receive)
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:  # the deadline (or a timeout) passed
            await _reply(send, 504, f"upstream {provider}: {type(exc).__name__}")
            return
        except httpx.TransportError as exc:
            await _reply(send, 502, f"upstream {provider}: {type(exc).__name__}")
            return
        try:
            attempts = len(response.extensions.get("retry_history", ())) or 1
            out = [
                (name, value)
                for name, value in response.headers.raw
                if name.lower() not in _NOT_FORWARDED or name.lower() == b"content-length"
            ]
            out.append((b"x-upstream-attempts", str(attempts).encode()))
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "proxy_error"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-should-retry", b"false")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> LLMProxy:
    """The proxy for ``OPENAI_UPSTREAM`` and ``ANTHROPIC_UPSTREAM`` (default: the real APIs)."""
    return LLMProxy(
        {
            "openai": os.environ.get("OPENAI_UPSTREAM", "https://api.openai.com"),
            "anthropic": os.environ.get("ANTHROPIC_UPSTREAM", "https://api.anthropic.com"),
        }
    )


async def demo(out: Callable[[str], object] = print) -> None:
    """Two flaky loopback providers behind the proxy; ``out`` is told what happened."""
    from retry_transport.testing.upstream import (
        Upstream,
        anthropic_error,
        anthropic_message,
        openai_chat,
        openai_error,
    )

    with Upstream() as openai_up, Upstream() as anthropic_up:
        fast = (("retry-after-ms", "200"),)
        openai_up.script(
            "/v1/chat/completions",
            openai_error(503, "The server is overloaded", headers=fast),
            openai_chat("hello from OpenAI"),
        )
        anthropic_up.script(
            "/v1/messages",
            anthropic_error(529, "overloaded_error", "Overloaded", headers=fast),
            anthropic_message("hello from Anthropic"),
        )
        proxy = LLMProxy({"openai": openai_up.url, "anthropic": anthropic_up.url})
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            chat = await client.post(
                "/openai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            text = chat.json()["choices"][0]["message"]["content"]
            tries = chat.headers["x-upstream-attempts"]
            out(f"openai: {chat.status_code} {text!r} after {tries} tries")
            message = await client.post(
                "/anthropic/v1/messages",
                json={"model": "claude-sonnet-5", "max_tokens": 64, "messages": []},
            )
            text = message.json()["content"][0]["text"]
            tries = message.headers["x-upstream-attempts"]
            out(f"anthropic: {message.status_code} {text!r} after {tries} tries")
        await proxy.aclose()


def main() -> None:
    """Run `demo`, with the transport's retry log lines shown."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(demo)


if __name__ == "__main__":
    main()
