"""The sidecar's connection pool (`retry_transport.proxy.pool`) against the loopback upstream.

aiohttp runs on asyncio only, as the sidecar does (uvicorn serves on asyncio or uvloop), so
these tests run on asyncio alone.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.proxy import pool
from retry_transport.proxy.pool import AiohttpTransport, make_pool
from retry_transport.proxy.wire import WireTransport
from retry_transport.testing.upstream import Reply, Upstream
from tests.wire_server import exchange

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_bytes_pass_through_untouched_both_ways(upstream: Upstream) -> None:
    packed = gzip.compress(b'{"ok": true}')
    upstream.script(
        "/v1/x",
        Reply(200, packed, (("content-encoding", "gzip"), ("x-a", "1"), ("X-A", "2"))),
    )
    transport = AiohttpTransport()
    try:
        request = httpx.Request(
            "POST",
            f"{upstream.url}/v1/x?key=a%2Fb",
            headers=[("x-api-key", "sk-1"), ("x-twice", "a"), ("x-twice", "b")],
            content=b'{"q": 1}',
        )
        response, body = await exchange(transport, request)
    finally:
        await transport.aclose()
    assert response.status_code == 200
    assert body == packed  # not decompressed
    assert response.headers.get_list("x-a") == ["1", "2"]
    assert response.extensions["http_version"] == b"HTTP/1.1"
    (seen,) = upstream.received("/v1/x")
    assert seen.path == "/v1/x?key=a%2Fb"  # not re-quoted
    assert seen.content == b'{"q": 1}'
    sent = [name for name, _ in seen.headers]
    # Only what httpx.Request itself set (host, content-length) besides the caller's own.
    assert sorted(sent) == sorted(["host", "content-length", "x-api-key", "x-twice", "x-twice"])
    assert seen.header("host") == f"127.0.0.1:{upstream.port}"


async def test_a_get_without_a_body_sends_no_length(upstream: Upstream) -> None:
    transport = AiohttpTransport()
    try:
        response, body = await exchange(transport, httpx.Request("GET", f"{upstream.url}/models"))
    finally:
        await transport.aclose()
    assert (response.status_code, body) == (200, b'{"ok":true}')
    (seen,) = upstream.received("/models")
    assert seen.header("content-length") is None
    assert seen.header("transfer-encoding") is None


async def test_a_body_of_unknown_length_is_sent_chunked(upstream: Upstream) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    transport = AiohttpTransport()
    try:
        request = httpx.Request("POST", f"{upstream.url}/upload", content=parts())
        response, _ = await exchange(transport, request)
    finally:
        await transport.aclose()
    assert response.status_code == 200
    (seen,) = upstream.received("/upload")
    assert seen.content == b"one two three"
    assert seen.header("transfer-encoding") == "chunked"


async def test_connections_are_reused_once_a_body_was_read(upstream: Upstream) -> None:
    transport = AiohttpTransport()
    try:
        for _ in range(3):
            await exchange(transport, httpx.Request("GET", f"{upstream.url}/ok"))
        # A body left unread closes its connection instead of handing it back.
        upstream.script("/big", Reply(200, chunks=[b"x" * 65536] * 8))
        response = await transport.handle_async_request(httpx.Request("GET", f"{upstream.url}/big"))
        await response.aclose()
        await exchange(transport, httpx.Request("GET", f"{upstream.url}/ok"))
    finally:
        await transport.aclose()
    connections = [seen.connection for seen in upstream.received()]
    assert connections[:3] == [connections[0]] * 3
    assert connections[3] == connections[0]
    assert connections[4] != connections[0]


async def test_an_unreachable_upstream_is_a_connect_error() -> None:
    with Upstream() as gone:
        url = gone.url
    transport = AiohttpTransport()
    try:
        with pytest.raises(httpx.ConnectError) as raised:
            await transport.handle_async_request(httpx.Request("GET", f"{url}/x"))
    finally:
        await transport.aclose()
    assert isinstance(raised.value.__cause__, aiohttp.ClientConnectorError)
    assert raised.value.request.url == f"{url}/x"


async def test_a_silent_upstream_is_a_read_timeout(upstream: Upstream) -> None:
    upstream.script("/slow", Reply(fault="hang"))
    transport = AiohttpTransport()
    timeout = {"connect": 5.0, "read": 0.05, "write": 5.0, "pool": 5.0}
    try:
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(
                httpx.Request("GET", f"{upstream.url}/slow", extensions={"timeout": timeout})
            )
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    "reply", [Reply(fault="drop"), Reply(fault="drop_mid_headers")], ids=["drop", "mid-headers"]
)
async def test_a_dropped_response_is_a_protocol_error(upstream: Upstream, reply: Reply) -> None:
    upstream.script("/drop", reply)
    transport = AiohttpTransport()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(httpx.Request("GET", f"{upstream.url}/drop"))
    finally:
        await transport.aclose()


async def test_a_body_cut_short_is_a_protocol_error_where_it_is_read(upstream: Upstream) -> None:
    upstream.script("/cut", Reply(200, b"x" * 10000, fault="drop_mid_body"))
    transport = AiohttpTransport()
    try:
        response = await transport.handle_async_request(httpx.Request("GET", f"{upstream.url}/cut"))
        with pytest.raises(httpx.RemoteProtocolError):
            await _send_body(response)
    finally:
        await transport.aclose()


async def _send_body(response: httpx.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


async def test_the_retry_transport_recovers_through_it(upstream: Upstream) -> None:
    upstream.script("/v1/messages", Reply(503, b"busy"), Reply(200, b"done"))
    policy = RetryPolicy(congestion_backoff=Backoff(base=0.001, cap=0.001))
    async with RetryTransport(AiohttpTransport(), policy=policy) as transport:
        response, body = await exchange(
            transport, httpx.Request("POST", f"{upstream.url}/v1/messages", content=b"{}")
        )
    assert (response.status_code, body) == (200, b"done")
    assert [seen.content for seen in upstream.received("/v1/messages")] == [b"{}", b"{}"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError(), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.ClientError("other"), httpx.ReadError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_each_aiohttp_error_becomes_the_httpx_error_it_stands_for(
    error: BaseException, expected: type[httpx.TransportError]
) -> None:
    request = httpx.Request("GET", "http://up.test/")
    translated = pool._translate(error, request)
    assert type(translated) is expected
    assert translated.request is request
    assert str(translated) == (str(error) or type(error).__name__)


@pytest.fixture
def without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)  # importing it now raises ImportError


@pytest.fixture
def without_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)


@pytest.mark.usefixtures("without_httptools", "without_aiohttp")
async def test_without_httptools_and_aiohttp_the_pool_is_httpx_s_own() -> None:
    transport = make_pool()
    try:
        assert type(transport) is httpx.AsyncHTTPTransport
    finally:
        await transport.aclose()


@pytest.mark.usefixtures("without_httptools")
async def test_without_httptools_the_pool_is_aiohttp_s() -> None:
    transport = make_pool()
    try:
        assert type(transport) is AiohttpTransport
    finally:
        await transport.aclose()


async def test_with_httptools_the_pool_is_the_sidecar_s_own() -> None:
    transport = make_pool()
    try:
        assert type(transport) is WireTransport
    finally:
        await transport.aclose()


async def test_a_header_value_beyond_ascii_passes_as_its_bytes(upstream: Upstream) -> None:
    transport = AiohttpTransport()
    value = "café".encode()
    try:
        request = httpx.Request("GET", f"{upstream.url}/models", headers=[(b"x-name", value)])
        response, _ = await exchange(transport, request)
    finally:
        await transport.aclose()
    assert response.status_code == 200
    (seen,) = upstream.received("/models")
    assert seen.header("x-name") == value.decode("latin-1")  # the upstream reads latin-1


async def test_parsed_urls_kept_are_let_go_past_the_cap(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "_TARGETS_KEPT", 1)
    first, second = httpx.URL(f"{upstream.url}/a"), httpx.URL(f"{upstream.url}/b")
    transport = AiohttpTransport()
    try:
        for url in (first, second, first, first):
            response, _ = await exchange(transport, httpx.Request("GET", url))
            assert response.status_code == 200
    finally:
        await transport.aclose()
    assert [len(upstream.received(path)) for path in ("/a", "/b")] == [3, 1]
