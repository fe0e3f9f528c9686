"""The sidecar's request parsing on llhttp (uvicorn's httptools protocol): the framing rules of
a strict HTTP/1.1 server, a bounded request head, pipelining, and what happens to a request
that breaks after its answer has begun.

Requests are written raw to a socket of the real sidecar and the answers read with h11, as in
``test_proxy_hardening``.
"""

from __future__ import annotations

import contextlib
import logging
import socket

import h11
import pytest

from retry_transport.proxy.serving import MAX_HEAD
from retry_transport.testing.upstream import Reply, Upstream

from ..proxy_helpers import Gate, Sidecar
from .test_proxy_hardening import get, no_tracebacks, proxy_lines, raw, read_answer


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET /v1/models HTTP/1.1\r\n\r\n", "exactly one Host header"),
        (b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "exactly one Host header"),
        (
            b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            "only transfer coding served is chunked",
        ),
        (
            b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Transfer-Encoding",  # llhttp's own words
        ),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", "header value"),
    ],
    ids=["no-host", "two-hosts", "gzip-chunked", "chunked-twice", "control-character"],
)
def test_requests_framed_against_the_rules_are_refused_400_and_closed(
    head: bytes, reason: str, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with Sidecar("--upstream", upstream.url) as sidecar:
        answer = raw(sidecar.port, head, method=b"POST" if head.startswith(b"POST") else b"GET")
    assert answer.status == 400
    assert answer.closed
    assert answer.headers["x-should-retry"] == "false"
    message = answer.error()["message"]
    assert message.startswith("retry_transport proxy: the request is not valid HTTP/1.1")
    assert reason in message
    assert upstream.count() == 0
    refused = [line for line in proxy_lines(caplog) if "refused with 400" in line]
    assert len(refused) == 1, proxy_lines(caplog)
    no_tracebacks(caplog)


def test_an_http_1_0_request_needs_no_host(upstream: Upstream) -> None:
    with Sidecar("--upstream", upstream.url) as sidecar:
        answer = raw(sidecar.port, b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert answer.status == 200
    assert upstream.received()[0].path == "/v1/models"


def test_a_request_head_over_the_limit_is_answered_431(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    big = b"x-big: " + b"a" * (MAX_HEAD // 2) + b"\r\n"
    with Sidecar("--upstream", upstream.url) as sidecar:
        fits = raw(sidecar.port, b"GET /v1/a HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
        with socket.create_connection(("127.0.0.1", sidecar.port)) as sock:
            # Sent in pieces, as a slow client would: the limit holds across reads.
            sock.sendall(b"GET /v1/b HTTP/1.1\r\nHost: x\r\n" + big)
            with contextlib.suppress(OSError):  # closed on us already
                sock.sendall(big + b"\r\n")
            answer = read_answer(sock)
    assert fits.status == 200
    assert answer.status == 431
    assert answer.closed
    assert answer.headers["x-should-retry"] == "false"
    assert answer.error()["type"] == "request_too_large"
    assert [seen.path for seen in upstream.received()] == ["/v1/a"]
    assert any("refused with 431" in line for line in proxy_lines(caplog))


def test_a_request_target_over_the_limit_is_answered_431(upstream: Upstream) -> None:
    target = b"/v1/" + b"a" * MAX_HEAD
    with Sidecar("--upstream", upstream.url) as sidecar:
        answer = raw(sidecar.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 431
    assert answer.closed
    assert upstream.count() == 0


def test_pipelined_requests_are_answered_in_order(upstream: Upstream) -> None:
    upstream.script("/first", Reply(200, b"one", delay=0.2))
    upstream.script("/second", Reply(200, b"two"))
    with (
        Sidecar("--upstream", upstream.url) as sidecar,
        socket.create_connection(("127.0.0.1", sidecar.port)) as sock,
    ):
        sock.sendall(get("/first") + get("/second"))
        first = read_answer(sock)
        second = read_answer(sock)
    assert (first.status, first.body) == (200, b"one")
    assert (second.status, second.body) == (200, b"two")
    assert [seen.path for seen in upstream.received()] == ["/first", "/second"]


def test_an_upgrade_offer_is_served_without_switching_then_closed(upstream: Upstream) -> None:
    with Sidecar("--upstream", upstream.url) as sidecar:
        answer = raw(
            sidecar.port,
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
            + get("/never"),
        )
    assert answer.status == 200
    assert answer.closed
    (seen,) = upstream.received()
    assert seen.path == "/v1/models"
    assert seen.header("upgrade") is None  # hop-by-hop: not passed on


def test_garbage_after_an_answer_began_closes_the_connection_without_a_second_head(
    upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate([b"first part;"], [b"never sent"], timeout=20.0)
    upstream.script("/stream", Reply(200, headers=(("content-type", "text/plain"),), chunks=gate))
    try:
        with (
            Sidecar("--upstream", upstream.url) as sidecar,
            socket.create_connection(("127.0.0.1", sidecar.port)) as sock,
        ):
            sock.sendall(get("/stream"))
            client = h11.Connection(h11.CLIENT)
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            sock.settimeout(10.0)
            events: list[object] = []
            while not any(isinstance(event, h11.Data) for event in events):
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(sock.recv(65536))
                else:
                    events.append(event)
            sock.sendall(b"NOT HTTP\r\n\r\n")
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
    finally:
        gate.open()
    assert isinstance(events[0], h11.Response)
    assert events[0].status_code == 200
    assert b"HTTP/1.1" not in rest  # no 400 written into the middle of the answer
    assert any("refused with 400" in line for line in proxy_lines(caplog))
    no_tracebacks(caplog)
