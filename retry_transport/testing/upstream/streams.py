"""Provider streams that end well, end early or go silent: the stream faults, per protocol.

`stream_reply` builds one streamed answer of one protocol (Anthropic Messages, OpenAI chat
completions, OpenAI Responses, Gemini ``alt=sse``), whole or with a `StreamFault`:

- ``"stall_after_headers"``: ``200`` and the headers, then nothing until the client leaves.
- ``"pings_then_stall"``: ``pings`` keep-alives (Anthropic ``event: ping``, the others SSE
  comments), then nothing.
- ``"cut_before_content"``: the events that open the answer, then a clean end of the body with
  no content and no terminal event.
- ``"cut_mid_answer"``: the opening events and the first half of the content deltas, then a
  clean end with no terminal event (no ``message_stop``, no ``finish_reason`` and ``[DONE]``,
  no ``response.completed``, no ``finishReason``).
- ``"stall_mid_answer"``: as ``"cut_mid_answer"``, then nothing instead of the end.

A stall is the `Reply` fault ``"stall"``: the server sends nothing more until the client closes
the connection or the server stops, and `Upstream.wait_stalled` says when it has gone silent.

The clean variants (no ``fault``) that a stream reader must also accept: ``done=False`` (chat:
the stream ends right after the ``finish_reason`` chunk, without ``[DONE]``), ``usage=True``
(chat: a ``choices: []`` usage chunk after the finish chunk), ``trailing_keepalives`` (SSE
comments after the terminal event) and ``newline="\\r\\n"``.
"""

from __future__ import annotations

import json as _json
import time
from typing import Literal, TypeAlias, get_args

from .providers import (
    _RESPONSES_PREAMBLE,
    _SSE,
    _anthropic_events,
    _anthropic_headers,
    _chat_events,
    _chat_usage,
    _dumps,
    _gemini_events,
    _new_id,
    _openai_headers,
    _pieces,
    _responses_parts,
)
from .wire import Newline, Reply, sse_comment, sse_event

__all__ = [
    "STREAM_FAULTS",
    "STREAM_PATHS",
    "STREAM_PROTOCOLS",
    "StreamFault",
    "StreamProtocol",
    "stream_reply",
    "stream_request",
]

StreamProtocol: TypeAlias = Literal["anthropic", "openai_chat", "openai_responses", "gemini"]
"""A streaming wire protocol the upstream plays."""

StreamFault: TypeAlias = Literal[
    "stall_after_headers",
    "pings_then_stall",
    "cut_before_content",
    "cut_mid_answer",
    "stall_mid_answer",
]
"""A way for a stream to go wrong after its ``200`` (see the module docstring)."""

STREAM_PROTOCOLS: tuple[StreamProtocol, ...] = get_args(StreamProtocol)
"""Every `StreamProtocol`, for parametrised tests."""

STREAM_FAULTS: tuple[StreamFault, ...] = get_args(StreamFault)
"""Every `StreamFault`, for parametrised tests."""

STREAM_PATHS: dict[StreamProtocol, str] = {
    "anthropic": "/v1/messages",
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
    "gemini": "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
}
"""The path each protocol streams from (Gemini's wants ``?alt=sse`` as its query)."""

_MODELS: dict[StreamProtocol, str] = {
    "anthropic": "claude-sonnet-5",
    "openai_chat": "gpt-4o-mini",
    "openai_responses": "gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
}

_Event: TypeAlias = tuple[str | None, str]


