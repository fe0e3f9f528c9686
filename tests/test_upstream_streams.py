"""The upstream's stream modes on the wire: whole, cut short and stalled, for every protocol.

Each test talks to the started server over a real socket (httpx, or the SDK that speaks the
protocol). Stalls are observed through `Upstream.wait_stalled`, never by waiting for a time.
"""

from __future__ import annotations

import json
import re

import anthropic
import anyio
import httpx
import openai
import pytest

from retry_transport.testing.upstream import (
    STREAM_FAULTS,
    STREAM_PATHS,
    STREAM_PROTOCOLS,
    Reply,
    StreamProtocol,
    Upstream,
    gemini_generate,
    stream_reply,
    stream_request,
)

TEXT = "one two three four"
WORDS = ["one", " two", " three", " four"]
STALLS = ("stall_after_headers", "pings_then_stall", "stall_mid_answer")


def url(up: Upstream, protocol: StreamProtocol) -> str:
    query = "?alt=sse" if protocol == "gemini" else ""
    return up.url + STREAM_PATHS[protocol] + query


def events(body: bytes) -> list[tuple[str | None, str]]:
    """The (event name, data) pairs of an SSE body; comments dropped, any line ending."""
    found = []
    for block in re.split(r"\r?\n\r?\n", body.decode()):
        lines = [line for line in re.split(r"\r?\n", block) if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        found.append((name, data))
    return found


def text_of(protocol: StreamProtocol, stream: list[tuple[str | None, str]]) -> list[str]:
    """The content deltas of a stream, in order."""
    pieces = []
    for name, data in stream:
        if data == "[DONE]":
            continue
        obj = json.loads(data)
        if protocol == "anthropic" and name == "content_block_delta":
            pieces.append(obj["delta"]["text"])
        elif (
            protocol == "openai_chat" and obj["choices"] and "content" in obj["choices"][0]["delta"]
        ):
            pieces.append(obj["choices"][0]["delta"]["content"])
        elif protocol == "openai_responses" and name == "response.output_text.delta":
            pieces.append(obj["delta"])
        elif protocol == "gemini":
            pieces.append(obj["candidates"][0]["content"]["parts"][0]["text"])
    return [piece for piece in pieces if piece]


def terminal(protocol: StreamProtocol, stream: list[tuple[str | None, str]]) -> bool:
    """Whether the stream carries the event that says the answer is complete."""
    names = [name for name, _ in stream]
    datas = [data for _, data in stream]
    if protocol == "anthropic":
        return "message_stop" in names
    if protocol == "openai_chat":
        return any('"finish_reason":"stop"' in data for data in datas)
    if protocol == "openai_responses":
        return "response.completed" in names
    return any('"finishReason":"STOP"' in data for data in datas)


def drain(response: httpx.Response) -> tuple[bytes, httpx.RemoteProtocolError | None]:
    """Everything a streamed response brings, and the error that ended it, if one did."""
    received = bytearray()
    try:
        for chunk in response.iter_raw():
            received += chunk
    except httpx.RemoteProtocolError as error:
        return bytes(received), error
    return bytes(received), None


def fetch(up: Upstream, protocol: StreamProtocol) -> httpx.Response:
    with httpx.Client() as client:
        return client.post(url(up, protocol), json=stream_request(protocol))


# -- whole streams and clean variants ---------------------------------------------------------


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_a_whole_stream_has_every_delta_and_its_terminal_event(
    upstream: Upstream, protocol: StreamProtocol
) -> None:
    upstream.script(STREAM_PATHS[protocol], stream_reply(protocol, TEXT))
    response = fetch(upstream, protocol)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = events(response.content)
    assert text_of(protocol, stream) == WORDS
    assert terminal(protocol, stream)


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_crlf_line_endings_end_every_line(upstream: Upstream, protocol: StreamProtocol) -> None:
    upstream.script(STREAM_PATHS[protocol], stream_reply(protocol, TEXT, newline="\r\n"))
    body = fetch(upstream, protocol).content
    assert b"\r\n\r\n" in body
    assert re.search(rb"(?<!\r)\n", body) is None
    assert text_of(protocol, events(body)) == WORDS


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_trailing_keep_alives_follow_the_terminal_event(
    upstream: Upstream, protocol: StreamProtocol
) -> None:
    upstream.script(STREAM_PATHS[protocol], stream_reply(protocol, TEXT, trailing_keepalives=2))
    body = fetch(upstream, protocol).content
    assert body.endswith(b"\n\n: keep-alive\n\n: keep-alive\n\n")
    assert terminal(protocol, events(body))


def test_a_chat_stream_can_end_at_its_finish_chunk_without_done(upstream: Upstream) -> None:
    upstream.script("/v1/chat/completions", stream_reply("openai_chat", TEXT, done=False))
    body = fetch(upstream, "openai_chat").content
    stream = events(body)
    assert b"[DONE]" not in body
    assert json.loads(stream[-1][1])["choices"][0]["finish_reason"] == "stop"


def test_a_chat_stream_can_carry_a_usage_chunk_after_its_finish_chunk(upstream: Upstream) -> None:
    upstream.script("/v1/chat/completions", stream_reply("openai_chat", TEXT, usage=True))
    stream = events(fetch(upstream, "openai_chat").content)
    finish, usage, done = stream[-3:]
    assert json.loads(finish[1])["choices"][0]["finish_reason"] == "stop"
    assert json.loads(usage[1])["choices"] == []
    assert json.loads(usage[1])["usage"]["completion_tokens"] == len(WORDS)
    assert done == (None, "[DONE]")


@pytest.mark.parametrize(
    "kwargs", [{"done": False}, {"usage": True}, {"newline": "\r\n"}, {"trailing_keepalives": 1}]
)
def test_the_openai_sdk_reads_every_clean_chat_variant(
    upstream: Upstream, kwargs: dict[str, object]
) -> None:
    upstream.script("/v1/chat/completions", stream_reply("openai_chat", TEXT, **kwargs))  # type: ignore[arg-type]
    client = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage is not None) is bool(kwargs.get("usage"))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_the_sdks_read_whole_anthropic_and_responses_streams(
    upstream: Upstream, newline: str
) -> None:
    upstream.script("/v1/messages", stream_reply("anthropic", TEXT, newline=newline))  # type: ignore[arg-type]
    upstream.script("/v1/responses", stream_reply("openai_responses", TEXT, newline=newline))  # type: ignore[arg-type]
    claude = anthropic.Anthropic(base_url=upstream.url, api_key="k", max_retries=0)
    with (
        claude,
        claude.messages.stream(
            model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        assert stream.get_final_text() == TEXT
    gpt = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with gpt:
        kinds = [event.type for event in gpt.responses.create(model="m", input="hi", stream=True)]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == len(WORDS)


def test_unscripted_gemini_paths_answer_with_the_canned_gemini_reply(upstream: Upstream) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        plain = client.post("/v1beta/models/gemini-x:generateContent", json={})
        streamed = client.post("/v1beta/models/gemini-x:streamGenerateContent?alt=sse", json={})
        other = client.get("/v1beta/models/gemini-x:generateContent")
    answer = plain.json()
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == "hello"
    assert (answer["candidates"][0]["finishReason"], answer["modelVersion"]) == ("STOP", "gemini-x")
    assert text_of("gemini", events(streamed.content)) == ["hello"]
    assert terminal("gemini", events(streamed.content))
    assert other.json() == {"ok": True}


def test_gemini_generate_streams_one_chunk_per_word() -> None:
    reply = gemini_generate("a b", stream=True)
    assert isinstance(reply.chunks, tuple)
    chunks = [json.loads(data) for _, data in events(b"".join(reply.chunks))]
    assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["a", " b"]
    assert ["finishReason" in c["candidates"][0] for c in chunks] == [False, True]


# -- cuts: a clean end of the body, no terminal event --------------------------------------------


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_cut_before_content_ends_cleanly_after_the_opening_events(
    upstream: Upstream, protocol: StreamProtocol
) -> None:
    upstream.script(
        STREAM_PATHS[protocol], stream_reply(protocol, TEXT, fault="cut_before_content")
    )
    response = fetch(upstream, protocol)  # read to its end: the chunked body is complete
    stream = events(response.content)
    assert response.status_code == 200
    assert text_of(protocol, stream) == []
    assert not terminal(protocol, stream)
    opening = {"anthropic": 3, "openai_chat": 1, "openai_responses": 4, "gemini": 0}[protocol]
    assert len(stream) == opening


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_cut_mid_answer_ends_cleanly_after_half_the_deltas(
    upstream: Upstream, protocol: StreamProtocol
) -> None:
    upstream.script(STREAM_PATHS[protocol], stream_reply(protocol, TEXT, fault="cut_mid_answer"))
    stream = events(fetch(upstream, protocol).content)
    assert text_of(protocol, stream) == WORDS[:2]
    assert not terminal(protocol, stream)
    assert all(data != "[DONE]" for _, data in stream)


def test_the_anthropic_sdk_sees_a_mid_answer_cut_as_an_unfinished_message(
    upstream: Upstream,
) -> None:
    upstream.script("/v1/messages", stream_reply("anthropic", TEXT, fault="cut_mid_answer"))
    claude = anthropic.Anthropic(base_url=upstream.url, api_key="k", max_retries=0)
    with claude:
        raw = list(
            claude.messages.create(
                model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert [event.type for event in raw][-1] == "content_block_delta"
    assert "message_stop" not in [event.type for event in raw]


# -- stalls: the server goes silent until the client leaves or the server stops ------------------


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
@pytest.mark.parametrize("fault", STALLS)
def test_a_stall_sends_its_part_then_nothing_until_the_server_stops(
    upstream: Upstream, protocol: StreamProtocol, fault: str
) -> None:
    reply = stream_reply(protocol, TEXT, fault=fault)  # type: ignore[arg-type]
    assert isinstance(reply.chunks, tuple)
    sent = b"".join(reply.chunks)
    upstream.script(STREAM_PATHS[protocol], reply)
    with (
        httpx.Client() as client,
        client.stream("POST", url(upstream, protocol), json=stream_request(protocol)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        upstream.wait_stalled(1)  # everything the stall sends has been sent
        upstream.stop()
        received, error = drain(response)
    assert "incomplete chunked read" in str(error)  # no terminating chunk was ever sent
    assert received == sent
    stream = events(sent)
    assert not terminal(protocol, stream)
    if fault == "stall_after_headers":
        assert sent == b""
    elif fault == "pings_then_stall":
        assert sent.count(b"event: ping" if protocol == "anthropic" else b": keep-alive") == 3
        assert text_of(protocol, stream) == []
    else:
        assert text_of(protocol, stream) == WORDS[:2]


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS)
def test_a_stall_ends_when_the_client_leaves(upstream: Upstream, protocol: StreamProtocol) -> None:
    upstream.script(STREAM_PATHS[protocol], stream_reply(protocol, fault="stall_after_headers"))
    with (
        httpx.Client() as client,
        client.stream("POST", url(upstream, protocol), json=stream_request(protocol)) as response,
    ):
        assert response.status_code == 200
        upstream.wait_stalled(1)
        assert upstream.silent == 1
    upstream.wait_stalled(1, ended=True)  # closing the unread response closed the connection
    assert upstream.silent == 0


@pytest.mark.anyio
async def test_a_stall_holds_an_async_client_until_it_leaves(upstream: Upstream) -> None:
    upstream.script("/v1/messages", stream_reply("anthropic", fault="pings_then_stall", pings=2))
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", upstream.url + "/v1/messages", json={}) as response,
    ):
        assert response.status_code == 200
        await anyio.to_thread.run_sync(upstream.wait_stalled)
        assert upstream.silent == 1
    upstream.wait_stalled(1, ended=True)


def test_a_stall_of_a_plain_body_sends_only_the_head(upstream: Upstream) -> None:
    upstream.script("/p", Reply(200, b"never sent", fault="stall"))
    with httpx.Client() as client, client.stream("GET", upstream.url + "/p") as response:
        assert response.headers["content-length"] == "10"
        upstream.wait_stalled(1)
        upstream.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_wait_stalled_times_out(upstream: Upstream) -> None:
    with pytest.raises(TimeoutError, match="not started"):
        upstream.wait_stalled(1, timeout=0.01)
    with pytest.raises(TimeoutError, match="not ended"):
        upstream.wait_stalled(1, ended=True, timeout=0.01)


# -- arguments ------------------------------------------------------------------------------------


def test_every_fault_and_protocol_is_listed() -> None:
    assert set(STREAM_FAULTS) == {*STALLS, "cut_before_content", "cut_mid_answer"}
    assert set(STREAM_PROTOCOLS) == set(STREAM_PATHS)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("smoke",), {}, "protocol"),
        (("anthropic",), {"fault": "explode"}, "fault"),
        (("anthropic",), {"newline": "\r"}, "newline"),
        (("anthropic",), {"pings": -1}, "pings"),
        (("anthropic",), {"pings": True}, "pings"),
        (("anthropic",), {"trailing_keepalives": 1.5}, "trailing_keepalives"),
        (("anthropic",), {"done": False}, "done"),
        (("gemini",), {"usage": True}, "usage"),
        (("openai_chat", "single"), {}, "text"),
        (("openai_chat",), {"fault": "cut_mid_answer", "trailing_keepalives": 1}, "trailing"),
    ],
)
def test_bad_stream_arguments_raise_value_error_naming_the_field(
    args: tuple[str, ...], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        stream_reply(*args, **kwargs)  # type: ignore[arg-type]
    if field == "protocol":
        with pytest.raises(ValueError, match=field):
            stream_request("smoke")  # type: ignore[arg-type]


def test_stream_requests_ask_for_a_stream_where_the_protocol_says_so() -> None:
    assert stream_request("anthropic")["stream"] is True
    assert stream_request("openai_chat", "gpt-x")["model"] == "gpt-x"
    assert stream_request("openai_responses")["stream"] is True
    assert "stream" not in stream_request("gemini")  # Gemini says it in the path
