"""The terminal-event watcher: which protocol a stream speaks, and whether it ended properly."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retry_transport._terminal import (
    ANTHROPIC,
    CHAT,
    COHERE,
    GEMINI,
    HEAD,
    PROTOCOLS,
    RESPONSES,
    WINDOW,
    StreamProtocol,
    TerminalWatcher,
    _ends_properly,
)

# Text that looks like terminal markers, to be carried (JSON-escaped) inside content.
TRICKY = [
    "plain words",
    "message_stop",
    'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    "data: [DONE]",
    '{"finish_reason":"stop"}',
    '"type":"response.completed"',
    '\r\n"finishReason": "STOP"',
    "",
]


def _event(data: object, name: str | None = None) -> str:
    head = "" if name is None else f"event: {name}\n"
    return head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _anthropic(texts: Sequence[str], extra: bool) -> tuple[str, str]:
    message = {"type": "message_start", "message": {"id": "m", "content": []}}
    start = _event(message, "message_start")
    body = _event({"type": "ping"}, "ping")
    body += _event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    for text in texts:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
        delta["delta"] = {"type": "text_delta", "text": text}
        body += _event(delta, "content_block_delta")
    body += _event({"type": "content_block_stop", "index": 0}, "content_block_stop")
    body += _event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta")
    end = _event({"type": "message_stop"}, "message_stop")
    if extra:
        end += ": keep-alive\n\n"
    return start + body, end


def _chat(texts: Sequence[str], extra: bool) -> tuple[str, str]:
    def chunk(delta: dict[str, object], finish: str | None) -> dict[str, object]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}

    start = _event(chunk({"role": "assistant", "content": ""}, None))
    body = "".join(_event(chunk({"content": text}, None)) for text in texts)
    end = _event(chunk({}, "stop"))
    if extra:  # a usage chunk and a keep-alive, no [DONE]
        end += _event({"id": "c", "choices": [], "usage": {"total_tokens": 9}}) + ": ping\n\n"
    else:
        end += "data: [DONE]\n\n"
    return start + body, end


def _responses(texts: Sequence[str], extra: bool) -> tuple[str, str]:
    start = _event({"type": "response.created", "response": {"id": "r"}}, "response.created")
    body = _event({"type": "response.in_progress", "response": {"id": "r"}}, "response.in_progress")
    for text in texts:
        body += _event({"type": "response.output_text.delta", "delta": text})
    done = {"type": "response.completed", "response": {"id": "r", "output": list(texts)}}
    return start + body, _event(done, None if extra else "response.completed")


def _gemini(texts: Sequence[str], extra: bool) -> tuple[str, str]:
    def chunk(text: str, finish: str | None) -> dict[str, object]:
        candidate: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "modelVersion": "gemini-2.5-pro"}

    start = _event(chunk("", None))
    body = "".join(_event(chunk(text, None)) for text in texts)
    last = chunk("!", "STOP")
    if extra:
        last["usageMetadata"] = {"totalTokenCount": 12}
    end = "data: " + json.dumps(last) + "\n\n"  # Gemini's own spacing: ", " and ": "
    return start + body, end


def _cohere(texts: Sequence[str], extra: bool) -> tuple[str, str]:
    start = _event({"id": "x", "type": "message-start"}, "message-start")
    body = "".join(
        _event({"type": "content-delta", "delta": {"message": {"text": t}}}, "content-delta")
        for t in texts
    )
    return start + body, _event({"type": "message-end"}, None if extra else "message-end")


BUILDERS: dict[StreamProtocol, Callable[[Sequence[str], bool], tuple[str, str]]] = {
    ANTHROPIC: _anthropic,
    CHAT: _chat,
    RESPONSES: _responses,
    GEMINI: _gemini,
    COHERE: _cohere,
}


def _stream(protocol: StreamProtocol, texts: Sequence[str], extra: bool, crlf: bool) -> bytes:
    before, end = BUILDERS[protocol](texts, extra)
    text = before + end
    return (text.replace("\n", "\r\n") if crlf else text).encode()


def _watch(data: bytes, cuts: Sequence[int] = ()) -> TerminalWatcher:
    watcher = TerminalWatcher()
    last = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        watcher.feed(data[last:cut])
        last = cut
    watcher.feed(data[last:])
    return watcher


def _terminal_end(data: bytes, protocol: StreamProtocol) -> int:
    """The index just past the line ending of the stream's first terminal line."""
    match = protocol.pattern.search(data)
    assert match is not None
    return match.end()


def _first_line_end(data: bytes) -> int:
    return data.index(b"\n") + 1


