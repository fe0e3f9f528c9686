"""The preamble scanner on odd shapes: parts that are not objects, lone CR line ends."""

from __future__ import annotations

import json

from retry_transport._sse import PreambleScanner, ScanKind


def _data(document: object) -> bytes:
    return f"data: {json.dumps(document)}\n\n".encode()


def test_a_content_block_that_is_not_an_object_is_content() -> None:
    scanner = PreambleScanner(65536)
    event = {"type": "content_block_start", "index": 0, "content_block": "text"}
    assert scanner.feed(_data(event)) is not None
    assert scanner.eof().kind is ScanKind.CONTENT


def test_a_chat_chunk_whose_choices_are_not_a_list_is_content() -> None:
    scanner = PreambleScanner(65536)
    result = scanner.feed(_data({"choices": "none"}))
    assert result is not None
    assert result.kind is ScanKind.CONTENT


def test_a_chat_chunk_whose_delta_is_not_an_object_is_content() -> None:
    scanner = PreambleScanner(65536)
    result = scanner.feed(_data({"choices": [{"index": 0, "delta": "hi"}]}))
    assert result is not None
    assert result.kind is ScanKind.CONTENT


def test_a_role_only_chat_chunk_is_held() -> None:
    scanner = PreambleScanner(65536)
    assert scanner.feed(_data({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})) is None


def test_data_that_is_json_but_not_an_object_is_content() -> None:
    scanner = PreambleScanner(65536)
    result = scanner.feed(b"data: [1, 2]\n\n")
    assert result is not None
    assert result.kind is ScanKind.CONTENT


def test_lone_cr_line_ends_split_across_chunks() -> None:
    scanner = PreambleScanner(65536)
    assert scanner.feed(b'data: {"type": "error", "error": {"type": "overloaded_error"}}\r') is None
    result = scanner.feed(b"\r")
    assert result is not None
    assert result.kind is ScanKind.ERROR
    assert b"overloaded_error" in result.payload
