"""Scenario 1: what a plain success costs through each transport.

Three modes, each async and sync: the whole ``client.post`` over an in-process
``httpx.MockTransport`` returning a canned 200 (no network), the same over a real loopback
connection to the upstream, and the transport call alone (``handle_async_request`` on a
pre-built request, the inner transport building a fresh 200 response) to isolate the
wrapper. Variants are interleaved request by request in rotating order, each request timed on
its own (wall clock and the calling thread's CPU time) with the garbage collector paused
inside a block; a block's medians give one estimate, and the median over blocks is reported.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx
from httpx_retries import RetryTransport as HttpxRetriesTransport

from retry_transport import RetryTransport, SyncRetryTransport
from retry_transport.testing.upstream import Upstream, openai_chat

from ._common import HTTPX_RETRIES_LLM, OPENAI_PATH, Config, JSONObj, Progress, median

__all__ = ["VARIANTS", "run"]

VARIANTS = ("bare", "retry_transport", "httpx-retries (default)", "httpx-retries (POST, 400, 529)")
_BARE = 0

_CANNED = openai_chat("hello")
_BODY = _CANNED.body
_HEADERS = [*_CANNED.headers, ("content-length", str(len(_BODY)))]
_PAYLOAD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
# A provider that reports its rate limits on every answer (as OpenAI, Anthropic, Azure and Groq
# do), with so much headroom left that nothing is ever paced: what reading them costs. Ample in
# level and in pace: 1000 requests used, refilled within 1 ms, allow about 1.9 million requests
# a second, above what the loop sends (one used of 1e9 allowed 22 thousand a second, below it,
# so the pacer rightly spaced the loop's requests).
_RATE_LIMITED_HEADERS = [
    *_HEADERS,
    ("x-ratelimit-limit-requests", "1000000000"),
    ("x-ratelimit-remaining-requests", "999999000"),
    ("x-ratelimit-reset-requests", "1ms"),
    ("x-ratelimit-limit-tokens", "1000000000000"),
    ("x-ratelimit-remaining-tokens", "999999000000"),
    ("x-ratelimit-reset-tokens", "1ms"),
]
HEADERS_MODE = "transport call async, rate-limit headers"
# The transport-only mode times calls in batches: one thread_time_ns() read is a system call
# costing about as much as the wrapper itself.
_BATCH = 16


def _canned(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers=_HEADERS, content=_BODY)


class _FreshAsync(httpx.AsyncBaseTransport):
    """Answers every request with a new 200 built as a network transport builds it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=_HEADERS, stream=httpx.ByteStream(_BODY))


class _FreshRateLimited(httpx.AsyncBaseTransport):
    """`_FreshAsync` with the provider's rate-limit headers on every 200."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=_RATE_LIMITED_HEADERS, stream=httpx.ByteStream(_BODY))


class _FreshSync(httpx.BaseTransport):
    """The sync twin of `_FreshAsync`."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=_HEADERS, stream=httpx.ByteStream(_BODY))


def _async_variants(
    inner: Callable[[], httpx.AsyncBaseTransport],
) -> list[httpx.AsyncBaseTransport]:
    return [
        inner(),
        RetryTransport(inner()),
        HttpxRetriesTransport(inner()),
        HttpxRetriesTransport(inner(), retry=HTTPX_RETRIES_LLM),
    ]


def _sync_variants(inner: Callable[[], httpx.BaseTransport]) -> list[httpx.BaseTransport]:
    return [
        inner(),
        SyncRetryTransport(inner()),
        HttpxRetriesTransport(inner()),
        HttpxRetriesTransport(inner(), retry=HTTPX_RETRIES_LLM),
    ]


@dataclass(slots=True)
class _Samples:
    """Per-request times in nanoseconds, one list per variant."""

    wall: list[list[float]]
    cpu: list[list[float]]

    @classmethod
    def empty(cls, count: int) -> _Samples:
        return cls([[] for _ in range(count)], [[] for _ in range(count)])


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"overhead: expected 200, got {response.status_code}")


async def _async_block(clients: list[httpx.AsyncClient], url: str, rounds: int) -> _Samples:
    count = len(clients)
    samples = _Samples.empty(count)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            for offset in range(count):
                index = (round_ + offset) % count
                client = clients[index]
                c0 = cpu()
                w0 = wall()
                response = await client.post(url, json=_PAYLOAD)
                w1 = wall()
                c1 = cpu()
                _check(response)
                samples.wall[index].append(w1 - w0)
                samples.cpu[index].append(c1 - c0)
    finally:
        gc.enable()
    return samples