streams = st.builds(
    _stream,
    st.sampled_from(PROTOCOLS),
    st.lists(st.sampled_from(TRICKY), max_size=6),
    st.booleans(),
    st.booleans(),
)


@given(streams, st.lists(st.integers(min_value=0, max_value=4000), max_size=40))
@settings(max_examples=400)
def test_a_clean_stream_never_raises_however_it_is_split(data: bytes, cuts: list[int]) -> None:
    watcher = _watch(data, cuts)
    assert watcher.protocol is not None
    assert watcher.missing() is None


@given(streams, st.data())
@settings(max_examples=400)
def test_any_cut_before_the_terminal_event_is_reported(data: bytes, draw: st.DataObject) -> None:
    protocol = _watch(data).protocol
    assert protocol is not None
    low, high = _first_line_end(data), _terminal_end(data, protocol) - 1
    cut = draw.draw(st.integers(min_value=low, max_value=high), label="cut")
    cuts = draw.draw(st.lists(st.integers(min_value=0, max_value=cut), max_size=20))
    missing = _watch(data[:cut], cuts).missing()
    assert missing is not None
    assert protocol.terminal in missing


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("crlf", [False, True])
def test_every_byte_split_of_each_protocol_is_clean(protocol: StreamProtocol, crlf: bool) -> None:
    for extra in (False, True):
        data = _stream(protocol, TRICKY, extra, crlf)
        watcher = _watch(data, range(len(data)))
        assert watcher.protocol is protocol
        assert watcher.missing() is None


@pytest.mark.parametrize(
    ("data", "protocol"),
    [
        (b'data: {"type":"message_start","message":{}}\n\n', ANTHROPIC),
        (b'event:message_start\ndata: {"type":"message_start"}\n\n', ANTHROPIC),
        (b'data: {"type": "response.created"}\n\n', RESPONSES),
        (b'event: response.queued\ndata: {"type":"response.queued"}\n\n', RESPONSES),
        (b': OPENROUTER PROCESSING\n\nid: 1\nretry: 10\ndata: {"id":"x","choices":[]}\n\n', CHAT),
        (b'data: {"id":"x","object":"text_completion","created":1}\n\n', CHAT),
        (b'data: {"candidates": [{"content": {}}]}\n\n', GEMINI),
        (b'\xef\xbb\xbfevent: message-start\ndata: {"type":"message-start"}\n\n', COHERE),
        (b'data: {"type":"message_start"}\rdata: x\r\r', ANTHROPIC),
    ],
)
def test_the_protocol_is_recognised_from_the_first_event(
    data: bytes, protocol: StreamProtocol
) -> None:
    watcher = _watch(data)
    assert watcher.protocol is protocol
    assert watcher.watching


@pytest.mark.parametrize(
    "data",
    [
        b'event: ping\ndata: {"type":"ping"}\n\n',
        b'event: agent.session.created\ndata: {"session_id":"s"}\n\n',
        b'data: {"type":"error","error":{}}\n\n',
        b'data: {"hello":"world"}\n\n',
        b"data: [DONE]\n\n",
        b"<html><body>not a stream</body></html>",
        b"id: 1\n\n" + b":" * 5000 + b"\n",
    ],
)
def test_an_unknown_protocol_passes_untouched(data: bytes) -> None:
    watcher = _watch(data, range(0, len(data), 7))
    assert watcher.protocol is None
    assert watcher.missing() is None
    assert not watcher.watching
    watcher.feed(b"more bytes")
    assert watcher.missing() is None