def stream_request(protocol: StreamProtocol, model: str | None = None) -> dict[str, object]:
    """A JSON request body that asks ``protocol``'s endpoint (`STREAM_PATHS`) for a stream."""
    _check_protocol(protocol)
    model = model or _MODELS[protocol]
    if protocol == "anthropic":
        messages: list[object] = [{"role": "user", "content": "hi"}]
        return {"model": model, "max_tokens": 64, "stream": True, "messages": messages}
    if protocol == "openai_chat":
        return {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if protocol == "openai_responses":
        return {"model": model, "stream": True, "input": "hi"}
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def stream_reply(
    protocol: StreamProtocol,
    text: str = "one two three four",
    *,
    fault: StreamFault | None = None,
    pings: int = 3,
    done: bool = True,
    usage: bool = False,
    trailing_keepalives: int = 0,
    newline: Newline = "\n",
    model: str | None = None,
    chunk_delay: float = 0.0,
) -> Reply:
    """A ``200`` event stream of ``protocol`` saying ``text``, whole or broken by ``fault``.

    ``pings`` is how many keep-alives ``"pings_then_stall"`` sends. ``done`` and ``usage``
    shape the end of an ``"openai_chat"`` stream (see the module docstring; a `ValueError` for
    another protocol); ``trailing_keepalives`` SSE comments follow the terminal event of a
    whole stream; every line ends with ``newline``. ``text`` needs at least two words, so that
    ``"cut_mid_answer"`` cuts between two deltas.
    """
    _check_protocol(protocol)
    if fault is not None and fault not in STREAM_FAULTS:
        raise ValueError(f"fault must be one of {STREAM_FAULTS} or None, got {fault!r}")
    if newline not in ("\n", "\r\n"):
        raise ValueError(f"newline must be '\\n' or '\\r\\n', got {newline!r}")
    for name, value in (("pings", pings), ("trailing_keepalives", trailing_keepalives)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if protocol != "openai_chat" and (not done or usage):
        raise ValueError(f"done and usage shape openai_chat streams only, not {protocol}")
    if len(_pieces(text)) < 2:
        raise ValueError(f"text must have at least two words, got {text!r}")
    if fault is not None and trailing_keepalives:
        raise ValueError("trailing_keepalives: a broken stream has no terminal event to follow")

    preamble, content, ending = _parts(protocol, text, model or _MODELS[protocol], usage)
    if not done:
        ending = ending[:-1]  # the [DONE] line

    def encode(events: list[_Event]) -> list[bytes]:
        return [sse_event(name, data, newline=newline) for name, data in events]

    chunks: list[bytes]
    stall = fault in ("stall_after_headers", "pings_then_stall", "stall_mid_answer")
    if fault == "stall_after_headers":
        chunks = []
    elif fault == "pings_then_stall":
        if protocol == "anthropic":
            chunks = encode([("ping", _dumps({"type": "ping"}))] * pings)
        else:
            chunks = [sse_comment(newline=newline)] * pings
    elif fault == "cut_before_content":
        chunks = encode(preamble)
    elif fault in ("cut_mid_answer", "stall_mid_answer"):
        chunks = encode(preamble + content[: len(_pieces(text)) // 2])
    else:
        chunks = encode(preamble + content + ending)
        chunks += [sse_comment(newline=newline)] * trailing_keepalives
    headers = _anthropic_headers() if protocol == "anthropic" else _openai_headers()
    if protocol == "gemini":
        headers = ()
    headers = (("content-type", _SSE), ("cache-control", "no-cache"), *headers)
    return Reply(
        200,
        headers=headers,
        chunks=tuple(chunks),
        chunk_delay=chunk_delay,
        fault="stall" if stall else None,
    )


def _check_protocol(protocol: str) -> None:
    if protocol not in STREAM_PROTOCOLS:
        raise ValueError(f"protocol must be one of {STREAM_PROTOCOLS}, got {protocol!r}")


def _parts(
    protocol: StreamProtocol, text: str, model: str, usage: bool
) -> tuple[list[_Event], list[_Event], list[_Event]]:
    """``protocol``'s stream saying ``text`` as (opening events, content deltas, ending)."""
    words = len(_pieces(text))
    if protocol == "anthropic":
        opening, rest = _anthropic_events(text, model)
        events: list[_Event] = [(name, _dumps(data)) for name, data in (*opening, *rest)]
        return (
            events[: len(opening)],
            events[len(opening) : len(opening) + words],
            events[len(opening) + words :],
        )
    if protocol == "openai_chat":
        events = _chat_events(_new_id("chatcmpl-", 29), int(time.time()), model, _pieces(text))
        ending = events[1 + words :]
        if usage:
            finish = _json.loads(ending[0][1])
            ending.insert(1, (None, _dumps({**finish, "choices": [], "usage": _chat_usage(words)})))
        return events[:1], events[1 : 1 + words], ending
    if protocol == "openai_responses":
        _, events = _responses_parts(text, model)
        split = _RESPONSES_PREAMBLE
        return events[:split], events[split : split + words], events[split + words :]
    events = _gemini_events(text, model)
    return [], events[:-1], events[-1:]
