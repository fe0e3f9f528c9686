"""Canned LLM provider answers: successes, error bodies and streams, as the SDKs parse them.

Every function returns a `Reply` to script on an `Upstream` (or to serve from anywhere else):
OpenAI chat completions and Responses, Anthropic Messages, Gemini ``generateContent``, and their
error shapes.
"""

from __future__ import annotations

import json as _json
import re
import time
import uuid
from collections.abc import Iterable
from typing import Literal, Protocol

from .wire import Reply

__all__ = [
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream_error",
    "gemini_error",
    "gemini_generate",
    "openai_chat",
    "openai_chat_stream_error",
    "openai_error",
    "openai_responses",
    "openai_responses_failed",
]

_SSE = "text/event-stream; charset=utf-8"


def _dumps(obj: object) -> str:
    return _json.dumps(obj, separators=(",", ":"))


def _new_id(prefix: str, size: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:size]


def _pieces(text: str) -> list[str]:
    """``text`` split the way a model streams it: word by word, spaces kept."""
    pieces: list[str] = re.findall(r"\s*\S+", text)
    tail = text[sum(map(len, pieces)) :]
    if tail:
        pieces[-1:] = [pieces[-1] + tail] if pieces else [tail]
    return pieces


def _openai_headers() -> tuple[tuple[str, str], ...]:
    return (("x-request-id", _new_id("req_", 32)), ("openai-processing-ms", "42"))


def _anthropic_headers() -> tuple[tuple[str, str], ...]:
    return (("request-id", _new_id("req_011", 21)),)


