"""A request-smuggling and fuzz pass over the sidecar's request handling.

Hypothesis writes request lines, header sets and (chunked or plain) bodies, valid and broken,
raw to a socket of the real sidecar, optionally with a second request pipelined behind. The
same bytes are parsed by h11 as a reference server would. Whatever is sent:

- the sidecar answers with well-formed HTTP/1.1 (read back by an h11 client) or closes the
  connection, within its own timeouts; never a 500 and never a traceback;
- every error it answers itself carries ``x-should-retry: false``;
- the upstream only ever receives requests that the reference parse found, in order, each
  with the body the reference found (no request smuggled in a body, no body cut or
  stretched), and always below the upstream's base path.

The example count is bounded, so the pass runs in seconds in the suite.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from retry_transport.testing.upstream import Upstream

from ..proxy_helpers import Sidecar

BASE = "/base"
FOLLOW_UP = b"GET /follow-up HTTP/1.1\r\nHost: sidecar\r\n\r\n"


@dataclass(frozen=True)
class Parsed:
    method: str
    target: str
    body: bytes


def reference(data: bytes) -> tuple[list[Parsed], bool]:
    """The requests h11 finds in ``data`` (in order), and whether it then found an error."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    found: list[Parsed] = []
    method, target, body = "", "", b""
    while True:
        try:
            event = server.next_event()
        except h11.RemoteProtocolError:
            return found, True
        if event is h11.NEED_DATA:
            return found, False
        if isinstance(event, h11.Request):
            method, target, body = event.method.decode(), event.target.decode(), b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            found.append(Parsed(method, target, body))
            if server.our_state is not h11.SEND_RESPONSE:
                return found, False
            server.send(h11.Response(status_code=404, headers=[("content-length", "0")]))
            server.send(h11.EndOfMessage())
            if server.their_state is not h11.DONE:
                return found, False
            server.start_next_cycle()
        elif event is h11.PAUSED:
            return found, False


@dataclass
class Answered:
    statuses: list[int]
    headers: list[dict[str, str]]


def answers(port: int, data: bytes, methods: list[bytes]) -> Answered:
    """Send ``data`` and read answers (one per request in ``methods``) until the sidecar
    closes the connection or has answered them all."""
    result = Answered([], [])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5.0)
        with contextlib.suppress(OSError):  # closed on us mid-send: an answer may be readable
            sock.sendall(data)
        client = h11.Connection(h11.CLIENT)
        for method in methods or [b"GET"]:
            if client.our_state is not h11.IDLE:
                break
            client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    try:
                        chunk = sock.recv(65536)
                    except ConnectionResetError:
                        chunk = b""
                    if not chunk:
                        return result
                    client.receive_data(chunk)
                elif isinstance(event, h11.Response):
                    result.statuses.append(event.status_code)
                    result.headers.append({k.decode(): v.decode() for k, v in event.headers})
                elif isinstance(event, h11.EndOfMessage):
                    break
            if client.their_state is not h11.DONE:
                break
            client.start_next_cycle()
    return result


# -- what is sent -----------------------------------------------------------------------------

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "CONNECT", "TRACE", "QUERY"]
SEGMENTS = [
    "v1",
    "messages",
    ".",
    "..",
    "%2e%2e",
    "%2E.",
    "..%2f",
    "a%2Fb",
    "%252e%252e",
    "..\\..",
    "%00",
    "%0d%0a",
    "%e2%80%a8",
    "",
    "a;b",
    "~user",
    "%",
    "%zz",
]
TARGETS = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.sampled_from(
        [
            "*",
            "v1/models",
            "http://elsewhere.example/v1/models",
            "HTTP://elsewhere.example",
            "http://elsewhere.example:80",
            "https://user@elsewhere.example/../x",
            "api.example:443",
            "//elsewhere.example/x",
            "/v1/models?x=1&y=%0d%0a",
            "/v1/models#frag",
        ]
    ),
)
HEADER_LINES = [
    "Content-Length: 5",
    "Content-Length: 0",
    "Content-Length: 500",
    "Content-Length: -1",
    "Content-Length: +5",
    "Content-Length: 5, 5",
    "Content-Length: 5, 6",
    "Content-Length: 0x5",
    "Content-Length: 99999999999999999999",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: xchunked",
    "Transfer-Encoding: identity",
    "Transfer-Encoding : chunked",
    "Transfer-Encoding:\tchunked",
    " Transfer-Encoding: chunked",
    "transfer-encoding: CHUNKED",
    "Host: elsewhere.example",
    "Expect: 100-continue",
    "Connection: close",
    "Connection: keep-alive, Transfer-Encoding",
    "Via: 1.1 retry-transport-0",
    "X-Forwarded-Host: evil.example",
    "Upgrade: h2c",
    "X-Bad\x00: value",
    "X-Empty:",
    "NoColon",
    "X-Long: " + "a" * 20_000,
]


