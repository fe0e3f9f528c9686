"""The sidecar's own upstream pool (`retry_transport.proxy.wire`) against real loopback servers:
the scripted upstream, and raw servers (`tests.wire_server`) for odd framings, resets and
silence.

The pool runs on asyncio alone (the sidecar serves on asyncio or uvloop), so these tests run on
asyncio's event loop and on uvloop's. No test sleeps to check timing: timeouts are short values
that must pass, and the idle connections' clock is injected.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Callable
from typing import cast

import httpx
import pytest
import trustme

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.proxy import wire
from retry_transport.proxy.wire import KEEPALIVE, WireTransport
from retry_transport.testing.upstream import Reply, Upstream
from tests.wire_server import Step, WireServer, exchange

pytestmark = pytest.mark.anyio

SHORT = 0.05
"""Seconds of a timeout that must pass (nothing is timed against it)."""


@pytest.fixture(params=[False, True], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """asyncio's own event loop, and uvloop's (the sidecar's where it is installed)."""
    return "asyncio", {"use_uvloop": request.param}


class Clock:
    """Seconds that pass only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _settle(done: Callable[[], object]) -> None:
    """Until ``done()`` is true, checked at each turn of the event loop (30 s at most)."""
    async with asyncio.timeout(30):
        while not done():  # noqa: ASYNC110 (the pool's state has no event to wait on)
            await asyncio.sleep(0)


def _timeout(**given: float) -> dict[str, dict[str, float]]:
    timeout = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    timeout.update(given)
    return {"timeout": timeout}


@pytest.fixture
async def pool() -> AsyncIterator[WireTransport]:
    transport = WireTransport()
    try:
        yield transport
    finally:
        await transport.aclose()


# -- what passes through --------------------------------------------------------------------


async def test_bytes_pass_through_untouched_both_ways(
    upstream: Upstream, pool: WireTransport
) -> None:
    packed = gzip.compress(b'{"ok": true}')
    upstream.script(
        "/v1/x",
        Reply(200, packed, (("content-encoding", "gzip"), ("x-a", "1"), ("X-A", "2"))),
    )
    request = httpx.Request(
        "POST",
        f"{upstream.url}/v1/x?key=a%2Fb",
        headers=[("x-api-key", "sk-1"), ("x-twice", "a"), ("x-twice", "b")],
        content=b'{"q": 1}',
    )
    response, body = await exchange(pool, request)
    assert response.status_code == 200
    assert body == packed  # not decompressed
    assert response.headers.get_list("x-a") == ["1", "2"]
    assert [(k, v) for k, v in response.headers.raw if k.lower() == b"x-a"] == [
        (b"x-a", b"1"),
        (b"X-A", b"2"),
    ]  # case as sent
    assert response.extensions["http_version"] == b"HTTP/1.1"
    assert response.extensions["reason_phrase"] == b"OK"
    (seen,) = upstream.received("/v1/x")
    assert seen.path == "/v1/x?key=a%2Fb"  # not re-quoted
    assert seen.content == b'{"q": 1}'
    sent = [name for name, _ in seen.headers]
    assert sorted(sent) == sorted(["host", "content-length", "x-api-key", "x-twice", "x-twice"])


class _Recording(asyncio.Transport):
    """A connection's transport, each write noted (what the pool calls, passed on)."""

    def __init__(self, real: asyncio.Transport, writes: list[bytes]) -> None:
        super().__init__()
        self._real = real
        self._writes = writes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writes.append(bytes(data))
        self._real.write(data)

    def close(self) -> None:
        self._real.close()

    def abort(self) -> None:
        self._real.abort()

    def is_closing(self) -> bool:
        return self._real.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._real.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._real.pause_reading()

    def resume_reading(self) -> None:
        self._real.resume_reading()


async def test_the_head_and_a_body_known_in_full_leave_in_one_write(
    pool: WireTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    original = wire._Connection.connection_made

    def recording(self: wire._Connection, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        original(self, _Recording(cast("asyncio.Transport", transport), writes))

    monkeypatch.setattr(wire._Connection, "connection_made", recording)
    async with WireServer() as server:
        request = httpx.Request(
            "POST", f"{server.url}/v1/x", headers={"X-Case": "Kept"}, content=b"{}"
        )
        response, body = await exchange(pool, request)
    assert (response.status_code, body) == (200, b"ok")
    assert writes == [
        b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Case: Kept\r\nContent-Length: 2\r\n\r\n{}"
        % server.port
    ]


async def test_a_header_value_beyond_ascii_passes_as_its_bytes(pool: WireTransport) -> None:
    async with WireServer() as server:
        value = "café".encode()
        request = httpx.Request("GET", f"{server.url}/m", headers=[(b"x-name", value)])
        await exchange(pool, request)
    assert server.seen[0].header(b"x-name") == value


async def test_a_get_without_a_body_sends_no_length(pool: WireTransport) -> None:
    async with WireServer() as server:
        response, body = await exchange(pool, httpx.Request("GET", f"{server.url}/models"))
    assert (response.status_code, body) == (200, b"ok")
    (seen,) = server.seen
    assert seen.header(b"content-length") is None
    assert seen.header(b"transfer-encoding") is None


async def _parts(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_body_of_unknown_length_is_sent_chunked(pool: WireTransport) -> None:
    async with WireServer() as server:
        request = httpx.Request(
            "POST", f"{server.url}/upload", content=_parts(b"one ", b"", b"two ", b"three")
        )
        response, _ = await exchange(pool, request)
    assert response.status_code == 200
    (seen,) = server.seen
    assert seen.header(b"transfer-encoding") == b"chunked"
    assert seen.body == b"one two three"


async def test_a_streamed_body_of_given_length_is_sent_as_it_is(pool: WireTransport) -> None:
    async with WireServer() as server:
        request = httpx.Request(
            "PUT",
            f"{server.url}/upload",
            headers={"Content-Length": "7"},
            content=_parts(b"one ", b"two"),
        )
        response, _ = await exchange(pool, request)
    assert response.status_code == 200
    (seen,) = server.seen
    assert seen.header(b"transfer-encoding") is None
    assert seen.body == b"one two"


# -- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            b"hello",
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", b""),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"hello",
        ),
    ],
    ids=["length", "chunked", "204", "304", "interim"],
)
async def test_each_framing_ends_its_response_and_keeps_the_connection(
    pool: WireTransport, reply: bytes, body: bytes
) -> None:
    async with WireServer([Step(reply)]) as server:
        response, got = await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert got == body
    assert [(name, value) for name, value in response.headers.raw if name == b"Link"] == []
    assert [seen.connection for seen in server.seen] == [0, 0]


async def test_a_head_response_has_no_body_whatever_its_length(pool: WireTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    async with WireServer([Step(reply)]) as server:
        response, body = await exchange(pool, httpx.Request("HEAD", f"{server.url}/x"))
        again, _ = await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert (response.status_code, body, response.headers["content-length"]) == (200, b"", "5")
    assert again.status_code == 200
    assert [seen.connection for seen in server.seen] == [0, 0]


async def test_bytes_after_a_head_response_spend_its_connection(pool: WireTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"  # a body it must not send
    async with WireServer([Step(reply)]) as server:
        _, body = await exchange(pool, httpx.Request("HEAD", f"{server.url}/x"))
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert body == b""
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_a_body_read_to_the_end_of_the_connection(pool: WireTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    async with WireServer([Step(reply, then="close")]) as server:
        response, body = await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert (response.status_code, body) == (200, b"all of it")
    assert [seen.connection for seen in server.seen] == [0, 1]


@pytest.mark.parametrize(
    ("reply", "version"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"HTTP/1.1"),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"HTTP/1.0"),
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_a_connection_the_upstream_will_not_keep_is_closed(
    pool: WireTransport, reply: bytes, version: bytes
) -> None:
    async with WireServer([Step(reply)]) as server:
        response, _ = await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        await server.until(lambda: server.ended == [0])
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert response.extensions["http_version"] == version
    assert [seen.connection for seen in server.seen] == [0, 1]


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "Server disconnected without sending a response."),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "Server disconnected without sending a response."),
        (b"SMTP ready\r\n\r\n", "invalid HTTP response"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "invalid",
        ),
    ],
    ids=["nothing", "mid-head", "not-http", "upgrade"],
)
async def test_no_usable_response_is_a_protocol_error(
    pool: WireTransport, reply: bytes, message: str
) -> None:
    async with WireServer([Step(reply, then="close")]) as server:
        request = httpx.Request("GET", f"{server.url}/x")
        with pytest.raises(httpx.RemoteProtocolError, match=message) as raised:
            await pool.handle_async_request(request)
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert raised.value.request is request
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_a_head_without_end_is_a_protocol_error(pool: WireTransport) -> None:
    endless = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (wire.MAX_HEAD + 1)
    async with WireServer([Step(endless, then="hang")]) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="head larger than"):
            await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))


