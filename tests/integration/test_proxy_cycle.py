"""The sidecar's request-response cycle (`serving._Cycle`): its own ``send`` frames and checks
a response as uvicorn's does.

Each test serves an ASGI app of its own with the sidecar's server protocol (as
`serving.server_config` configures it) on 127.0.0.1, writes requests raw to a socket and reads
the answers back with h11 (`read_answer`), or as bytes where the framing itself is the point.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import uvicorn

from retry_transport.proxy.app import build_app
from retry_transport.proxy.screening import Screen
from retry_transport.proxy.serving import _protocol, fast_loop
from retry_transport.testing.upstream import Reply, Upstream

from ..proxy_helpers import ThreadedServer, loopback_socket, settings_for
from .test_proxy_hardening import raw, read_answer

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class Served(ThreadedServer):
    """``app`` behind the sidecar's server protocol, in a thread, on a free loopback port."""

    def __init__(self, app: App, **config: Any) -> None:
        settings = settings_for("--upstream", "http://127.0.0.1:9")
        options: dict[str, Any] = {
            "http": _protocol(settings),
            "loop": fast_loop(),
            "lifespan": "off",
            "log_config": None,
            "access_log": False,
            "server_header": False,
            "date_header": False,
            "ws": "none",
            "proxy_headers": False,
            **config,
        }
        super().__init__(uvicorn.Config(app, **options), loopback_socket(), "server")


def answering(*messages: Message, read: bool = True) -> App:
    """An app that reads the request's body (unless ``read`` is false), then sends
    ``messages``."""

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if read:
            while (await receive()).get("more_body", False):
                pass
        for message in messages:
            await send(message)

    return app


