"""Scenario 4: a 429 storm. How many requests reach a rate-limiting upstream inside the
Retry-After window it named?

The upstream answers every request with ``429`` and ``Retry-After: 2`` until the window
closes, two seconds after the first (trigger) request reached it, and with a success from then
on. Once the trigger's 429 is back, ``storm_callers`` more callers, each with its own client
and transport, start one logical POST each, spread evenly over the window. Counted: requests
other than the trigger that reached the upstream inside the window.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio
import httpx
import openai

from retry_transport import RetryTransport, SharedLimiter
from retry_transport.testing.upstream import Upstream, openai_chat, openai_error

from ._common import (
    OPENAI_PATH,
    Config,
    JSONObj,
    Progress,
    httpx_retries_llm,
    openai_payload,
    openai_sdk,
    raw_client,
)

__all__ = ["RETRY_AFTER", "VARIANTS", "run"]

RETRY_AFTER = 2.0
_LIMITED = openai_error(
    429,
    "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500, Used 500.",
    "requests",
    "rate_limit_exceeded",
    headers=(("retry-after", f"{RETRY_AFTER:g}"),),
)
_FIRST_START = 0.05  # seconds after the trigger's 429 came back
_LAST_START = RETRY_AFTER - 0.1

VARIANTS = (
    "retry_transport, one SharedLimiter shared by every transport",
    "retry_transport, one transport shared by every caller",
    "retry_transport, each transport its own (default) limiter",
    "httpx-retries (POST, 400, 529), honours Retry-After",
    "openai SDK (max_retries=2), honours Retry-After",
)

Send = Callable[[], Awaitable[object]]


async def _senders(variant: str, base_url: str, count: int, stack: AsyncExitStack) -> list[Send]:
    url = base_url + OPENAI_PATH
    payload = openai_payload()
    if variant.startswith("openai SDK"):
        senders: list[Send] = []
        for _ in range(count):
            sdk = await stack.enter_async_context(openai_sdk(base_url))

            async def send_sdk(sdk: openai.AsyncOpenAI = sdk) -> object:
                try:
                    await sdk.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
                except openai.APIError as exc:
                    return exc
                return 200

            senders.append(send_sdk)
        return senders

    shared = SharedLimiter()
    clients: list[httpx.AsyncClient] = []
    if variant.startswith("retry_transport, one transport"):
        one = await stack.enter_async_context(raw_client(RetryTransport()))
        clients = [one] * count
    else:
        for _ in range(count):
            transport: httpx.AsyncBaseTransport
            if variant.startswith("httpx-retries"):
                transport = httpx_retries_llm()
            elif variant.startswith("retry_transport, one SharedLimiter"):
                transport = RetryTransport(limiter=shared)
            else:
                transport = RetryTransport()
            clients.append(await stack.enter_async_context(raw_client(transport)))

    def sender(client: httpx.AsyncClient) -> Send:
        async def send_raw() -> object:
            response = await client.post(url, json=payload)
            return response.status_code

        return send_raw

    return [sender(client) for client in clients]


async def _variant(up: Upstream, variant: str, prefix: str, config: Config) -> JSONObj:
    path = prefix + OPENAI_PATH
    up.script(path, _LIMITED)
    callers = config.storm_callers
    statuses: list[object] = []
    async with AsyncExitStack() as stack:
        senders = await _senders(variant, up.url + prefix, callers + 1, stack)

        async def trigger() -> None:
            send = senders[0]
            statuses.append(await send())

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(trigger)
            await anyio.to_thread.run_sync(lambda: up.wait_received(1, path, timeout=10.0))
            trigger_at = up.received(path)[0].at
            window_end = trigger_at + RETRY_AFTER
            lift = threading.Timer(
                max(window_end - time.monotonic(), 0.0), up.script, (path, openai_chat())
            )
            lift.start()
            # Let the trigger's 429 reach its transport before anyone else starts.
            await anyio.sleep(_FIRST_START)
            step = (_LAST_START - _FIRST_START) / max(callers - 1, 1)

            async def caller(number: int) -> None:
                await anyio.sleep(
                    max(trigger_at + _FIRST_START + number * step - time.monotonic(), 0)
                )
                statuses.append(await senders[number + 1]())

            for number in range(callers):
                group.start_soon(caller, number)
        lift.join()
        elapsed = time.monotonic() - started
    records = up.received(path)
    in_window = sum(1 for record in records[1:] if trigger_at < record.at < window_end)
    return {
        "variant": variant,
        "callers": callers,
        "requests_in_window": in_window,
        "upstream_requests": len(records),
        "successes": sum(1 for status in statuses if status == 200),
        "logical_requests": len(statuses),
        "seconds": round(elapsed, 2),
        "first_after_window_s": min(
            (record.at - window_end for record in records if record.at >= window_end),
            default=math.nan,
        ),
    }


def run(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    """Each variant in turn against the same rate-limiting upstream."""
    rows: list[JSONObj] = []
    try:
        for number, variant in enumerate(VARIANTS):
            random.seed(f"storm/{variant}")
            row = anyio.run(_variant, up, variant, f"/storm/{number}", config)
            progress(
                f"  {variant}: {row['requests_in_window']} requests inside the window, "
                f"{row['upstream_requests']} in all, {row['successes']}/"
                f"{row['logical_requests']} succeeded"
            )
            rows.append(row)
            up.reset()
    finally:
        up.reset()
    return {"callers": config.storm_callers, "retry_after": RETRY_AFTER, "variants": rows}