def _sync_block(clients: list[httpx.Client], url: str, rounds: int) -> _Samples:
    count = len(clients)
    samples = _Samples.empty(count)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            for offset in range(count):
                index = (round_ + offset) % count
                client = clients[index]
                c0 = cpu()
                w0 = wall()
                response = client.post(url, json=_PAYLOAD)
                w1 = wall()
                c1 = cpu()
                _check(response)
                samples.wall[index].append(w1 - w0)
                samples.cpu[index].append(c1 - c0)
    finally:
        gc.enable()
    return samples


async def _async_transport_block(
    transports: list[httpx.AsyncBaseTransport], request: httpx.Request, rounds: int
) -> _Samples:
    count = len(transports)
    samples = _Samples.empty(count)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            for offset in range(count):
                index = (round_ + offset) % count
                handle = transports[index].handle_async_request
                c0 = cpu()
                w0 = wall()
                for _ in range(_BATCH):
                    await handle(request)
                w1 = wall()
                c1 = cpu()
                samples.wall[index].append((w1 - w0) / _BATCH)
                samples.cpu[index].append((c1 - c0) / _BATCH)
    finally:
        gc.enable()
    return samples


def _sync_transport_block(
    transports: list[httpx.BaseTransport], request: httpx.Request, rounds: int
) -> _Samples:
    count = len(transports)
    samples = _Samples.empty(count)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            for offset in range(count):
                index = (round_ + offset) % count
                handle = transports[index].handle_request
                c0 = cpu()
                w0 = wall()
                for _ in range(_BATCH):
                    handle(request)
                w1 = wall()
                c1 = cpu()
                samples.wall[index].append((w1 - w0) / _BATCH)
                samples.cpu[index].append((c1 - c0) / _BATCH)
    finally:
        gc.enable()
    return samples


def _summarise(blocks: list[_Samples], requests: int) -> JSONObj:
    """Per variant: medians over blocks of the per-block medians, in microseconds."""
    rows: list[JSONObj] = []
    count = len(VARIANTS)
    wall_medians = [[median(block.wall[i]) / 1000 for block in blocks] for i in range(count)]
    cpu_medians = [[median(block.cpu[i]) / 1000 for block in blocks] for i in range(count)]
    for i, name in enumerate(VARIANTS):
        added_wall = [v - b for v, b in zip(wall_medians[i], wall_medians[_BARE], strict=True)]
        added_cpu = [v - b for v, b in zip(cpu_medians[i], cpu_medians[_BARE], strict=True)]
        us = median(wall_medians[i])
        rows.append(
            {
                "variant": name,
                "us_per_request": us,
                "requests_per_second": 1e6 / us,
                "cpu_us_per_request": median(cpu_medians[i]),
                "ratio_to_bare": us / median(wall_medians[_BARE]),
                "added_us": median(added_wall),
                "added_us_range": [min(added_wall), max(added_wall)],
                "added_cpu_us": median(added_cpu),
                "added_cpu_us_range": [min(added_cpu), max(added_cpu)],
            }
        )
    return {"requests_per_variant": requests, "blocks": len(blocks), "variants": rows}


async def _run_blocks(
    label: str,
    config: Config,
    progress: Progress,
    rounds: int,
    block: Callable[[], Awaitable[_Samples]],
    per_sample: int = 1,
) -> JSONObj:
    blocks: list[_Samples] = []
    for number in range(config.overhead_blocks):
        blocks.append(await block())
        if number in (0, config.overhead_blocks - 1) or number % 5 == 4:
            bare = median(blocks[-1].wall[_BARE]) / 1000
            ours = median(blocks[-1].wall[1]) / 1000
            progress(
                f"  {label}: block {number + 1}/{config.overhead_blocks} "
                f"(bare {bare:.1f} µs, retry_transport {ours:.1f} µs)"
            )
    return _summarise(blocks, config.overhead_blocks * rounds * per_sample)


async def _in_process_async(config: Config, progress: Progress) -> JSONObj:
    transports = _async_variants(lambda: httpx.MockTransport(_canned))
    clients = [httpx.AsyncClient(transport=t) for t in transports]
    url = "http://upstream.invalid" + OPENAI_PATH
    await _async_block(clients, url, 300)  # warm-up
    rounds = config.overhead_rounds_inprocess
    result = await _run_blocks(
        "in-process async", config, progress, rounds, lambda: _async_block(clients, url, rounds)
    )
    for client in clients:
        await client.aclose()
    return result


