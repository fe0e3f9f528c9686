"""Scenario 2: one logical POST per flaky behaviour, through each client; attempts and time.

Every cell has a path of its own on the upstream, so the attempts it caused are counted
exactly. Jittered waits (the SDKs', retry_transport's) are drawn from Python's `random`
module, seeded per cell for reproducibility: one draw, not an average.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Literal

import anthropic
import anyio
import httpx
import httpx2
import openai

from retry_transport import RetryPolicy, RetryTransport
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_error,
    anthropic_stream_error,
    openai_error,
)

from ._common import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    Api,
    Config,
    JSONObj,
    Progress,
    anthropic_payload,
    anthropic_sdk,
    httpx_retries_default,
    httpx_retries_llm,
    openai_payload,
    openai_sdk,
    ours,
    raw_client,
    success_reply,
)

__all__ = ["COLUMNS", "ROWS", "run"]

Column = Literal[
    "bare",
    "openai SDK",
    "anthropic SDK",
    "httpx-retries (default)",
    "httpx-retries (POST, 400, 529)",
    "retry_transport",
]
COLUMNS: tuple[Column, ...] = (
    "bare",
    "openai SDK",
    "anthropic SDK",
    "httpx-retries (default)",
    "httpx-retries (POST, 400, 529)",
    "retry_transport",
)
_TRANSPORT_COLUMNS = frozenset(
    {"bare", "httpx-retries (default)", "httpx-retries (POST, 400, 529)", "retry_transport"}
)

_NIM_DEGRADED = Reply.json(
    400,
    {
        "status": 400,
        "title": "Bad Request",
        "detail": "Function id '87ea0ddc-cff1-4bca-bf8b-3bd98a35ddd0': "
        "DEGRADED function cannot be invoked",
    },
)
_CONTEXT_TOO_LONG = openai_error(
    400,
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 131072 tokens. Please reduce the length of the messages.",
    "invalid_request_error",
    "context_length_exceeded",
)
_QUOTA = openai_error(
    429,
    "You exceeded your current quota, please check your plan and billing details.",
    "insufficient_quota",
    "insufficient_quota",
)
_RATE_LIMITED = openai_error(
    429,
    "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500, Used 500.",
    "requests",
    "rate_limit_exceeded",
    headers=(("retry-after", "1"),),
)
_UNAVAILABLE = openai_error(503, "The server is overloaded or not ready yet.", "server_error")
_OVERLOADED = anthropic_error(529, "overloaded_error", "Overloaded")


@dataclass(frozen=True, slots=True)
class Row:
    """One flaky behaviour: the replies before the success (the last repeats if no success)."""

    key: str
    label: str
    api: Api
    """The provider the raw clients talk to (path, payload and success body)."""
    errors: tuple[Reply, ...]
    recovers: bool = True
    """Whether a success follows the errors (else the last error repeats forever)."""
    stream: bool = False
    sdk_on_top: Api | None = None
    """For the transport columns: call through this SDK (default max_retries) on top."""


ROWS: tuple[Row, ...] = (
    Row(
        "transient_400",
        'transient 400 x2, then 200 (NIM "DEGRADED function cannot be invoked")',
        "openai",
        (_NIM_DEGRADED, _NIM_DEGRADED),
    ),
    Row(
        "permanent_400",
        "permanent 400 (context_length_exceeded)",
        "openai",
        (_CONTEXT_TOO_LONG,),
        recovers=False,
    ),
    Row("quota_429", "429 insufficient_quota", "openai", (_QUOTA,), recovers=False),
    Row("retry_after_429", "429 with Retry-After: 1, then 200", "openai", (_RATE_LIMITED,)),
    Row("unavailable_503", "503 x2, then 200", "openai", (_UNAVAILABLE, _UNAVAILABLE)),
    Row("overloaded_529", "529 overloaded x2, then 200", "anthropic", (_OVERLOADED, _OVERLOADED)),
    Row("dropped", "dropped connection, then 200", "openai", (Reply(fault="drop"),)),
    Row(
        "sse_error",
        "200 SSE whose first event is overloaded_error, then a good stream",
        "anthropic",
        (anthropic_stream_error("nothing"),),
        stream=True,
    ),
    Row("outage", "outage (always 503)", "openai", (_UNAVAILABLE,), recovers=False),
    Row(
        "outage_openai",
        "outage (always 503), openai SDK (max_retries=2) on top",
        "openai",
        (_UNAVAILABLE,),
        recovers=False,
        sdk_on_top="openai",
    ),
    Row(
        "outage_anthropic",
        "outage (always 503), anthropic SDK (max_retries=2) on top",
        "anthropic",
        (anthropic_error(503, "api_error", "Service Unavailable"),),
        recovers=False,
        sdk_on_top="anthropic",
    ),
)

Call = Callable[[], Awaitable[str]]


async def _raw_call(client: httpx.AsyncClient | httpx2.AsyncClient, url: str, row: Row) -> str:
    payload = (
        openai_payload(stream=row.stream)
        if row.api == "openai"
        else anthropic_payload(stream=row.stream)
    )
    try:
        async with client.stream("POST", url, json=payload) as response:
            body = await response.aread()
    except (httpx.HTTPError, httpx2.HTTPError) as exc:
        return type(exc).__name__
    if row.stream and response.status_code == 200 and b"event: error" in body:
        return "200, error event"
    return str(response.status_code)


async def _openai_call(client: openai.AsyncOpenAI, row: Row) -> str:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hi"}
    ]
    try:
        await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    except openai.APIError as exc:
        return type(exc).__name__
    return "200"


async def _anthropic_call(client: anthropic.AsyncAnthropic, row: Row) -> str:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
    try:
        if row.stream:
            stream = await client.messages.create(
                model="claude-sonnet-5", max_tokens=64, messages=messages, stream=True
            )
            async for _ in stream:
                pass
        else:
            await client.messages.create(model="claude-sonnet-5", max_tokens=64, messages=messages)
    except anthropic.APIError as exc:
        return type(exc).__name__
    return "200"


async def _prepare(
    up: Upstream,
    row: Row,
    column: Column,
    prefix: str,
    path: str,
    policy: RetryPolicy,
    stack: AsyncExitStack,
) -> Call:
    """The clients of one cell, opened on ``stack``, and the call that makes its request."""
    if column in _TRANSPORT_COLUMNS and row.sdk_on_top is None:
        client = await stack.enter_async_context(raw_client(_transport(column, policy)))
        return lambda: _raw_call(client, up.url + path, row)
    if column in _TRANSPORT_COLUMNS and row.sdk_on_top == "openai":
        http_client = await stack.enter_async_context(raw_client(_transport(column, policy)))
        sdk = await stack.enter_async_context(openai_sdk(up.url + prefix, http_client))
        return lambda: _openai_call(sdk, row)
    if column in _TRANSPORT_COLUMNS:
        inner = httpx2.AsyncHTTPTransport()
        transport = inner if column == "bare" else RetryTransport(inner, policy=policy)
        client2 = httpx2.AsyncClient(transport=transport, timeout=30.0)
        http_client2 = await stack.enter_async_context(client2)
        asdk = await stack.enter_async_context(anthropic_sdk(up.url + prefix, http_client2))
        return lambda: _anthropic_call(asdk, row)
    if column == "openai SDK":
        sdk = await stack.enter_async_context(openai_sdk(up.url + prefix))
        return lambda: _openai_call(sdk, row)
    asdk = await stack.enter_async_context(anthropic_sdk(up.url + prefix))
    return lambda: _anthropic_call(asdk, row)


def _transport(column: Column, policy: RetryPolicy) -> httpx.AsyncBaseTransport:
    if column == "bare":
        return httpx.AsyncHTTPTransport()
    if column == "httpx-retries (default)":
        return httpx_retries_default()
    if column == "httpx-retries (POST, 400, 529)":
        return httpx_retries_llm()
    return ours(policy)


async def _cell(
    up: Upstream, row: Row, column: Column, prefix: str, policy: RetryPolicy
) -> JSONObj | None:
    """Run one cell; None where the column does not apply to the row."""
    api: Api
    if column in _TRANSPORT_COLUMNS:
        api = row.sdk_on_top or row.api
    elif column == "openai SDK":
        if row.stream or row.sdk_on_top == "anthropic":
            return None
        api = "openai"
    else:
        if row.sdk_on_top == "openai":
            return None
        api = "anthropic"
    if row.sdk_on_top == "anthropic" and column.startswith("httpx-retries"):
        return None  # httpx-retries wraps httpx transports only; anthropic needs httpx2
    path = prefix + (OPENAI_PATH if api == "openai" else ANTHROPIC_PATH)
    replies = row.errors + ((success_reply(api, stream=row.stream),) if row.recovers else ())
    up.script(path, *replies)

    async with AsyncExitStack() as stack:
        call = await _prepare(up, row, column, prefix, path, policy, stack)
        random.seed(f"{row.key}/{column}")
        started = time.perf_counter()
        outcome = await call()
        seconds = time.perf_counter() - started
    return {"attempts": up.count(path), "seconds": round(seconds, 3), "outcome": outcome}


async def _all(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    policy = config.policy()
    cells: JSONObj = {}
    for number, row in enumerate(ROWS):
        cells[row.key] = {}
        line: list[str] = []
        for index, column in enumerate(COLUMNS):
            cell = await _cell(up, row, column, f"/failures/{number}/{index}", policy)
            cells[row.key][column] = cell
            if cell is not None:
                line.append(f"{column}: {cell['attempts']}x/{cell['seconds']:.2f}s")
        progress(f"  {row.label}: " + "; ".join(line))
    return cells


def run(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    """Every row through every column."""
    try:
        cells = anyio.run(_all, up, config, progress)
    finally:
        up.reset()
    policy = config.policy()
    return {
        "columns": list(COLUMNS),
        "rows": [
            {"key": row.key, "label": row.label, "api": row.api, "sdk_on_top": row.sdk_on_top}
            for row in ROWS
        ],
        "cells": cells,
        "retry_transport_policy": {
            "congestion_backoff": [policy.congestion_backoff.base, policy.congestion_backoff.cap],
            "transient_backoff": [policy.transient_backoff.base, policy.transient_backoff.cap],
            "max_attempts": policy.max_attempts,
            "backoff_scale": config.backoff_scale,
        },
    }