async def test_a_status_line_in_pieces_keeps_its_whole_reason() -> None:
    connection = wire._Connection((b"http", "127.0.0.1", 80), set())
    connection.begin(httpx.Request("GET", "http://127.0.0.1/"), head=False)
    for piece in (b"HTTP/1.1 200 Ve", b"ry OK\r\nContent-", b"Length: 0\r\n\r\n"):
        connection.data_received(piece)
    assert (connection.status, connection.reason) == (200, b"Very OK")
    assert connection.headers == [(b"Content-Length", b"content-length", b"0")]
    assert connection.complete


async def test_a_body_cut_short_is_a_protocol_error_where_it_is_read(pool: WireTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    async with WireServer([Step(reply, then="close")]) as server:
        response = await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await _read(response)


async def _read(response: httpx.Response) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


async def test_a_reset_connection_is_a_read_error(pool: WireTransport) -> None:
    async with WireServer([Step(b"", then="reset")]) as server:
        with pytest.raises(httpx.ReadError) as raised:
            await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
    assert isinstance(raised.value.__cause__, ConnectionResetError)


async def test_a_reused_connection_found_dead_is_a_protocol_error_the_retry_recovers(
    pool: WireTransport,
) -> None:
    # The upstream drops the kept connection as the next request reaches it.
    async with WireServer([Step(), Step(b"", then="close")]) as server:
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await pool.handle_async_request(httpx.Request("POST", f"{server.url}/x", content=b"{}"))
        policy = RetryPolicy(transient_backoff=Backoff(base=0.001, cap=0.001))
        async with RetryTransport(WireTransport(), policy=policy) as retrying:
            await exchange(retrying, httpx.Request("GET", f"{server.url}/x"))
            server.steps.append(Step(b"", then="close"))
            response, body = await exchange(
                retrying, httpx.Request("POST", f"{server.url}/x", content=b"{}")
            )
    assert (response.status_code, body) == (200, b"ok")
    assert [seen.connection for seen in server.seen] == [0, 0, 1, 1, 2]


async def test_an_unreachable_upstream_is_a_connect_error(pool: WireTransport) -> None:
    async with WireServer() as gone:
        url = gone.url
    with pytest.raises(httpx.ConnectError) as raised:
        await pool.handle_async_request(httpx.Request("GET", f"{url}/x"))
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert raised.value.request.url == f"{url}/x"


async def test_a_silent_upstream_is_a_read_timeout_and_its_connection_closed(
    pool: WireTransport,
) -> None:
    async with WireServer([Step(b"", then="hang")]) as server:
        request = httpx.Request("GET", f"{server.url}/x", extensions=_timeout(read=SHORT))
        with pytest.raises(httpx.ReadTimeout) as raised:
            await pool.handle_async_request(request)
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert raised.value.request is request
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_a_body_that_stops_coming_is_a_read_timeout(pool: WireTransport) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    async with WireServer([Step(reply, then="hang")]) as server:
        request = httpx.Request("GET", f"{server.url}/x", extensions=_timeout(read=SHORT))
        response = await pool.handle_async_request(request)
        with pytest.raises(httpx.ReadTimeout, match="body"):
            await _read(response)


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout(pool: WireTransport) -> None:
    async with WireServer([Step(b"", then="hang")]) as server:  # plain TCP, silent
        url = f"https://127.0.0.1:{server.port}/x"
        request = httpx.Request("GET", url, extensions=_timeout(connect=SHORT))
        with pytest.raises(httpx.ConnectTimeout):
            await pool.handle_async_request(request)


BIG = b"x" * (64 * 1024 * 1024)
"""More than loopback's socket buffers hold."""


async def test_an_upstream_that_reads_nothing_is_a_write_timeout(pool: WireTransport) -> None:
    async with WireServer([Step(b"", then="hang", read_body=False)]) as server:
        request = httpx.Request(
            "POST", f"{server.url}/x", content=BIG, extensions=_timeout(write=SHORT)
        )
        with pytest.raises(httpx.WriteTimeout):
            await pool.handle_async_request(request)


async def test_a_large_body_is_sent_as_the_upstream_reads_it(pool: WireTransport) -> None:
    async with WireServer() as server:
        request = httpx.Request("POST", f"{server.url}/x", content=BIG)
        response, body = await exchange(pool, request)
    assert (response.status_code, body) == (200, b"ok")
    assert len(server.seen[0].body) == len(BIG)


async def test_an_upstream_gone_while_a_body_is_sent_is_a_write_error(
    pool: WireTransport,
) -> None:
    async with WireServer([Step(b"", then="reset", read_body=False)]) as server:
        request = httpx.Request("POST", f"{server.url}/x", content=BIG)
        with pytest.raises(httpx.WriteError):
            await pool.handle_async_request(request)


async def test_an_answer_before_the_whole_body_spends_the_connection(
    pool: WireTransport,
) -> None:
    early = b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig"
    async with WireServer([Step(early, then="hang", read_body=False)]) as server:
        request = httpx.Request("POST", f"{server.url}/x", content=BIG)
        response, body = await exchange(pool, request)
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert (response.status_code, body) == (413, b"big")
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_an_answer_before_a_streamed_body_ends_stops_it(pool: WireTransport) -> None:
    early = b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nbig"
    sent: list[bytes] = []

    async def parts() -> AsyncIterator[bytes]:
        sent.append(b"first")
        yield b"first"
        await server.until(lambda: server.seen)
        await _settle(lambda: any(connection.headers_done for connection in pool._open))
        sent.append(b"second")
        yield b"second"
        sent.append(b"third")  # never asked for
        yield b"third"

    async with WireServer([Step(early, read_body=False)]) as server:
        request = httpx.Request("POST", f"{server.url}/x", content=parts())
        response, body = await exchange(pool, request)
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert (response.status_code, body) == (413, b"big")
    assert sent == [b"first", b"second"]
    assert [seen.connection for seen in server.seen] == [0, 1]


# -- keep-alive --------------------------------------------------------------------------------


async def test_connections_are_reused_once_a_body_was_read(pool: WireTransport) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
    async with WireServer([Step(), Step(), Step(), Step(big)]) as server:
        for _ in range(3):
            await exchange(pool, httpx.Request("GET", f"{server.url}/ok"))
        response = await pool.handle_async_request(httpx.Request("GET", f"{server.url}/big"))
        await response.aclose()  # left unread: the connection is closed, not handed back
        await exchange(pool, httpx.Request("GET", f"{server.url}/ok"))
    assert [seen.connection for seen in server.seen] == [0, 0, 0, 0, 1]


async def test_a_response_that_arrived_whole_hands_its_connection_back_unread(
    pool: WireTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "HIGH_WATER", 10)  # reading is paused for the body, then resumed
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    async with WireServer([Step(reply)]) as server:
        response = await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
        (connection,) = pool._open
        await _settle(lambda: connection.complete)
        await response.aclose()
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert [seen.connection for seen in server.seen] == [0, 0]


async def test_an_idle_connection_past_keepalive_is_dropped(pool: WireTransport) -> None:
    clock = Clock()
    transport = WireTransport(clock=clock)
    try:
        async with WireServer() as server:
            # Two at once: connections 0 and 1, both kept.
            await asyncio.gather(
                *(exchange(transport, httpx.Request("GET", f"{server.url}/x")) for _ in range(2))
            )
            clock.now += KEEPALIVE / 2
            await exchange(transport, httpx.Request("GET", f"{server.url}/x"))  # the newest
            clock.now += KEEPALIVE + 1
            await exchange(transport, httpx.Request("GET", f"{server.url}/x"))  # both too old
            await server.until(lambda: sorted(server.ended) == [0, 1])
    finally:
        await transport.aclose()
    assert sorted(seen.connection for seen in server.seen[:2]) == [0, 1]
    assert [seen.connection for seen in server.seen[2:]] == [server.seen[1].connection, 2]


async def test_an_older_idle_connection_is_dropped_when_a_newer_one_comes_back() -> None:
    clock = Clock()
    transport = WireTransport(clock=clock)
    hold = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld"
    try:
        async with WireServer([Step(), Step(hold)]) as server:
            first = await transport.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
            second = await transport.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
            await _read(first)  # kept at 100
            clock.now += KEEPALIVE + 1
            await _read(second)  # kept at 106: the one kept at 100 is dropped
            await server.until(lambda: server.ended == [0])
            await exchange(transport, httpx.Request("GET", f"{server.url}/x"))
    finally:
        await transport.aclose()
    assert [seen.connection for seen in server.seen] == [0, 1, 1]


async def test_idle_connections_are_swept_when_no_request_comes() -> None:
    clock = Clock()
    transport = WireTransport(clock=clock)
    try:
        async with WireServer(
            [Step(), Step(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")]
        ) as server:
            first = await transport.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
            second = await transport.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
            await _read(first)  # idle from 100
            assert transport._sweeper is not None  # one timer, for the pool
            clock.now += KEEPALIVE - 1
            await _read(second)  # idle from 104
            clock.now += 2
            transport._sweep()  # as its timer would, at 106: the one idle from 100 goes
            await server.until(lambda: server.ended == [0])
            assert transport._sweeper is not None  # again, for the one idle from 104
            clock.now += KEEPALIVE
            transport._sweep()
            await server.until(lambda: server.ended == [0, 1])
            assert transport._sweeper is None  # nothing left to sweep
    finally:
        await transport.aclose()


async def test_closing_the_pool_stops_its_sweeper(pool: WireTransport) -> None:
    async with WireServer() as server:
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        sweeper = pool._sweeper
        assert sweeper is not None
        await pool.aclose()
    assert sweeper.cancelled()
    assert pool._sweeper is None


async def test_an_idle_connection_the_upstream_closed_is_not_reused(pool: WireTransport) -> None:
    async with WireServer([Step(then="close")]) as server:
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        await _settle(lambda: not pool._open)
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_bytes_on_an_idle_connection_close_it(pool: WireTransport) -> None:
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with WireServer() as server:
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        (connection,) = pool._open
        connection.data_received(extra)  # as if it came unasked
        await server.until(lambda: server.ended == [0])
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_aclose_closes_every_connection() -> None:
    transport = WireTransport()
    async with WireServer() as server:
        await asyncio.gather(
            *(exchange(transport, httpx.Request("GET", f"{server.url}/x")) for _ in range(3))
        )
        await transport.aclose()
        await server.until(lambda: len(server.ended) == 3)
    assert transport._open == set()


async def test_a_request_without_a_timeout_extension_waits_as_long_as_it_takes(
    pool: WireTransport,
) -> None:
    async with WireServer() as server:
        request = httpx.Request("GET", f"{server.url}/x")
        request.extensions.pop("timeout", None)
        response, body = await exchange(pool, request)
    assert (response.status_code, body) == (200, b"ok")


# -- backpressure, early close, cancel ---------------------------------------------------------


async def test_reading_pauses_while_the_consumer_lags(
    pool: WireTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "HIGH_WATER", 1024)
    size = 8 * 1024 * 1024
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size
    async with WireServer([Step(reply)]) as server:
        response = await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
        (connection,) = pool._open
        await _settle(lambda: connection.paused_reading)
        for _ in range(100):  # the server keeps writing; none of it is read
            await asyncio.sleep(0)
        assert connection.paused_reading
        assert connection.buffered < size // 4
        body = await _read(response)
    assert body == b"y" * size
    assert not connection.paused_reading


async def test_a_body_closed_early_closes_its_connection(pool: WireTransport) -> None:
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    async with WireServer([Step(stream, then="hang")]) as server:
        response = await pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
        got = []
        async for chunk in response.aiter_raw():
            got.append(chunk)
            break
        await response.aclose()  # the rest never read
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
    assert got == [b"first"]
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_a_cancelled_request_closes_its_connection(pool: WireTransport) -> None:
    async with WireServer([Step(b"", then="hang")]) as server:
        task = asyncio.ensure_future(
            pool.handle_async_request(httpx.Request("GET", f"{server.url}/x"))
        )
        await server.until(lambda: server.seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await exchange(pool, httpx.Request("GET", f"{server.url}/x"))
        assert len(pool._open) == 1  # the new one, kept
    assert [seen.connection for seen in server.seen] == [0, 1]


async def test_the_retry_transport_recovers_through_it(upstream: Upstream) -> None:
    upstream.script("/v1/messages", Reply(503, b"busy"), Reply(200, b"done"))
    policy = RetryPolicy(congestion_backoff=Backoff(base=0.001, cap=0.001))
    async with RetryTransport(WireTransport(), policy=policy) as transport:
        response, body = await exchange(
            transport, httpx.Request("POST", f"{upstream.url}/v1/messages", content=b"{}")
        )
    assert (response.status_code, body) == (200, b"done")
    assert [seen.content for seen in upstream.received("/v1/messages")] == [b"{}", b"{}"]


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    return context


async def test_tls_checks_the_certificate_and_sends_the_host_name(
    authority: trustme.CA, tls_server_context: ssl.SSLContext
) -> None:
    trusting = httpx.create_ssl_context()
    authority.configure_trust(trusting)
    transport = WireTransport(ssl_context=trusting)
    try:
        async with WireServer(ssl_context=tls_server_context) as server:
            url = f"https://localhost:{server.port}/x"
            for _ in range(2):
                response, body = await exchange(transport, httpx.Request("GET", url))
    finally:
        await transport.aclose()
    assert (response.status_code, body) == (200, b"ok")
    assert server.sni == ["localhost"]  # one handshake: the connection was reused
    assert [seen.connection for seen in server.seen] == [0, 0]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["untrusted", "wrong-name"])
async def test_a_certificate_refused_is_a_connect_error(
    authority: trustme.CA, tls_server_context: ssl.SSLContext, host: str
) -> None:
    trusting = httpx.create_ssl_context()
    authority.configure_trust(trusting)
    # certifi's roots do not hold the test's authority; trusted, it names localhost only.
    transport = WireTransport() if host == "localhost" else WireTransport(ssl_context=trusting)
    try:
        async with WireServer(ssl_context=tls_server_context) as server:
            with pytest.raises(httpx.ConnectError) as raised:
                await transport.handle_async_request(
                    httpx.Request("GET", f"https://{host}:{server.port}/x")
                )
    finally:
        await transport.aclose()
    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)


# -- the connection's own edges -----------------------------------------------------------------


async def test_a_timer_after_a_wake_changes_nothing() -> None:
    waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    waiter.set_result(True)
    wire._expire(waiter)
    assert waiter.result() is True


async def test_a_second_wake_before_the_waiter_runs_changes_nothing() -> None:
    connection = wire._Connection((b"http", "127.0.0.1", 80), set())
    waiting = asyncio.ensure_future(connection.wait(None))
    await asyncio.sleep(0)
    connection.resume_writing()
    connection.resume_writing()
    assert await waiting is True
    connection.close()  # never connected: nothing to close
    assert connection.spent
