"""Compressed error bodies and event streams are classified by what they say, and reach the
caller exactly as the upstream sent them (httpx asks for gzip by default)."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from retry_transport import RetryTransport, Verdict
from retry_transport.testing.upstream import Reply, Upstream

from ..transport_helpers import Sleeps

pytestmark = pytest.mark.anyio

CONTEXT_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens",
        "code": "context_length_exceeded",
    }
}
DEGRADED = {"status": 400, "detail": "Function 'x': DEGRADED function cannot be invoked"}


def compressed(status: int, obj: object, encoding: str = "gzip") -> Reply:
    raw = json.dumps(obj).encode()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    headers = (("content-type", "application/json"), ("content-encoding", encoding))
    return Reply(status, body, headers)


def sse_gzip(*events: str) -> Reply:
    data = gzip.compress("".join(f"{event}\n\n" for event in events).encode())
    chunks = [data[i : i + 16] for i in range(0, len(data), 16)]
    headers = (("content-type", "text/event-stream"), ("content-encoding", "gzip"))
    return Reply(200, headers=headers, chunks=chunks)


def client(sleeps: Sleeps) -> httpx.AsyncClient:
    transport = RetryTransport(httpx.AsyncHTTPTransport(), sleep=sleeps, clock=sleeps.clock)
    return httpx.AsyncClient(transport=transport)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_permanent_400_fails_in_one_request(
    encoding: str, upstream: Upstream
) -> None:
    upstream.script("/v1/chat", compressed(400, CONTEXT_TOO_LONG, encoding))
    async with client(Sleeps()) as http:
        response = await http.post(upstream.url + "/v1/chat", json={})
    assert upstream.count("/v1/chat") == 1
    assert response.json() == CONTEXT_TOO_LONG  # the caller's copy, decoded by httpx, whole
    assert response.extensions["retry_history"][0].verdict is Verdict.FATAL


async def test_compressed_transient_400_is_recognised(upstream: Upstream) -> None:
    upstream.script("/v1/chat", compressed(400, DEGRADED), Reply.json(200, {"ok": True}))
    async with client(Sleeps()) as http:
        response = await http.post(upstream.url + "/v1/chat", json={})
    assert response.status_code == 200
    history = response.extensions["retry_history"]
    assert (history[0].verdict, history[0].reason) == (Verdict.TRANSIENT, "rule nim-degraded")


async def test_compressed_stream_error_before_content_is_retried(upstream: Upstream) -> None:
    overloaded = 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}'
    delta = 'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}'
    upstream.script("/v1/messages", sse_gzip(overloaded), sse_gzip(delta))
    async with client(Sleeps()) as http:
        response = await http.post(upstream.url + "/v1/messages", json={})
        text = response.text
    assert upstream.count("/v1/messages") == 2
    assert text == f"{delta}\n\n"


async def test_stream_in_an_unknown_encoding_is_handed_on_untouched(upstream: Upstream) -> None:
    headers = (("content-type", "text/event-stream"), ("content-encoding", "x-unknown"))
    upstream.script("/v1/messages", Reply(200, headers=headers, chunks=[b"\x00\x01binary"]))
    async with (
        client(Sleeps()) as http,
        http.stream("POST", upstream.url + "/v1/messages", json={}) as response,
    ):
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert raw == b"\x00\x01binary"
    assert upstream.count("/v1/messages") == 1