def start(status: int = 200, *headers: tuple[bytes, bytes]) -> Message:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def body(data: bytes = b"", *, more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        sock.settimeout(10.0)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_a_response_without_a_length_is_sent_chunked() -> None:
    app = answering(start(), body(b"hello ", more=True), body(b"", more=True), body(b"world"))
    with Served(app) as served:
        answer = raw(served.port, GET)
        framed = exchange(served.port, CLOSE)
    assert (answer.status, answer.body) == (200, b"hello world")
    assert answer.headers["transfer-encoding"] == "chunked"
    assert framed.endswith(b"\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")


def test_a_chunked_response_may_end_with_an_empty_message() -> None:
    app = answering(start(200, (b"Transfer-Encoding", b"chunked")), body(b"abc", more=True), body())
    with Served(app) as served:
        framed = exchange(served.port, CLOSE)
    head, _, rest = framed.partition(b"\r\n\r\n")
    assert head.count(b"transfer-encoding: chunked") == 1
    assert rest == b"3\r\nabc\r\n0\r\n\r\n"


def test_a_transfer_coding_other_than_chunked_is_sent_as_given_then_chunked() -> None:
    # As uvicorn's own cycle does: the app's header is passed on, the framing is chunked.
    app = answering(start(200, (b"transfer-encoding", b"identity")), body(b"abc"))
    with Served(app) as served:
        framed = exchange(served.port, CLOSE)
    head, _, rest = framed.partition(b"\r\n\r\n")
    assert b"\r\ntransfer-encoding: identity\r\n" in head
    assert head.endswith(b"\r\ntransfer-encoding: chunked")
    assert rest == b"3\r\nabc\r\n0\r\n\r\n"


def test_the_first_content_length_frames_the_body() -> None:
    app = answering(start(200, (b"Content-Length", b"3"), (b"content-length", b"9")), body(b"abc"))
    with Served(app) as served:
        framed = exchange(served.port, CLOSE)
    assert framed.endswith(b"\r\n\r\nabc")
    assert b"transfer-encoding" not in framed


def test_a_head_request_is_answered_without_its_body() -> None:
    app = answering(start(200, (b"content-length", b"5")), body(b"hello"))
    with Served(app) as served:
        framed = exchange(served.port, b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert framed.startswith(b"HTTP/1.1 200 OK\r\n")
    assert framed.endswith(b"content-length: 5\r\nconnection: close\r\n\r\n")


def test_a_204_gets_no_transfer_coding() -> None:
    with Served(answering(start(204), body())) as served:
        framed = exchange(served.port, CLOSE)
    assert framed == b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"


def test_an_http_1_0_client_is_told_the_connection_closes() -> None:
    app = answering(start(200, (b"content-length", b"2")), body(b"ok"))
    with Served(app) as served:
        framed = exchange(served.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert framed == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"


def test_an_app_that_says_connection_close_has_the_connection_closed() -> None:
    app = answering(
        start(200, (b"content-length", b"2"), (b"Connection", b"keep-alive, Close")), body(b"ok")
    )
    with Served(app) as served:
        framed = exchange(served.port, GET)  # returns only once the server closes
    assert framed.endswith(b"connection: keep-alive, Close\r\n\r\nok")
    assert b"connection: close" not in framed


def test_a_connection_header_without_close_keeps_the_connection() -> None:
    app = answering(
        start(200, (b"content-length", b"2"), (b"connection", b"keep-alive")), body(b"ok")
    )
    with Served(app) as served, socket.create_connection(("127.0.0.1", served.port)) as sock:
        for _ in range(2):
            sock.sendall(GET)
            answer = read_answer(sock)
            assert (answer.status, answer.body, answer.closed) == (200, b"ok", False)


def test_default_headers_and_the_access_log_are_kept(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = logging.getLogger("uvicorn.access")
    # A server configured with access_log=False (every other one here) stops its propagation.
    monkeypatch.setattr(access, "propagate", True)
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    app = answering(start(200, (b"content-length", b"2")), body(b"ok"))
    with Served(app, server_header=True, access_log=True) as served:
        answer = raw(served.port, b"GET /x?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.headers["server"] == "uvicorn"
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert lines, "no access log line"
    port = lines[0].split(" ", 1)[0].rsplit(":", 1)[1]
    assert set(lines) == {f'127.0.0.1:{port} - "GET /x?q=1 HTTP/1.1" 200'}


def test_a_response_sent_before_its_head_is_answered_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Served(answering(body(b"x"))) as served:
        answer = raw(served.port, GET)
    assert (answer.status, answer.body, answer.closed) == (500, b"Internal Server Error", True)
    error = "Expected ASGI message 'http.response.start', but got 'http.response.body'."
    assert any(error == str(r.exc_info[1]) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ([(b"x-ok", b"1"), (b"bad name", b"x")], "Invalid HTTP header name."),
        ([(b"x-bad", b"a\x01b"), (b"x-ok", b"1")], "Invalid HTTP header value."),
        ([(b"x-bad", b"a\r\nx-forged: 1")], "Invalid HTTP header value."),
    ],
    ids=["name", "value", "response-splitting"],
)
def test_a_response_head_with_a_bad_header_is_never_written(
    headers: list[tuple[bytes, bytes]], error: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As with uvicorn's own cycle: the response counts as started, so the connection is cut.
    with Served(answering(start(200, *headers), body())) as served:
        assert exchange(served.port, GET) == b""
    assert any(error == str(r.exc_info[1]) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ((start(200, (b"content-length", b"2")), start()), "but got 'http.response.start'"),
        ((start(200, (b"content-length", b"2")), body(b"ok"), body()), "already completed"),
        ((start(200, (b"content-length", b"2")), body(b"okay")), "longer than Content-Length"),
        ((start(200, (b"content-length", b"2")), body(b"o")), "shorter than Content-Length"),
    ],
    ids=["start-twice", "after-complete", "too-long", "too-short"],
)
def test_a_response_broken_after_its_head_closes_the_connection(
    messages: tuple[Message, ...], error: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Served(answering(*messages)) as served:
        framed = exchange(served.port, GET)
    assert framed.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n")
    assert any(error in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_a_body_arriving_after_the_answer_is_skipped() -> None:
    app = answering(start(200, (b"content-length", b"2")), body(b"ok"), read=False)
    with Served(app) as served, socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        first = read_answer(sock, method=b"POST")
        sock.sendall(b"hello" + GET)  # the rest of the body, then the next request
        second = read_answer(sock)
    assert (first.status, first.body) == (second.status, second.body) == (200, b"ok")


def test_an_expect_header_other_than_100_continue_gets_no_interim_answer() -> None:
    seen: list[bytes] = []

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        seen.append((await receive())["body"])
        await send(start(200, (b"content-length", b"2")))
        await send(body(b"ok"))

    with Served(app) as served:
        framed = exchange(
            served.port,
            b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: something\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nhi",
        )
    assert framed.startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen == [b"hi"]


def test_what_an_app_sends_after_its_client_left_is_dropped() -> None:
    sent = threading.Event()
    outcome: list[str] = []

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        await send(start(200, (b"content-length", b"2")))  # dropped, without an error
        await send(body(b"ok"))
        outcome.append("returned")
        sent.set()

    with Served(app) as served:
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(GET)  # then go away: the app sees http.disconnect, then sends
        assert sent.wait(10.0)
    assert outcome == ["returned"]


def test_a_body_the_app_does_not_read_yet_pauses_reading_past_64_kib() -> None:
    released = threading.Event()
    data = b"x" * (3 * 65536)

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        await asyncio.to_thread(released.wait, 10.0)
        received = b""
        more = True
        while more:
            message = await receive()
            received += message["body"]
            more = message["more_body"]
        answer = str(len(received)).encode()
        await send(start(200, (b"content-length", str(len(answer)).encode())))
        await send(body(answer))

    with Served(app) as served, socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data))
        sock.sendall(data)  # more than the server buffers before it stops reading
        released.set()
        answer = read_answer(sock, method=b"POST")
    assert (answer.status, answer.body) == (200, str(len(data)).encode())


def test_starlettes_router_alone_reaches_the_same_forwarders(upstream: Upstream) -> None:
    # SidecarApp dispatches past the router; the router itself (and its lifespan) still works.
    upstream.script("/v1/x", Reply(200, b"through the router"))
    app = build_app(settings_for("--upstream", upstream.url))
    with Served(app.router, lifespan="on") as served:
        answer = raw(served.port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.body) == (200, b"through the router")
    assert upstream.received()[0].path == "/v1/x"


def test_the_screen_works_as_middleware_on_its_own() -> None:
    phases: list[str] = []

    async def inner(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                phases.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await answering(start(200, (b"content-length", b"2")), body(b"ok"))(scope, receive, send)

    with Served(Screen(inner, via_token=b"me"), lifespan="on") as served:
        passed = raw(served.port, GET)
        looped = raw(served.port, b"GET /x HTTP/1.1\r\nHost: x\r\nVia: 1.1 me\r\n\r\n")
    assert (passed.status, passed.body) == (200, b"ok")
    assert (looped.status, looped.closed) == (508, True)
    assert looped.error()["type"] == "loop_detected"
    assert phases == ["lifespan.startup", "lifespan.shutdown"]