def openai_chat(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful OpenAI ``POST /v1/chat/completions`` answer saying ``text``.

    Streamed: a role chunk, one chunk per word, a ``finish_reason`` chunk, ``data: [DONE]``.
    """
    cid, created = _new_id("chatcmpl-", 29), int(time.time())
    words = _pieces(text)
    if not stream:
        return Reply.json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _chat_usage(len(words)),
                "service_tier": "default",
                "system_fingerprint": "fp_upstream",
            },
            _openai_headers(),
        )

    return Reply.sse(
        _chat_events(cid, created, model, words),
        headers=_openai_headers(),
        chunk_delay=chunk_delay,
        content_type=_SSE,
    )


def _chat_events(
    cid: str, created: int, model: str, words: list[str]
) -> list[tuple[str | None, str]]:
    def chunk(delta: dict[str, object], finish: str | None) -> tuple[str | None, str]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_upstream",
            "choices": [choice],
        }
        return None, _dumps(data)

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events.extend(chunk({"content": word}, None) for word in words)
    events.append(chunk({}, "stop"))
    events.append((None, "[DONE]"))
    return events


def _chat_usage(completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": 9,
        "completion_tokens": completion_tokens,
        "total_tokens": 9 + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_chat_stream_error(
    after: Literal["nothing", "role", "first_delta"] = "nothing",
    *,
    message: str = "Provider returned error",
    code: int | str = 502,
    model: str = "gpt-4o-mini",
) -> Reply:
    """A 200 chat completions stream that fails in band, as OpenAI-compatible routers do.

    A bare ``data: {"error": {"message": ..., "code": ...}}`` event comes first, after the
    role chunk, or after the first content chunk; the stream then ends without ``[DONE]``.
    """
    events = _chat_events(_new_id("chatcmpl-", 29), int(time.time()), model, ["hello", " there"])
    events = events[: {"nothing": 0, "role": 1, "first_delta": 2}[after]]
    events.append((None, _dumps({"error": {"message": message, "code": code}})))
    return Reply.sse(events, headers=_openai_headers(), content_type=_SSE)


def _response_object(
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, object]],
    usage: dict[str, object] | None,
    error: dict[str, object] | None = None,
) -> dict[str, object]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _responses_usage(output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9 + output_tokens,
    }


def openai_responses(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful OpenAI ``POST /v1/responses`` answer saying ``text``.

    Streamed: ``response.created``, ``response.in_progress``, the output item and content part
    opening, one ``response.output_text.delta`` per word, their closing events and
    ``response.completed``, each with its ``sequence_number``.
    """
    done, events = _responses_parts(text, model)
    if not stream:
        return Reply.json(200, done, _openai_headers())
    return Reply.sse(events, headers=_openai_headers(), chunk_delay=chunk_delay, content_type=_SSE)


_RESPONSES_PREAMBLE = 4
"""How many events of a Responses stream come before its first text delta."""


def _responses_parts(
    text: str, model: str
) -> tuple[dict[str, object], list[tuple[str | None, str]]]:
    """The completed response object, and the numbered stream events saying ``text``."""
    rid, mid, created = _new_id("resp_", 48), _new_id("msg_", 48), int(time.time())
    words = _pieces(text)
    part: dict[str, object] = {
        "type": "output_text",
        "annotations": [],
        "logprobs": [],
        "text": text,
    }
    item: dict[str, object] = {
        "id": mid,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    done = _response_object(rid, created, model, "completed", [item], _responses_usage(len(words)))
    pending = _response_object(rid, created, model, "in_progress", [], None)
    where = {"item_id": mid, "output_index": 0, "content_index": 0}
    bodies: list[dict[str, object]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
    ]
    bodies.extend(
        {"type": "response.output_text.delta", **where, "delta": word, "logprobs": []}
        for word in words
    )
    bodies += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return done, _numbered(bodies)


def _numbered(bodies: list[dict[str, object]]) -> list[tuple[str | None, str]]:
    return [
        (str(body["type"]), _dumps({**body, "sequence_number": number}))
        for number, body in enumerate(bodies)
    ]


def openai_responses_failed(
    message: str = "An error occurred while processing your request.",
    *,
    code: str = "server_error",
    model: str = "gpt-4o-mini",
) -> Reply:
    """A 200 Responses stream that fails before its first output delta.

    ``response.created`` and ``response.in_progress``, then ``response.failed`` whose
    response has ``status: "failed"`` and ``error: {"code": code, "message": message}``.
    """
    rid, created = _new_id("resp_", 48), int(time.time())
    pending = _response_object(rid, created, model, "in_progress", [], None)
    error: dict[str, object] = {"code": code, "message": message}
    failed = _response_object(rid, created, model, "failed", [], None, error)
    bodies: list[dict[str, object]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {"type": "response.failed", "response": failed},
    ]
    return Reply.sse(_numbered(bodies), headers=_openai_headers(), content_type=_SSE)


def openai_error(
    status: int,
    message: str,
    type: str = "server_error",
    code: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """An OpenAI error: ``{"error": {"message", "type", "param": null, "code"}}``."""
    error = {"message": message, "type": type, "param": None, "code": code}
    return Reply.json(status, {"error": error}, (*_openai_headers(), *headers))


def _anthropic_usage(output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_events(
    text: str, model: str
) -> tuple[list[tuple[str, dict[str, object]]], list[tuple[str, dict[str, object]]]]:
    """An Anthropic stream saying ``text``, as (preamble events, content and closing events)."""
    words = _pieces(text)
    message: dict[str, object] = {
        "id": _new_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(1),
    }
    preamble: list[tuple[str, dict[str, object]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    rest: list[tuple[str, dict[str, object]]] = [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            },
        )
        for word in words
    ]
    rest += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return preamble, rest


def anthropic_message(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "claude-sonnet-5",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful Anthropic ``POST /v1/messages`` answer saying ``text``.

    Streamed: ``message_start``, ``content_block_start``, ``ping``, one
    ``content_block_delta`` per word, ``content_block_stop``, ``message_delta``,
    ``message_stop``.
    """
    if not stream:
        words = _pieces(text)
        return Reply.json(
            200,
            {
                "id": _new_id("msg_01", 22),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _anthropic_usage(len(words)),
            },
            _anthropic_headers(),
        )
    preamble, rest = _anthropic_events(text, model)
    return Reply.sse(
        [(name, _dumps(data)) for name, data in (*preamble, *rest)],
        headers=_anthropic_headers(),
        chunk_delay=chunk_delay,
        content_type=_SSE,
    )


def anthropic_error(
    status: int,
    type: str,
    message: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """An Anthropic error: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    own = _anthropic_headers()
    body = {"type": "error", "error": {"type": type, "message": message}, "request_id": own[0][1]}
    return Reply.json(status, body, (*own, *headers))


def anthropic_stream_error(
    after: Literal["nothing", "preamble", "first_delta"] = "nothing",
    *,
    error_type: str = "overloaded_error",
    message: str = "Overloaded",
    model: str = "claude-sonnet-5",
) -> Reply:
    """A 200 Anthropic stream whose ``event: error`` ends it.

    The error (``{"type": "error", "error": {"type": error_type, "message": message}}``)
    comes first (``"nothing"``), after ``message_start`` and ``ping`` (``"preamble"``), or
    after ``message_start``, ``content_block_start``, ``ping`` and a first text delta
    (``"first_delta"``).
    """
    preamble, rest = _anthropic_events("hello there", model)
    if after == "nothing":
        events: list[tuple[str, dict[str, object]]] = []
    elif after == "preamble":
        events = [preamble[0], preamble[2]]
    else:
        events = [*preamble, rest[0]]
    events.append(("error", {"type": "error", "error": {"type": error_type, "message": message}}))
    return Reply.sse(
        [(name, _dumps(data)) for name, data in events],
        headers=_anthropic_headers(),
        content_type=_SSE,
    )


def _gemini_usage(output_tokens: int) -> dict[str, object]:
    return {
        "promptTokenCount": 9,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": 9 + output_tokens,
    }


def _gemini_chunk(
    text: str, model: str, response_id: str, finish: str | None, output_tokens: int
) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": _gemini_usage(output_tokens),
        "modelVersion": model,
        "responseId": response_id,
    }


def _gemini_events(text: str, model: str) -> list[tuple[str | None, str]]:
    """A Gemini ``alt=sse`` stream saying ``text``: one chunk per word, the last one with
    ``finishReason: "STOP"`` (Gemini has no other terminal event)."""
    words = _pieces(text) or [""]
    rid = _new_id("", 22)
    last = len(words) - 1
    return [
        (None, _dumps(_gemini_chunk(w, model, rid, "STOP" if i == last else None, i + 1)))
        for i, w in enumerate(words)
    ]


def gemini_generate(
    text: str = "hello",
    *,
    stream: bool = False,
    model: str = "gemini-2.5-flash",
    chunk_delay: float = 0.0,
) -> Reply:
    """A successful Gemini ``generateContent`` answer saying ``text``, or with ``stream`` the
    ``streamGenerateContent?alt=sse`` one: ``data: {"candidates": [{"content": {"parts":
    [{"text": ...}]}, ...}]}`` per word, ``"finishReason": "STOP"`` on the last chunk."""
    if not stream:
        words = _pieces(text)
        body = _gemini_chunk(text, model, _new_id("", 22), "STOP", len(words))
        return Reply.json(200, body)
    return Reply.sse(_gemini_events(text, model), chunk_delay=chunk_delay, content_type=_SSE)


def gemini_error(
    status: int,
    message: str,
    status_name: str = "UNAVAILABLE",
    *,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """A Gemini error: ``{"error": {"code": status, "message", "status": status_name}}``
    (``RESOURCE_EXHAUSTED`` for a 429, ``UNAVAILABLE`` for a 503, ...)."""
    error = {"code": status, "message": message, "status": status_name}
    return Reply.json(status, {"error": error}, headers)


_GEMINI_ROUTE = re.compile(
    r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$"
)


class _CannedSuccess(Protocol):
    def __call__(self, text: str = ..., *, stream: bool = ..., model: str = ...) -> Reply: ...


def _canned(method: str, route: str, body: bytes) -> Reply:
    """The reply to an unscripted request."""
    gemini = _GEMINI_ROUTE.match(route) if method == "POST" else None
    if gemini is not None:
        stream = gemini.group(2) == "streamGenerateContent"
        return gemini_generate("hello", stream=stream, model=gemini.group(1))
    make = _LLM_DEFAULTS.get(route) if method == "POST" else None
    if make is None:
        return Reply.json(200, {"ok": True})
    try:
        request = _json.loads(body)
    except ValueError:
        request = None
    options: dict[str, object] = request if isinstance(request, dict) else {}
    model = options.get("model")
    stream = options.get("stream") is True
    if isinstance(model, str) and model:
        return make("hello", stream=stream, model=model)
    return make("hello", stream=stream)


_LLM_DEFAULTS: dict[str, _CannedSuccess] = {
    "/v1/chat/completions": openai_chat,
    "/v1/responses": openai_responses,
    "/v1/messages": anthropic_message,
}
