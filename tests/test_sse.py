"""The stream preamble scanner: content, an early error, or the end, from the first bytes."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_transport._sse import PreambleScanner, ScanKind, ScanResult

LIMIT = 65536


def _event(data: object, name: str | None = None) -> bytes:
    head = b"" if name is None else f"event: {name}\n".encode()
    body = data if isinstance(data, str) else json.dumps(data)
    return head + f"data: {body}\n\n".encode()


ANTHROPIC_PREAMBLE = (
    _event({"type": "message_start", "message": {"id": "msg_1", "content": []}}, "message_start")
    + _event({"type": "ping"}, "ping")
    + _event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
)
ANTHROPIC_DELTA = _event(
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    "content_block_delta",
)
ANTHROPIC_OVERLOADED = _event(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"
)
RESPONSES_PREAMBLE = (
    _event({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}})
    + _event({"type": "response.in_progress", "response": {"id": "r1"}})
    + _event(
        {
            "type": "response.output_item.added",
            "item": {"type": "message", "role": "assistant", "content": []},
        }
    )
    + _event(
        {
            "type": "response.content_part.added",
            "part": {"type": "output_text", "text": "", "annotations": []},
        }
    )
)
RESPONSES_FAILED = _event(
    {
        "type": "response.failed",
        "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}},
    },
    "response.failed",
)
CHAT_ROLE = _event(
    {
        "object": "chat.completion.chunk",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
)
CHAT_TEXT = _event(
    {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    }
)
CHAT_ERROR = _event({"error": {"message": "Provider returned error", "code": 502}})


def scan(stream: bytes, *, chunk: int | None = None, limit: int = LIMIT) -> ScanResult:
    """Feed ``stream`` in pieces of ``chunk`` bytes (whole when ``None``), then end it."""
    scanner = PreambleScanner(limit)
    step = chunk or max(len(stream), 1)
    for start in range(0, len(stream), step):
        result = scanner.feed(stream[start : start + step])
        if result is not None:
            return result
    return scanner.eof()


def test_anthropic_text_delta_after_preamble_is_content() -> None:
    assert scan(ANTHROPIC_PREAMBLE + ANTHROPIC_DELTA).kind is ScanKind.CONTENT


def test_anthropic_overloaded_before_content_is_an_error() -> None:
    result = scan(ANTHROPIC_PREAMBLE + ANTHROPIC_OVERLOADED + ANTHROPIC_DELTA)
    assert result.kind is ScanKind.ERROR
    assert result.event == "error"
    assert json.loads(result.payload)["error"]["type"] == "overloaded_error"


def test_error_after_content_is_not_looked_at() -> None:
    assert scan(ANTHROPIC_DELTA + ANTHROPIC_OVERLOADED).kind is ScanKind.CONTENT


def test_anthropic_empty_tool_use_block_is_preamble() -> None:
    block = _event(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "get", "input": {}},
        },
        "content_block_start",
    )
    assert scan(block + ANTHROPIC_OVERLOADED).kind is ScanKind.ERROR


def test_content_block_start_with_text_is_content() -> None:
    block = _event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}
    )
    assert scan(block + ANTHROPIC_OVERLOADED).kind is ScanKind.CONTENT


def test_responses_failed_after_lifecycle_events_is_an_error() -> None:
    result = scan(RESPONSES_PREAMBLE + RESPONSES_FAILED)
    assert result.kind is ScanKind.ERROR
    assert result.event == "response.failed"


def test_responses_error_type_without_event_name_is_an_error() -> None:
    error = _event({"type": "error", "code": "server_error", "message": "boom"})
    assert scan(RESPONSES_PREAMBLE + error).kind is ScanKind.ERROR


def test_responses_text_delta_is_content() -> None:
    delta = _event({"type": "response.output_text.delta", "delta": "Hi"})
    assert scan(RESPONSES_PREAMBLE + delta).kind is ScanKind.CONTENT


def test_chat_role_only_chunk_then_error_is_an_error() -> None:
    result = scan(CHAT_ROLE + CHAT_ERROR)
    assert result.kind is ScanKind.ERROR
    assert result.event is None


def test_chat_text_chunk_is_content() -> None:
    assert scan(CHAT_ROLE + CHAT_TEXT + CHAT_ERROR).kind is ScanKind.CONTENT


def test_chat_tool_call_chunk_is_content() -> None:
    tool = _event(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"name": "get"}}]},
                    "finish_reason": None,
                }
            ]
        }
    )
    assert scan(tool + CHAT_ERROR).kind is ScanKind.CONTENT


def test_chat_chunk_with_finish_reason_is_content() -> None:
    done = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert scan(done).kind is ScanKind.CONTENT


def test_openrouter_keepalive_comments_are_preamble() -> None:
    stream = b": OPENROUTER PROCESSING\n\n" * 3 + CHAT_ERROR
    assert scan(stream).kind is ScanKind.ERROR


def test_done_marker_is_content() -> None:
    assert scan(b"data: [DONE]\n\n").kind is ScanKind.CONTENT


def test_unknown_event_type_is_content() -> None:
    assert scan(_event({"type": "something.new"}) + CHAT_ERROR).kind is ScanKind.CONTENT


def test_bare_ping_event_without_data_is_preamble() -> None:
    assert scan(b"event: ping\n\n" + ANTHROPIC_OVERLOADED).kind is ScanKind.ERROR


def test_a_json_body_that_is_not_sse_is_content() -> None:
    assert scan(b'{"error": {"message": "nope"}}').kind is ScanKind.CONTENT


def test_binary_garbage_is_content() -> None:
    assert scan(bytes(range(256))).kind is ScanKind.CONTENT


def test_stream_of_only_preamble_ends() -> None:
    assert scan(ANTHROPIC_PREAMBLE).kind is ScanKind.END


def test_empty_stream_ends() -> None:
    assert PreambleScanner(LIMIT).eof().kind is ScanKind.END


def test_unterminated_error_event_at_eof_is_an_error() -> None:
    assert scan(ANTHROPIC_OVERLOADED.rstrip(b"\n")).kind is ScanKind.ERROR


def test_id_and_retry_fields_are_part_of_an_event_stream() -> None:
    stream = b"id: 7\nretry: 3000\n" + ANTHROPIC_OVERLOADED
    result = scan(stream)
    assert result.kind is ScanKind.ERROR
    assert json.loads(result.payload)["error"]["type"] == "overloaded_error"


def test_multi_line_data_is_joined_with_newlines() -> None:
    stream = b'event: error\ndata: {"type": "error",\ndata: "error": {"type": "api_error"}}\n\n'
    result = scan(stream)
    assert result.kind is ScanKind.ERROR
    assert result.payload == b'{"type": "error",\n"error": {"type": "api_error"}}'


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending_gives_the_same_result(newline: bytes) -> None:
    stream = (ANTHROPIC_PREAMBLE + ANTHROPIC_OVERLOADED).replace(b"\n", newline)
    result = scan(stream)
    assert result.kind is ScanKind.ERROR
    assert json.loads(result.payload)["error"]["type"] == "overloaded_error"


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    stream = (b": keep\n\n" + ANTHROPIC_OVERLOADED).replace(b"\n", b"\r\n")
    assert scan(stream, chunk=1) == scan(stream)


def test_byte_by_byte_feeding_gives_the_same_result() -> None:
    stream = RESPONSES_PREAMBLE + RESPONSES_FAILED
    assert scan(stream, chunk=1) == scan(stream)


def test_leading_byte_order_mark_is_ignored() -> None:
    assert scan(b"\xef\xbb\xbf" + ANTHROPIC_OVERLOADED).kind is ScanKind.ERROR


def test_ten_mebibytes_without_a_newline_stops_at_the_limit() -> None:
    scanner = PreambleScanner(LIMIT)
    result = scanner.feed(b"x" * (10 * 1024 * 1024))
    assert result is not None
    assert result.kind is ScanKind.CONTENT


def test_preamble_longer_than_the_limit_is_content() -> None:
    stream = b": keep-alive\n\n" * 100 + ANTHROPIC_OVERLOADED
    assert scan(stream, limit=200).kind is ScanKind.CONTENT


def test_error_completed_within_the_limit_wins_over_the_overflow() -> None:
    stream = ANTHROPIC_OVERLOADED + b"x" * 1000
    assert scan(stream, limit=len(ANTHROPIC_OVERLOADED)).kind is ScanKind.ERROR


def test_exactly_limit_bytes_of_preamble_keeps_holding() -> None:
    scanner = PreambleScanner(len(ANTHROPIC_PREAMBLE))
    assert scanner.feed(ANTHROPIC_PREAMBLE) is None
    assert scanner.feed(b":") == ScanResult(ScanKind.CONTENT)


def test_result_is_repeated_after_the_decision() -> None:
    scanner = PreambleScanner(LIMIT)
    first = scanner.feed(ANTHROPIC_OVERLOADED)
    assert first is not None
    assert scanner.feed(ANTHROPIC_DELTA) == first
    assert scanner.eof() == first


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        PreambleScanner(-1)


FRAGMENTS = st.sampled_from(
    [
        ANTHROPIC_PREAMBLE,
        ANTHROPIC_DELTA,
        ANTHROPIC_OVERLOADED,
        RESPONSES_PREAMBLE,
        RESPONSES_FAILED,
        CHAT_ROLE,
        CHAT_TEXT,
        CHAT_ERROR,
        b": keep-alive\n\n",
        b"\r\n",
        b"\r",
        b"data: [DONE]\n\n",
        b"event: ping\r\n\r\n",
    ]
)
STREAMS = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=8).map(b"".join)


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def _scan_chunks(chunks: list[bytes], limit: int) -> ScanResult:
    scanner = PreambleScanner(limit)
    for chunk in chunks:
        result = scanner.feed(chunk)
        if result is not None:
            return result
    return scanner.eof()


@given(STREAMS, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_result_does_not_depend_on_chunking(stream: bytes, cuts: list[int]) -> None:
    assert _scan_chunks(_split(stream, cuts), LIMIT) == scan(stream)


@given(STREAMS, st.lists(st.integers(min_value=0), max_size=12), st.integers(0, 400))
def test_result_with_a_small_limit_does_not_depend_on_chunking(
    stream: bytes, cuts: list[int], limit: int
) -> None:
    assert _scan_chunks(_split(stream, cuts), limit) == scan(stream, limit=limit)


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_scanner_never_raises_on_arbitrary_bytes(stream: bytes, chunk: int) -> None:
    assert isinstance(scan(stream, chunk=chunk), ScanResult)


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=97))
def test_feeding_preamble_past_the_limit_yields_content(limit: int, chunk: int) -> None:
    stream = b": keep-alive\n\nevent: ping\ndata: {}\n\n" * (limit // 10 + 2)
    assert len(stream) > limit
    assert scan(stream, chunk=chunk, limit=limit).kind is ScanKind.CONTENT


def test_an_error_event_of_a_session_stream_is_content_not_a_failed_start() -> None:
    # The openai Agents session stream: a turn's in-band error, then more session events.
    error = _event(
        {
            "type": "error",
            "event_id": "evt_1",
            "session_id": "sess_1",
            "error": {"type": "invalid_request_error", "message": "turn failed"},
        },
        "error",
    )
    idle = _event({"type": "agent.session.idle", "session_id": "sess_1"}, "agent.session.idle")
    for events in (error + idle, error.replace(b"event: error\n", b"") + idle):
        scanner = PreambleScanner(LIMIT)
        assert scanner.feed(events) == ScanResult(ScanKind.CONTENT)


def test_an_error_event_with_an_unreadable_payload_is_still_an_error() -> None:
    scanner = PreambleScanner(LIMIT)
    result = scanner.feed(b"event: error\ndata: upstream exploded\n\n")
    assert result == ScanResult(ScanKind.ERROR, b"upstream exploded", "error")