def test_a_stream_of_only_keep_alives_is_given_up_on_after_the_detection_limit() -> None:
    watcher = TerminalWatcher()
    for _ in range(WINDOW // 64 + 10):
        watcher.feed(b": keep-alive comment padded to sixty-four bytes ...............\n\n")
    assert not watcher.watching
    assert watcher.missing() is None


def test_a_stream_that_ends_while_undecided_is_judged_on_what_came() -> None:
    assert _watch(b'data: {"type":"message_start"}').missing() is not None
    assert _watch(b": only a comment\n").missing() is None
    assert _watch(b"").missing() is None


def test_a_long_first_line_decides_before_it_ends() -> None:
    line = b'data: {"type":"response.created","response":{"instructions":"' + b"i" * 10_000
    watcher = _watch(line, range(0, len(line), 1000))
    assert watcher.protocol is RESPONSES


def test_memory_stays_within_the_window_on_a_long_stream() -> None:
    start, _ = _anthropic(["x"], False)
    delta = _event(
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "y" * 16000}},
        "content_block_delta",
    ).encode()
    watcher = TerminalWatcher()
    watcher.feed(start.encode())
    for _ in range(2000):  # about 32 MB
        watcher.feed(delta)
        held = sum(len(chunk) for chunk in watcher._chunks)
        assert held < WINDOW + len(delta)
        assert len(watcher._head) <= HEAD
    assert watcher.missing() is not None
    watcher.feed(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert watcher.missing() is None


def test_a_final_event_longer_than_the_window_is_found_from_its_start() -> None:
    start, _ = _responses(["a"], False)
    final = _event({"type": "response.completed", "response": {"text": "z" * (3 * WINDOW)}})
    data = (start + final).encode()
    for step in (1000, 4096, WINDOW, len(data)):
        assert _watch(data, range(0, len(data), step)).missing() is None
        assert _watch(data[:-3], range(0, len(data), step)).missing() is not None


def test_a_line_without_a_break_after_many_chunks_keeps_only_its_head() -> None:
    watcher = TerminalWatcher()
    watcher.feed(b'data: {"type":"message_start"}\n\ndata: "')
    for _ in range(5):
        watcher.feed(b"q" * WINDOW)
    assert watcher._head.startswith(b'data: "q')
    assert len(watcher._head) == HEAD
    assert watcher.missing() is not None


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'data: {"type":"error","error":{"type":"overloaded_error"}}\n\n', "Anthropic error"),
        (b'event: error\ndata: {"type":"error"}\n\n', "Anthropic error event"),
    ],
)
def test_an_error_event_ends_a_stream_properly(data: bytes, why: str) -> None:
    start, _ = _anthropic(["partial"], False)
    assert _watch(start.encode() + data).missing() is None, why


def test_an_in_band_chat_error_ends_a_stream_properly() -> None:
    start, _ = _chat(["partial"], False)
    error = b'data: {"error":{"message":"provider hiccup","code":502}}\n\n'
    assert _watch(start.encode() + error).missing() is None


def test_a_finish_reason_of_null_is_no_terminal() -> None:
    start, _ = _chat(["a", "b"], False)
    assert _watch(start.encode()).missing() is not None
    spaced = b'data: {"choices": [{"delta": {}, "finish_reason": null}]}\n\n'
    assert _watch(start.encode() + spaced).missing() is not None


def test_the_message_names_the_missing_final_event() -> None:
    start, _ = _gemini(["a"], False)
    missing = _watch(start.encode()).missing()
    assert missing == (
        "the Gemini stream ended without its final event (a candidate with a finishReason)"
    )


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
def test_stream_truncated_is_the_flavours_remote_protocol_error(name: str) -> None:
    import importlib

    import retry_transport
    from retry_transport._flavour import flavour_named

    library = importlib.import_module(name)
    error = flavour_named(name).stream_truncated("cut before message_stop")
    assert isinstance(error, library.RemoteProtocolError)
    assert isinstance(error, retry_transport.StreamTruncated)
    assert isinstance(error, retry_transport.RetryTransportError)
    assert type(error).__name__ == "StreamTruncated"


# -- the end searched first --------------------------------------------------------------------

_LINES = st.sampled_from(
    [
        b"data: [DONE]",
        b"data: [DONE]  ",
        b'data: {"finish_reason":"stop"}',
        b'data: {"finish_reason":null}',
        b'data: {"type":"message_stop"}',
        b"event: message_stop",
        b"event: message_stopped",
        b"event: response.completed",
        b'data: {"candidates":[{"finishReason":"STOP"}]}',
        b": keep-alive",
        b"",
        b"x" * 40,
        b"id: 7",
    ]
)
_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b""])


@given(st.lists(st.tuples(_LINES, _ENDS), max_size=40), st.sampled_from(PROTOCOLS))
@settings(max_examples=400)
def test_the_end_is_searched_first_with_the_answer_of_a_whole_search(
    lines: list[tuple[bytes, bytes]], protocol: StreamProtocol
) -> None:
    # Lines ended by "\r" alone, unterminated ones, terminal lines far from the end: the quick
    # look at the last lines never answers other than a search of the whole window.
    tail = b"".join(line + end for line, end in lines)
    expected = protocol.pattern.search(tail) is not None
    assert _ends_properly(protocol.pattern, tail) is expected


def test_a_terminal_event_far_from_the_end_is_still_found() -> None:
    keep_alives = b": keep-alive\n\n" * 40  # more lines than are looked at one by one
    start, end = _anthropic(["hi"], extra=False)
    watcher = _watch(start.encode() + end.encode() + keep_alives)
    assert watcher.missing() is None
    assert _watch(start.encode() + keep_alives).missing() is not None
