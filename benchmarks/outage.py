"""Scenario 3: outage amplification. Many callers, a dead upstream (always 503), a fixed time.

Each of ``outage_callers`` tasks sends one logical request after another through one shared
client until the window closes; then no new request starts and those in flight are followed
until they end or a cap passes (then they are cancelled, and counted as still pending). Every
logical request carries an ``x-bench-logical`` header, so each upstream request is attributed
to the logical request that caused it.

Amplification = upstream requests / logical requests started. A limiter that holds callers
back (retry_transport blocks every request sharing it after a 503) lowers the upstream load by
making callers wait, so latency and the requests still held when the cap passed are reported.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import httpx
import openai

from retry_transport import Limiter
from retry_transport.testing.upstream import Upstream, openai_error

from ._common import (
    OPENAI_PATH,
    Config,
    JSONObj,
    Progress,
    httpx_retries_default,
    httpx_retries_llm,
    median,
    openai_payload,
    openai_sdk,
    ours,
    percentile,
    raw_client,
)

__all__ = ["VARIANTS", "run"]

_DOWN = openai_error(503, "The server is overloaded or not ready yet.", "server_error")
_HEADER = "x-bench-logical"

VARIANTS = (
    "openai SDK (max_retries=2), bare transport",
    "httpx-retries (default)",
    "httpx-retries (POST, 400, 529)",
    "retry_transport (default policy and budget)",
    "openai SDK (max_retries=2) on retry_transport",
)

Send = Callable[[str], Awaitable[object]]


@dataclass(slots=True)
class _Tally:
    started: int = 0
    done: set[str] = field(default_factory=set)
    durations: list[float] = field(default_factory=list)


async def _sender(
    variant: str, base_url: str, stack: AsyncExitStack
) -> tuple[Send, Limiter | None]:
    """The variant's one-logical-request call, and retry_transport's limiter if it has one."""
    url = base_url + OPENAI_PATH
    payload = openai_payload()
    if variant.startswith("openai SDK"):
        http_client, limiter = None, None
        if variant.endswith("retry_transport"):
            transport = ours()
            limiter = transport.limiter
            http_client = await stack.enter_async_context(raw_client(transport))
        sdk = await stack.enter_async_context(openai_sdk(base_url, http_client))

        async def send_sdk(logical: str) -> object:
            try:
                return await sdk.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers={_HEADER: logical},
                )
            except openai.APIError as exc:
                return exc

        return send_sdk, limiter
    raw: httpx.AsyncBaseTransport
    if variant == "httpx-retries (default)":
        raw, limiter = httpx_retries_default(), None
    elif variant == "httpx-retries (POST, 400, 529)":
        raw, limiter = httpx_retries_llm(), None
    else:
        ours_transport = ours()
        raw, limiter = ours_transport, ours_transport.limiter
    client = await stack.enter_async_context(raw_client(raw))

    async def send_raw(logical: str) -> object:
        response = await client.post(url, json=payload, headers={_HEADER: logical})
        return response.status_code

    return send_raw, limiter


async def _variant(up: Upstream, variant: str, prefix: str, config: Config) -> JSONObj:
    path = prefix + OPENAI_PATH
    up.script(path, _DOWN)
    tally = _Tally()
    numbers = itertools.count()
    async with AsyncExitStack() as stack:
        send, limiter = await _sender(variant, up.url + prefix, stack)
        end = time.monotonic() + config.outage_seconds
        longest_block = 0.0

        async def caller() -> None:
            while (began := time.monotonic()) < end:
                logical = str(next(numbers))
                tally.started += 1
                await send(logical)
                tally.done.add(logical)
                tally.durations.append(time.monotonic() - began)

        async def watch_block() -> None:
            nonlocal longest_block
            assert limiter is not None
            while True:
                longest_block = max(longest_block, limiter.blocked_for())
                await anyio.sleep(0.05)

        drain_started, in_window = math.inf, 0
        with anyio.move_on_after(config.outage_seconds + config.outage_drain_cap):
            async with anyio.create_task_group() as group:
                callers = anyio.create_task_group()
                if limiter is not None:
                    group.start_soon(watch_block)
                async with callers:
                    for _ in range(config.outage_callers):
                        callers.start_soon(caller)
                    await anyio.sleep(config.outage_seconds)
                    in_window = up.count(path)
                    drain_started = time.monotonic()
                group.cancel_scope.cancel()
        drain = time.monotonic() - drain_started
    per_logical = Counter(record.header(_HEADER) for record in up.received(path))
    upstream = sum(per_logical.values())
    pending = tally.started - len(tally.done)
    done_attempts = sum(per_logical[logical] for logical in tally.done)
    return {
        "variant": variant,
        "logical_requests": tally.started,
        "upstream_requests": upstream,
        "amplification": upstream / tally.started if tally.started else math.nan,
        "completed": len(tally.done),
        "amplification_completed": done_attempts / len(tally.done) if tally.done else math.nan,
        "pending_at_cap": pending,
        "pending_never_sent": sum(
            1 for n in range(tally.started) if str(n) not in tally.done and not per_logical[str(n)]
        ),
        "upstream_requests_in_window": in_window,
        "upstream_per_second_in_window": in_window / config.outage_seconds,
        "logical_per_second": tally.started / config.outage_seconds,
        "latency_median_s": median(tally.durations),
        "latency_p95_s": percentile(tally.durations, 95),
        "latency_max_s": max(tally.durations, default=math.nan),
        "drain_seconds": round(drain, 2),
        "longest_block_s": longest_block if limiter is not None else None,
    }


def run(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    """Each variant in turn against the same always-503 upstream."""
    rows: list[JSONObj] = []
    try:
        for number, variant in enumerate(VARIANTS):
            random.seed(f"outage/{variant}")
            progress(f"  {variant}: {config.outage_callers} callers for {config.outage_seconds:g}s")
            row = anyio.run(_variant, up, variant, f"/outage/{number}", config)
            progress(
                f"    {row['logical_requests']} logical, {row['upstream_requests']} upstream: "
                f"{row['amplification']:.2f}x; {row['pending_at_cap']} still pending after "
                f"{row['drain_seconds']}s of drain"
            )
            rows.append(row)
            up.reset()
    finally:
        up.reset()
    return {
        "callers": config.outage_callers,
        "seconds": config.outage_seconds,
        "drain_cap_seconds": config.outage_drain_cap,
        "variants": rows,
    }