async def _loopback_async(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    transports = _async_variants(httpx.AsyncHTTPTransport)
    clients = [httpx.AsyncClient(transport=t) for t in transports]
    url = up.url + OPENAI_PATH
    await _async_block(clients, url, 100)
    rounds = config.overhead_rounds_loopback
    result = await _run_blocks(
        "loopback async", config, progress, rounds, lambda: _async_block(clients, url, rounds)
    )
    for client in clients:
        await client.aclose()
    return result


async def _transport_async(
    config: Config,
    progress: Progress,
    inner: Callable[[], httpx.AsyncBaseTransport] = _FreshAsync,
    label: str = "transport call async",
) -> JSONObj:
    transports = _async_variants(inner)
    request = httpx.Request("POST", "http://upstream.invalid" + OPENAI_PATH, json=_PAYLOAD)
    await _async_transport_block(transports, request, 100)
    rounds = config.overhead_rounds_transport
    return await _run_blocks(
        label,
        config,
        progress,
        rounds,
        lambda: _async_transport_block(transports, request, rounds),
        _BATCH,
    )


async def _sync_mode(
    label: str,
    config: Config,
    progress: Progress,
    rounds: int,
    block: Callable[[], _Samples],
    per_sample: int = 1,
) -> JSONObj:
    async def run_block() -> _Samples:
        return block()

    return await _run_blocks(label, config, progress, rounds, run_block, per_sample)


async def _all(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    modes: JSONObj = {}
    progress("  in-process (httpx.MockTransport, canned 200), async")
    modes["in-process async"] = await _in_process_async(config, progress)

    progress("  in-process (httpx.MockTransport, canned 200), sync")
    sync_clients = [
        httpx.Client(transport=t) for t in _sync_variants(lambda: httpx.MockTransport(_canned))
    ]
    url = "http://upstream.invalid" + OPENAI_PATH
    _sync_block(sync_clients, url, 300)
    rounds = config.overhead_rounds_inprocess
    modes["in-process sync"] = await _sync_mode(
        "in-process sync", config, progress, rounds, lambda: _sync_block(sync_clients, url, rounds)
    )
    for client in sync_clients:
        client.close()

    progress("  loopback (real HTTP/1.1 to the upstream), async")
    modes["loopback async"] = await _loopback_async(up, config, progress)

    progress("  loopback (real HTTP/1.1 to the upstream), sync")
    sync_clients = [httpx.Client(transport=t) for t in _sync_variants(httpx.HTTPTransport)]
    url = up.url + OPENAI_PATH
    _sync_block(sync_clients, url, 100)
    rounds = config.overhead_rounds_loopback
    modes["loopback sync"] = await _sync_mode(
        "loopback sync", config, progress, rounds, lambda: _sync_block(sync_clients, url, rounds)
    )
    for client in sync_clients:
        client.close()

    progress("  transport call only (no client; fresh 200 per call), async")
    modes["transport call async"] = await _transport_async(config, progress)

    progress("  transport call only, the 200s reporting rate limits (ample headroom), async")
    modes[HEADERS_MODE] = await _transport_async(config, progress, _FreshRateLimited, HEADERS_MODE)

    progress("  transport call only (no client; fresh 200 per call), sync")
    transports = _sync_variants(_FreshSync)
    request = httpx.Request("POST", "http://upstream.invalid" + OPENAI_PATH, json=_PAYLOAD)
    _sync_transport_block(transports, request, 100)
    rounds = config.overhead_rounds_transport
    modes["transport call sync"] = await _sync_mode(
        "transport call sync",
        config,
        progress,
        rounds,
        lambda: _sync_transport_block(transports, request, rounds),
        _BATCH,
    )
    return modes


def run(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    """Run every mode; the upstream answers the loopback mode's POSTs with a canned 200."""
    up.script(OPENAI_PATH, _CANNED)
    try:
        modes = anyio.run(_all, up, config, progress)
    finally:
        up.reset()
    return {
        "variants": list(VARIANTS),
        "method": (
            "POST of a small JSON body; variants interleaved request by request in rotating "
            "order; each request timed alone (transport-call mode: batches of "
            f"{_BATCH} calls); garbage collector paused inside a block; per block the "
            "median per variant; reported: the median over blocks"
        ),
        "modes": modes,
    }
