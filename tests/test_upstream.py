"""The scriptable loopback upstream, proved with plain httpx clients and the real SDKs."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import tracemalloc
import types
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import anthropic
import anyio
import httpx
import openai
import pytest

import retry_transport.testing
from retry_transport.testing import upstream as public
from retry_transport.testing.upstream import (
    Received,
    Reply,
    Upstream,
    anthropic_error,
    anthropic_message,
    anthropic_stream_error,
    openai_chat,
    openai_chat_stream_error,
    openai_error,
    openai_responses,
    openai_responses_failed,
    providers,
    ratelimit,
    server,
    streams,
    wire,
)

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


def _raw_exchange(up: Upstream, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _openai(up: Upstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.url + "/v1", api_key="test", max_retries=0)


def _anthropic(up: Upstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=up.url, api_key="test", max_retries=0)


# -- module surface and value objects ---------------------------------------------------------


@pytest.mark.parametrize(
    "module", [public, providers, ratelimit, server, streams, wire], ids=lambda m: m.__name__
)
def test_all_is_sorted_and_names_exist(module: types.ModuleType) -> None:
    names: list[str] = module.__all__
    # Sorted as ruff sorts __all__: CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert all(hasattr(module, name) for name in names)


def test_the_package_reexports_every_modules_public_names() -> None:
    assert set(public.__all__) == {
        "Received",
        *providers.__all__,
        *ratelimit.__all__,
        *server.__all__,
        *streams.__all__,
        *wire.__all__,
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": 99}, "status"),
        ({"status": 1000}, "status"),
        ({"delay": -1.0}, "delay"),
        ({"chunk_delay": float("nan")}, "chunk_delay"),
        ({"fault": "explode"}, "fault"),
        ({"body": b"x", "chunks": [b"y"]}, "chunks"),
        ({"headers": (("bad name", "v"),)}, "headers"),
        ({"headers": (("x", "a\r\nb"),)}, "headers"),
    ],
)
def test_invalid_reply_raises_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Reply(**kwargs)  # type: ignore[arg-type]


def test_reply_body_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="body"):
        Reply(body="text")  # type: ignore[arg-type]


def test_reply_turns_a_chunk_list_into_a_tuple() -> None:
    assert Reply(chunks=[b"a", b"b"]).chunks == (b"a", b"b")


def test_reply_json_and_sse_constructors() -> None:
    reply = Reply.json(201, {"a": 1}, headers=[("x-a", "1")])
    assert (reply.status, reply.body) == (201, b'{"a":1}')
    assert reply.headers == (("content-type", "application/json"), ("x-a", "1"))
    own = Reply.json(200, [], headers=[("Content-Type", "application/problem+json")])
    assert own.headers == (("Content-Type", "application/problem+json"),)
    sse = Reply.sse([("ping", "{}"), (None, "line1\nline2")])
    assert sse.chunks == (b"event: ping\ndata: {}\n\n", b"data: line1\ndata: line2\n\n")
    assert ("content-type", "text/event-stream") in sse.headers


def test_received_helpers() -> None:
    record = Received("POST", "/p", (("x-a", "1"),), b'{"k": 2}', 0.0)
    assert record.header("X-A") == "1"
    assert record.header("x-b") is None
    assert record.json() == {"k": 2}


def test_script_rejects_bad_arguments(upstream: Upstream) -> None:
    with pytest.raises(ValueError, match="path"):
        upstream.script("/p?q=1", Reply())
    with pytest.raises(ValueError, match="path"):
        upstream.script("p", Reply())
    with pytest.raises(ValueError, match="reply"):
        upstream.script("/p")
    with pytest.raises(ValueError, match="Reply"):
        upstream.script("/p", 503)  # type: ignore[arg-type]


def test_url_needs_a_running_server() -> None:
    up = Upstream()
    with pytest.raises(RuntimeError, match="not running"):
        _ = up.url
    with up, pytest.raises(RuntimeError, match="already running"):
        up.start()
    up.stop()  # stopping twice is harmless


# -- scripting ---------------------------------------------------------------------------------


def test_unscripted_path_answers_ok_json(upstream: Upstream) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        response = client.get("/anything")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ok": True}


def test_script_serves_replies_in_order_then_repeats_the_last(upstream: Upstream) -> None:
    upstream.script("/p", Reply(503), Reply(502), Reply(200, body=b"done"))
    with httpx.Client(base_url=upstream.url) as client:
        statuses = [client.get("/p").status_code for _ in range(5)]
    assert statuses == [503, 502, 200, 200, 200]
    assert upstream.count("/p") == 5


def test_script_matches_the_path_without_its_query(upstream: Upstream) -> None:
    upstream.script("/p", Reply(418))
    with httpx.Client(base_url=upstream.url) as client:
        assert client.get("/p", params={"q": "1"}).status_code == 418
    assert [record.path for record in upstream.received("/p")] == ["/p?q=1"]


def test_star_script_answers_paths_without_a_script_of_their_own(upstream: Upstream) -> None:
    upstream.script("*", Reply(503))
    upstream.script("/own", Reply(201))
    with httpx.Client(base_url=upstream.url) as client:
        assert client.get("/a").status_code == 503
        assert client.post("/v1/messages", json={}).status_code == 503
        assert client.get("/own").status_code == 201


def test_scripting_again_appends_before_the_last_reply_is_served(upstream: Upstream) -> None:
    upstream.script("/p", Reply(503))
    upstream.script("/p", Reply(200))
    with httpx.Client(base_url=upstream.url) as client:
        assert [client.get("/p").status_code for _ in range(3)] == [503, 200, 200]


def test_scripting_again_replaces_a_repeating_last_reply(upstream: Upstream) -> None:
    upstream.script("/p", Reply(503))
    with httpx.Client(base_url=upstream.url) as client:
        assert client.get("/p").status_code == 503
        upstream.script("/p", Reply(201), Reply(202))
        assert [client.get("/p").status_code for _ in range(3)] == [201, 202, 202]


def test_received_records_each_request(upstream: Upstream) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        client.post("/a?x=1", json={"k": "v"}, headers={"X-Test": "yes"})
        client.get("/b")
    first, second = upstream.received()
    assert (first.method, first.path, first.json()) == ("POST", "/a?x=1", {"k": "v"})
    assert first.url == upstream.url + "/a?x=1"
    assert type(first) is retry_transport.testing.Received  # one shape with ScriptedTransport
    assert first.header("x-test") == "yes"
    assert first.header("content-length") == str(len(first.content))
    assert first.at <= second.at
    assert (second.method, second.path, second.content) == ("GET", "/b", b"")
    assert upstream.count() == 2
    assert upstream.count("/a") == 1


def test_a_responder_answers_each_request_from_the_request(upstream: Upstream) -> None:
    upstream.respond("/echo", lambda request: Reply(200, request.content[::-1]))
    upstream.respond("*", lambda request: Reply(201, request.method.encode()))
    with httpx.Client(base_url=upstream.url) as client:
        assert client.post("/echo", content=b"abc").content == b"cba"
        assert client.post("/echo?q=1", content=b"xy").content == b"yx"
        assert client.delete("/other").content == b"DELETE"
        upstream.script("/echo", Reply(202))  # a script replaces the responder
        assert client.post("/echo").status_code == 202
        upstream.respond("/echo", lambda request: Reply(203))  # and the other way round
        assert client.post("/echo").status_code == 203
    assert upstream.responder_errors == []


def test_a_failing_responder_answers_500_and_records_the_error(upstream: Upstream) -> None:
    def broken(request: Received) -> Reply:
        raise LookupError("no such scenario")

    upstream.respond("/raise", broken)
    upstream.respond("/wrong", lambda request: 204)  # type: ignore[arg-type, return-value]
    with httpx.Client(base_url=upstream.url) as client:
        raised = client.get("/raise")
        wrong = client.get("/wrong")
    assert (raised.status_code, wrong.status_code) == (500, 500)
    assert b"no such scenario" in raised.content
    assert [type(error) for error in upstream.responder_errors] == [LookupError, TypeError]


def test_respond_rejects_bad_arguments(upstream: Upstream) -> None:
    with pytest.raises(ValueError, match="path"):
        upstream.respond("p", lambda request: Reply())
    with pytest.raises(TypeError, match="responder"):
        upstream.respond("/p", Reply())  # type: ignore[arg-type]


def test_reset_clears_scripts_and_records(upstream: Upstream) -> None:
    upstream.script("/p", Reply(503))
    with httpx.Client(base_url=upstream.url) as client:
        client.get("/p")
        upstream.reset()
        assert upstream.count() == 0
        assert client.get("/p").status_code == 200


def test_custom_framing_header_replaces_the_servers_own(upstream: Upstream) -> None:
    upstream.script("/p", Reply(headers=(("content-length", "3"),), body=b"abc"))
    with httpx.Client(base_url=upstream.url) as client:
        response = client.get("/p")
    assert response.content == b"abc"
    assert response.headers.get_list("content-length") == ["3"]


def test_status_without_standard_phrase_is_served(upstream: Upstream) -> None:
    upstream.script("/p", Reply(529), Reply(599))
    with httpx.Client(base_url=upstream.url) as client:
        first, second = client.get("/p"), client.get("/p")
    assert (first.status_code, first.reason_phrase) == (529, "Site Overloaded")
    assert (second.status_code, second.reason_phrase) == (599, "Unknown")


def test_head_and_204_have_no_body(upstream: Upstream) -> None:
    upstream.script("/head", Reply(body=b"12345"))
    upstream.script("/chunked", Reply(chunks=[b"abc"]))
    upstream.script("/empty", Reply(204))
    with httpx.Client(base_url=upstream.url, limits=httpx.Limits(max_connections=1)) as client:
        head = client.head("/head")
        chunked_head = client.head("/chunked")
        empty = client.get("/empty")
        after = client.get("/x")
    assert (head.content, head.headers["content-length"]) == (b"", "5")
    assert chunked_head.content == b""
    assert (empty.status_code, empty.content) == (204, b"")
    assert "content-length" not in empty.headers
    assert after.json() == {"ok": True}
    assert upstream.connections_accepted == 1


# -- connections and request bodies ------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(upstream: Upstream) -> None:
    upstream.script("/s", Reply(chunks=[b"a", b"b"]))
    with httpx.Client(base_url=upstream.url, limits=httpx.Limits(max_connections=1)) as client:
        for path in ["/a", "/s", "/b", "/s", "/c"]:
            assert client.post(path, content=b"x" * 1000).status_code == 200
    assert upstream.connections_accepted == 1
    assert {record.connection for record in upstream.received()} == {1}


def test_client_asking_to_close_gets_a_new_connection_each_time(upstream: Upstream) -> None:
    with httpx.Client(base_url=upstream.url, headers={"Connection": "close"}) as client:
        responses = [client.get("/a") for _ in range(3)]
    assert [r.headers["connection"] for r in responses] == ["close"] * 3
    assert upstream.connections_accepted == 3


def test_reply_asking_to_close_ends_the_connection(upstream: Upstream) -> None:
    upstream.script("/p", Reply(headers=(("connection", "close"),)))
    with httpx.Client(base_url=upstream.url) as client:
        client.get("/p")
        client.get("/p")
    assert upstream.connections_accepted == 2


def test_content_length_body_is_received_intact(upstream: Upstream) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    with httpx.Client(base_url=upstream.url) as client:
        client.post("/upload", content=body)
    assert upstream.received("/upload")[0].content == body


def test_chunked_request_body_is_received_intact(upstream: Upstream) -> None:
    parts = [b"first,", b"", b"x" * 70000, b"last"]
    with httpx.Client(base_url=upstream.url) as client:
        client.post("/upload", content=iter(parts))
        client.get("/after")  # the same connection is still in step
    record = upstream.received("/upload")[0]
    assert record.header("transfer-encoding") == "chunked"
    assert record.content == b"".join(parts)
    assert upstream.connections_accepted == 1


@pytest.mark.anyio
async def test_async_generator_body_is_received_intact(upstream: Upstream) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in [b"one ", b"two ", b"three"]:
            yield part

    async with httpx.AsyncClient(base_url=upstream.url) as client:
        response = await client.post("/upload", content=parts())
    assert response.status_code == 200
    assert upstream.received("/upload")[0].content == b"one two three"


def test_chunk_extensions_trailers_and_expect_continue_are_handled(upstream: Upstream) -> None:
    request = (
        b"POST /raw HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3;name=value\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    answer = _raw_exchange(upstream, request)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert upstream.received("/raw")[0].content == b"abc"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
    ],
)
def test_malformed_request_gets_400_and_a_closed_connection(
    upstream: Upstream, request_bytes: bytes
) -> None:
    assert _raw_exchange(upstream, request_bytes).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert upstream.count() == 0


@pytest.mark.parametrize("end", [b"\r\n\r\n", b""])
def test_oversized_head_gets_431(upstream: Upstream, end: bytes) -> None:
    request = b"GET / HTTP/1.1\r\nx-big: " + b"a" * 70000 + end
    assert _raw_exchange(upstream, request).startswith(b"HTTP/1.1 431 ")


def test_stray_empty_lines_and_absolute_targets_are_accepted(upstream: Upstream) -> None:
    upstream.script("/p", Reply(201))
    request = b"\r\n\r\nGET http://example.test/p?q=1 HTTP/1.1\r\nConnection: close\r\n\r\n"
    assert _raw_exchange(upstream, request).startswith(b"HTTP/1.1 201 Created\r\n")
    assert [record.url for record in upstream.received("/p")] == ["http://example.test/p?q=1"]


@pytest.mark.parametrize(
    "partial",
    [
        b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",  # mid body
        b"GET /p HTTP/1.1\r\n",  # mid head
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1",  # mid chunk size
    ],
)
def test_client_leaving_mid_request_is_not_recorded(upstream: Upstream, partial: bytes) -> None:
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(partial)
        sock.shutdown(socket.SHUT_WR)
        assert (
            sock.recv(100) == b""
        )  # the server saw the client leave and closed, answering nothing
    assert upstream.count() == 0


def test_an_endless_chunk_size_line_gets_400(upstream: Upstream) -> None:
    head = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = _raw_exchange(upstream, head + b"1" * 70_000)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_a_bad_request_is_drained_before_the_close(upstream: Upstream) -> None:
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        sock.sendall(b"more bytes the server reads and drops")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""


def test_a_stall_reads_and_drops_what_the_client_still_sends(upstream: Upstream) -> None:
    upstream.script("/s", Reply(fault="stall"))
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        upstream.wait_stalled(1)
        sock.sendall(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined: never answered
        sock.shutdown(socket.SHUT_WR)
        head = b""
        while chunk := sock.recv(65536):
            head += chunk
    upstream.wait_stalled(1, ended=True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"content-length: 0\r\n\r\n")
    assert upstream.count("/s") == 1


def test_stop_names_connection_threads_that_do_not_stop(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"first"
        release.wait(10)  # stuck outside any socket call, so stop() cannot end it
        yield b"late"

    upstream.script("/stuck", Reply(chunks=body))
    monkeypatch.setattr(server, "_JOIN_TIMEOUT", 0.01)
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while b"first" not in seen:
            seen += sock.recv(65536)
        try:
            with pytest.raises(RuntimeError, match="upstream-conn-1"):
                upstream.stop()
        finally:
            release.set()


def test_a_port_in_use_fails_start_and_leaves_the_upstream_stopped(upstream: Upstream) -> None:
    taken = Upstream(port=upstream.port)
    with pytest.raises(OSError):
        taken.start()
    with pytest.raises(RuntimeError, match="not running"):
        _ = taken.url


# -- faults --------------------------------------------------------------------------------

# A hang ends in a read timeout; connecting may take longer on a loaded machine.
HANG_TIMEOUT = httpx.Timeout(0.2, connect=5.0)

FAULTS: list[tuple[public.Fault, type[httpx.TransportError]]] = [
    ("drop", httpx.RemoteProtocolError),
    ("drop_mid_headers", httpx.RemoteProtocolError),
    ("drop_mid_body", httpx.RemoteProtocolError),
    ("hang", httpx.ReadTimeout),
    ("reset", httpx.ReadError),
]


@pytest.mark.parametrize(("fault", "error"), FAULTS)
def test_fault_raises_the_matching_httpx_error(
    upstream: Upstream, fault: public.Fault, error: type[httpx.TransportError]
) -> None:
    upstream.script("/f", Reply(body=b"0123456789", fault=fault), Reply(body=b"fine"))
    with httpx.Client(base_url=upstream.url, timeout=HANG_TIMEOUT) as client:
        with pytest.raises(error):
            client.get("/f")
        assert client.get("/f").content == b"fine"  # the next request gets a new connection
    assert upstream.count("/f") == 2
    assert upstream.connections_accepted == 2


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "error"), FAULTS)
async def test_fault_raises_the_matching_httpx_error_async(
    upstream: Upstream, fault: public.Fault, error: type[httpx.TransportError]
) -> None:
    upstream.script("/f", Reply(body=b"0123456789", fault=fault))
    async with httpx.AsyncClient(base_url=upstream.url, timeout=HANG_TIMEOUT) as client:
        with pytest.raises(error):
            await client.get("/f")


def test_drop_mid_body_sends_half_the_body(upstream: Upstream) -> None:
    upstream.script("/f", Reply(body=b"0123456789", fault="drop_mid_body"))
    received: list[bytes] = []
    with httpx.Client(base_url=upstream.url) as client, client.stream("GET", "/f") as response:
        assert response.headers["content-length"] == "10"
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(response.iter_raw())
    assert b"".join(received) == b"01234"


def test_drop_mid_body_of_a_stream_sends_half_the_chunks(upstream: Upstream) -> None:
    upstream.script("/f", Reply(chunks=[b"a", b"b", b"c", b"d"], fault="drop_mid_body"))
    received: list[bytes] = []
    with (
        httpx.Client(base_url=upstream.url) as client,
        client.stream("GET", "/f") as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        received.extend(response.iter_raw())
    assert received == [b"a", b"b"]


def test_drop_mid_headers_sends_a_partial_head(upstream: Upstream) -> None:
    upstream.script("/f", Reply(headers=(("x-long-header", "v" * 40),), fault="drop_mid_headers"))
    answer = _raw_exchange(upstream, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\nx-long-")
    assert not answer.endswith(b"\r\n")


def test_delay_holds_the_status_line_back(upstream: Upstream) -> None:
    upstream.script("/slow", Reply(delay=0.2))
    timeout = httpx.Timeout(5, read=0.02)
    with (
        httpx.Client(base_url=upstream.url, timeout=timeout) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get("/slow")


def test_stop_ends_a_hang_and_idle_keep_alive_connections(upstream: Upstream) -> None:
    upstream.script("/hang", Reply(fault="hang"))
    errors: list[BaseException] = []
    with httpx.Client(base_url=upstream.url, timeout=30) as client:
        client.get("/idle")  # leaves one idle connection in the pool

        def call() -> None:
            with httpx.Client(base_url=upstream.url, timeout=30) as other:
                try:
                    other.get("/hang")
                except httpx.TransportError as exc:
                    errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        upstream.wait_received(1, "/hang")
        upstream.stop()
        caller.join()
    assert [type(error) for error in errors] == [httpx.RemoteProtocolError]
    assert not [t for t in threading.enumerate() if t.name.startswith("upstream-")]


def test_stop_cuts_a_delay_short(upstream: Upstream) -> None:
    upstream.script("/delay", Reply(delay=60))
    errors: list[BaseException] = []

    def call() -> None:
        with httpx.Client(base_url=upstream.url, timeout=30) as client:
            try:
                client.get("/delay")
            except httpx.TransportError as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    upstream.wait_received(1)
    upstream.stop()
    caller.join()
    assert [type(error) for error in errors] == [httpx.RemoteProtocolError]


def test_stop_cuts_a_chunk_delay_short(upstream: Upstream) -> None:
    upstream.script("/chunks", Reply(chunks=[b"a", b"b"], chunk_delay=60))
    with (
        httpx.Client(base_url=upstream.url, timeout=30) as client,
        client.stream("GET", "/chunks") as response,
    ):
        chunks = response.iter_raw()
        assert next(chunks) == b"a"
        upstream.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            next(chunks)


def test_stop_ends_a_reply_the_client_stopped_reading(upstream: Upstream) -> None:
    block = bytes(1 << 20)
    upstream.script("/big", Reply(chunks=lambda: (block for _ in range(100))))
    with httpx.Client(base_url=upstream.url) as client, client.stream("GET", "/big") as response:
        assert len(next(response.iter_raw())) > 0
        upstream.stop()  # the server thread is blocked in a send; stop() must still join it
    assert not [t for t in threading.enumerate() if t.name.startswith("upstream-")]


def test_wait_received_times_out(upstream: Upstream) -> None:
    with pytest.raises(TimeoutError, match="/never"):
        upstream.wait_received(1, "/never", timeout=0.01)


# -- streams -------------------------------------------------------------------------------


def test_sse_events_arrive_as_separate_chunks(upstream: Upstream) -> None:
    events = [("message_start", "{}"), (None, "two"), ("ping", "3")]
    upstream.script("/sse", Reply.sse(events))
    with httpx.Client(base_url=upstream.url) as client, client.stream("GET", "/sse") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = list(response.iter_raw())
    assert chunks == [
        b"event: message_start\ndata: {}\n\n",
        b"data: two\n\n",
        b"event: ping\ndata: 3\n\n",
    ]


@pytest.mark.anyio
async def test_sse_events_arrive_as_separate_chunks_async(upstream: Upstream) -> None:
    upstream.script("/sse", Reply.sse([(None, "1"), (None, "2")], chunk_delay=0.01))
    async with (
        httpx.AsyncClient(base_url=upstream.url) as client,
        client.stream("GET", "/sse") as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert chunks == [b"data: 1\n\n", b"data: 2\n\n"]


def test_callable_chunks_are_called_afresh_for_each_reply(upstream: Upstream) -> None:
    def numbers() -> Iterator[bytes]:
        yield from (b"1", b"", b"2", b"3")  # an empty item would end the stream: skipped

    upstream.script("/n", Reply(chunks=numbers))
    with httpx.Client(base_url=upstream.url) as client:
        assert [client.get("/n").content for _ in range(2)] == [b"123", b"123"]


def test_lazy_50_mib_stream_is_not_buffered_by_the_server(upstream: Upstream) -> None:
    block, count = bytes(1 << 20), 50
    produced = 0

    def blocks() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(count):
            produced += 1
            yield block

    upstream.script("/big", Reply(chunks=blocks))
    tracemalloc.start()
    try:
        with (
            httpx.Client(base_url=upstream.url) as client,
            client.stream("GET", "/big") as response,
        ):
            stream = response.iter_raw()
            total = len(next(stream))
            ahead_of_the_client = produced
            total += sum(len(chunk) for chunk in stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == count << 20
    # The server is held back by the socket buffers, not left to read the generator dry.
    assert ahead_of_the_client < count
    assert peak < 16 << 20


# -- LLM replies through the real SDKs -------------------------------------------------------


def test_openai_chat_completion_is_parsed_by_the_sdk(upstream: Upstream) -> None:
    with _openai(upstream) as client:
        completion = client.chat.completions.create(model="gpt-x", messages=MESSAGES)
        upstream.script("/v1/chat/completions", openai_chat("scripted answer", model="m"))
        scripted = client.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert completion.choices[0].message.content == "hello"
    assert completion.model == "gpt-x"  # the canned reply echoes the requested model
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert scripted.choices[0].message.content == "scripted answer"


def test_openai_chat_stream_is_parsed_by_the_sdk(upstream: Upstream) -> None:
    upstream.script("/v1/chat/completions", openai_chat("hello big world ", stream=True))
    with _openai(upstream) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        chunks = list(stream)
    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert deltas[0].role == "assistant"
    assert "".join(delta.content or "" for delta in deltas) == "hello big world "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.received()[0].json() == {"messages": MESSAGES, "model": "m", "stream": True}


def test_openai_responses_are_parsed_by_the_sdk(upstream: Upstream) -> None:
    with _openai(upstream) as client:
        response = client.responses.create(model="m", input="hi")
        events = list(client.responses.create(model="m", input="hi", stream=True))
        upstream.script("/v1/responses", openai_responses("one two three", stream=True))
        with client.responses.stream(model="m", input="hi") as stream:
            final = stream.get_final_response()
    assert (response.status, response.output_text) == ("completed", "hello")
    assert [event.type for event in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "one two three"


def test_anthropic_message_is_parsed_by_the_sdk(upstream: Upstream) -> None:
    with _anthropic(upstream) as client:
        message = client.messages.create(model="claude-x", max_tokens=5, messages=CLAUDE)
    assert message.model == "claude-x"
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "hello"


def test_anthropic_stream_is_parsed_by_the_sdk(upstream: Upstream) -> None:
    upstream.script(
        "/v1/messages",
        anthropic_message("hi", stream=True),
        anthropic_message("a b c", stream=True),
    )
    with _anthropic(upstream) as client:
        stream = client.messages.create(
            model="claude-x", max_tokens=5, messages=CLAUDE, stream=True
        )
        kinds = [event.type for event in stream]
        with client.messages.stream(model="claude-x", max_tokens=5, messages=CLAUDE) as helper:
            text = helper.get_final_text()
    assert kinds == [  # the SDK hides the ping
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert text == "a b c"


@pytest.mark.anyio
async def test_async_sdks_parse_the_canned_replies(upstream: Upstream) -> None:
    # No async chat stream here: openai's AsyncStream stops at `data: [DONE]` without closing
    # its async generators, which trio reports as a ResourceWarning (asyncio stays silent).
    async with openai.AsyncOpenAI(
        base_url=upstream.url + "/v1", api_key="test", max_retries=0
    ) as oai:
        chat = await oai.chat.completions.create(model="m", messages=MESSAGES)
        stream = await oai.responses.create(model="m", input="hi", stream=True)
        streamed = "".join(
            [e.delta async for e in stream if e.type == "response.output_text.delta"]
        )
        response = await oai.responses.create(model="m", input="hi")
    async with anthropic.AsyncAnthropic(
        base_url=upstream.url, api_key="test", max_retries=0
    ) as ant:
        message = await ant.messages.create(model="c", max_tokens=5, messages=CLAUDE)
        async with ant.messages.stream(model="c", max_tokens=5, messages=CLAUDE) as helper:
            claude_text = await helper.get_final_text()
    assert chat.choices[0].message.content == streamed == response.output_text == "hello"
    assert message.content[0].type == "text"
    assert message.content[0].text == claude_text == "hello"


def test_openai_error_is_raised_by_the_sdk_as_its_typed_error(upstream: Upstream) -> None:
    upstream.script(
        "/v1/chat/completions",
        openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded"),
    )
    with _openai(upstream) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"
    assert "Rate limit reached" in caught.value.message


def test_anthropic_error_is_raised_by_the_sdk_as_its_typed_error(upstream: Upstream) -> None:
    upstream.script(
        "/v1/messages",
        anthropic_error(529, "overloaded_error", "Overloaded", headers=[("x-a", "1")]),
    )
    with _anthropic(upstream) as client, pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="c", max_tokens=5, messages=CLAUDE)
    assert caught.value.status_code == 529
    assert caught.value.response.headers["x-a"] == "1"
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


@pytest.mark.parametrize(
    ("after", "seen"),
    [
        ("nothing", []),
        ("preamble", ["message_start"]),
        ("first_delta", ["message_start", "content_block_start", "content_block_delta"]),
    ],
)
def test_anthropic_stream_error_is_raised_by_the_sdk_after_the_events_before_it(
    upstream: Upstream, after: Literal["nothing", "preamble", "first_delta"], seen: list[str]
) -> None:
    upstream.script("/v1/messages", anthropic_stream_error(after))
    kinds: list[str] = []
    with _anthropic(upstream) as client:
        stream = client.messages.create(model="c", max_tokens=5, messages=CLAUDE, stream=True)
        with pytest.raises(anthropic.APIStatusError) as caught:
            kinds.extend(event.type for event in stream)
    assert kinds == seen
    assert caught.value.status_code == 200  # in band: the SDK cannot tell it is an overload
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_anthropic_stream_error_puts_the_error_event_where_asked() -> None:
    def names(reply: Reply) -> list[str]:
        assert isinstance(reply.chunks, tuple)
        return [chunk.split(b"\n", 1)[0].decode() for chunk in reply.chunks]

    assert names(anthropic_stream_error()) == ["event: error"]
    assert names(anthropic_stream_error("preamble")) == [
        "event: message_start",
        "event: ping",
        "event: error",
    ]
    assert names(anthropic_stream_error("first_delta"))[-2:] == [
        "event: content_block_delta",
        "event: error",
    ]


@pytest.mark.parametrize(("after", "deltas"), [("nothing", 0), ("role", 1), ("first_delta", 2)])
def test_openai_chat_stream_error_is_raised_by_the_sdk(
    upstream: Upstream, after: Literal["nothing", "role", "first_delta"], deltas: int
) -> None:
    upstream.script("/v1/chat/completions", openai_chat_stream_error(after, code=502))
    seen: list[object] = []
    with _openai(upstream) as client:
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as caught:
            seen.extend(stream)
    assert len(seen) == deltas
    assert caught.value.body == {"message": "Provider returned error", "code": 502}


def test_openai_responses_failed_comes_before_any_output(upstream: Upstream) -> None:
    upstream.script("/v1/responses", openai_responses_failed("boom", code="server_error"))
    with _openai(upstream) as client:
        events = list(client.responses.create(model="m", input="hi", stream=True))
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert (failed.response.error.code, failed.response.error.message) == ("server_error", "boom")


def test_unscripted_llm_paths_follow_the_requests_stream_flag(upstream: Upstream) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        plain = client.post("/v1/messages", content=b"not json")
        streamed = client.post("/v1/responses", json={"stream": True, "model": 7})
        chat = client.get("/v1/chat/completions")
    assert plain.json()["type"] == "message"
    assert streamed.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b"event: response.completed" in streamed.content
    assert chat.json() == {"ok": True}  # only POST gets the canned LLM reply


def test_canned_stream_words_rebuild_the_text() -> None:
    reply = openai_chat(" a  b ", stream=True)
    assert isinstance(reply.chunks, tuple)
    contents = [
        json.loads(chunk[6:])["choices"][0]["delta"].get("content", "")
        for chunk in reply.chunks[:-1]
    ]
    assert "".join(contents) == " a  b "
    assert reply.chunks[-1] == b"data: [DONE]\n\n"
    assert openai_responses("").status == anthropic_message("").status == 200


# -- concurrency ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_200_concurrent_requests_are_served_at_once(upstream: Upstream) -> None:
    requests, pools = 200, 4
    barrier = threading.Barrier(requests, timeout=10)

    def together() -> list[bytes]:
        barrier.wait()  # only returns once all 200 requests are being served at once
        return [b"ok"]

    upstream.script("/together", Reply(chunks=together))
    bodies: list[bytes] = []
    # Four pools of 50: httpcore's pool bookkeeping grows faster than linearly with its size.
    limits = httpx.Limits(max_connections=requests // pools)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=upstream.url, limits=limits, timeout=20)
            )
            for _ in range(pools)
        ]

        async def one(client: httpx.AsyncClient) -> None:
            response = await client.post("/together", content=b"payload")
            bodies.append(response.content)

        async with anyio.create_task_group() as tasks:
            for number in range(requests):
                tasks.start_soon(one, clients[number % pools])
    assert bodies == [b"ok"] * requests
    assert upstream.connections_accepted == requests
    assert upstream.count("/together") == requests