@st.composite
def chunked(draw: st.DrawFn) -> bytes:
    """A chunked body, well-formed or broken in one of the ways smuggling relies on."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4))
    out = b""
    for chunk in chunks:
        size = len(chunk) + draw(st.sampled_from([0, 0, 0, 1, -1]))
        spelled = draw(st.sampled_from(["%x", "%X", "%04x", "%x;ext=1", "%x "]))
        eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
        out += (spelled % max(size, 0)).encode() + eol + chunk + eol
    out += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b""]))
    smuggled = draw(st.sampled_from([b"", b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"]))
    return out + smuggled


BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    chunked(),
    st.just(b"hello"),
    st.just(b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    method = draw(st.sampled_from(METHODS))
    target = draw(TARGETS)
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2"]))
    lines = ["Host: sidecar"] if draw(st.integers(0, 4)) else []
    framing = draw(st.sampled_from(["none", "length", "length", "chunked", "chunked", "odd"]))
    if framing == "chunked":
        body = draw(chunked())
        lines.append(draw(st.sampled_from(["Transfer-Encoding: chunked", *HEADER_LINES[9:18]])))
    elif framing == "length":
        body = draw(st.binary(max_size=64))
        length = len(body) + draw(st.sampled_from([0, 0, 0, 1, -1, 100]))
        lines.append(f"Content-Length: {max(length, 0)}")
        if draw(st.booleans()):
            body += draw(st.sampled_from([b"", b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"]))
    elif framing == "odd":
        body = draw(BODIES)
    else:
        body = b""
    lines += draw(st.lists(st.sampled_from(HEADER_LINES), max_size=2, unique=True))
    head = f"{method} {target} {version}\r\n" + "".join(f"{line}\r\n" for line in lines)
    follow_up = draw(st.booleans())
    return head.encode("latin-1") + b"\r\n" + body + (FOLLOW_UP if follow_up else b""), follow_up


# -- the pass ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Upstream, Sidecar]]:
    with (
        Upstream() as upstream,
        Sidecar(
            "--upstream",
            f"{upstream.url}{BASE}",
            "--header-timeout",
            "0.3",
            "--body-timeout",
            "0.3",
            "--max-attempts",
            "1",
        ) as sidecar,
    ):
        yield upstream, sidecar


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=raw_requests())
def test_no_request_form_crashes_desyncs_or_escapes(
    sent: tuple[bytes, bool],
    served: tuple[Upstream, Sidecar],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream, sidecar = served
    data, _ = sent
    caplog.clear()
    expected, _ = reference(data)
    before = len(upstream.received())
    methods = [b"HEAD" if p.method == "HEAD" else b"GET" for p in expected] or [b"GET"]
    answered = answers(sidecar.port, data, methods)

    for status, headers in zip(answered.statuses, answered.headers, strict=True):
        assert status != 500, (data, answered)
        if status >= 400 and headers.get("content-type") == "application/json":
            assert headers.get("x-should-retry") == "false", (data, headers)
    got = upstream.received()[before:]
    # What reached the upstream is, in order, among what the reference parse found.
    remaining = list(expected)
    for record in got:
        assert record.path == BASE or record.path.startswith(BASE + "/"), (data, record.path)
        assert "smuggled" not in record.path or any("smuggled" in p.target for p in remaining), (
            data,
            record.path,
        )
        while remaining and not (
            # httpx sends methods upper-cased (RFC 9110 says they are case-sensitive).
            remaining[0].method.upper() == record.method and remaining[0].body == record.content
        ):
            remaining.pop(0)
        assert remaining, (data, record, expected)
        remaining.pop(0)
    event(f"statuses {sorted(set(answered.statuses))}")
    event(f"forwarded {len(got)} of {len(expected)}")
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, (data, [r.getMessage() for r in bad])


def test_the_reference_parse_sees_what_h11_sees() -> None:
    found, error = reference(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + FOLLOW_UP
    )
    assert found == [Parsed("POST", "/a", b"hi"), Parsed("GET", "/follow-up", b"")]
    assert not error
    assert reference(b"GET /a HTTP/1.1\r\nContent-Length: x\r\n\r\n") == ([], True)
    assert reference(b"GET /a HTTP/1.1\r\nHost: x\r\n") == ([], False)
