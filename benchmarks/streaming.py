"""Scenario 5: streaming. Memory while a large event stream passes through, and the time to
the first content event with and without the preamble hold.

Memory: the upstream streams an SSE response of a given size (a ``message_start`` event, then
16 KiB ``content_block_delta`` events generated lazily, so the server's memory stays flat
too); each variant downloads it in a fresh subprocess (`benchmarks._stream_child`) that
reports its peak resident set (VmHWM) before and after. Two sizes show whether the peak
grows with the size.

Latency: Anthropic's own event sequence (``message_start``, ``content_block_start``, ``ping``,
then the text deltas), sent without pauses; timed from the start of ``client.stream(...)`` to
the first chunk holding ``event: content_block_delta``. Variants interleaved request by
request; median and p95 over many repeats.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import httpx

from retry_transport import RetryPolicy, RetryTransport, SyncRetryTransport
from retry_transport.testing.upstream import Reply, Upstream, anthropic_message

from . import _stream_child
from ._common import ANTHROPIC_PATH, REPO, Config, JSONObj, Progress, median, percentile

__all__ = ["TTFC_VARIANTS", "run"]

_EVENT = 16 << 10
_PREAMBLE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01","type":'
    b'"message","role":"assistant","content":[],"model":"claude-sonnet-5"}}\n\n'
)
_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
_HEAD += b'{"type":"text_delta","text":"'
_TAIL = b'"}}\n\n'
_DELTA = _HEAD + b"x" * (_EVENT - len(_HEAD) - len(_TAIL)) + _TAIL
_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_MARK = b"event: content_block_delta"

TTFC_VARIANTS = ("bare", "retry_transport, peek_sse=True (hold)", "retry_transport, peek_sse=False")
_NO_PEEK = RetryPolicy(peek_sse=False)


def _events(size: int) -> Iterator[bytes]:
    yield _PREAMBLE
    sent = len(_PREAMBLE)
    while sent < size:
        yield _DELTA
        sent += len(_DELTA)
    yield _STOP  # a complete answer: the stream guard must find its final event


def _big_stream(size: int) -> Reply:
    return Reply(
        200,
        headers=(("content-type", "text/event-stream"), ("cache-control", "no-cache")),
        chunks=lambda: _events(size),
    )


def _memory(up: Upstream, config: Config, progress: Progress) -> list[JSONObj]:
    rows: list[JSONObj] = []
    for size in config.stream_sizes:
        path = f"/stream/{size}" + ANTHROPIC_PATH
        up.script(path, _big_stream(size))
        for variant in _stream_child.VARIANTS:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks._stream_child", variant, up.url + path],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"stream child {variant!r} failed:\n{done.stderr}")
            child = json.loads(done.stdout.strip().splitlines()[-1])
            row: JSONObj = {
                "variant": variant,
                "size_bytes": size,
                "bytes_read": child["bytes"],
                "content_seen": child["content_seen"],
                "seconds": child["seconds"],
                "mib_per_second": child["bytes"] / child["seconds"] / (1 << 20),
                "peak_rss_mib": child["hwm_after_kib"] / 1024,
                "peak_rss_growth_mib": (child["hwm_after_kib"] - child["hwm_before_kib"]) / 1024,
            }
            rows.append(row)
            progress(
                f"  {size >> 20} MiB, {variant}: peak RSS {row['peak_rss_mib']:.1f} MiB "
                f"(+{row['peak_rss_growth_mib']:.1f} while streaming), "
                f"{row['mib_per_second']:.0f} MiB/s"
            )
    return rows


async def _first_content_async(client: httpx.AsyncClient, url: str) -> float:
    first = -1.0
    buffer = b""
    started = time.perf_counter()
    async with client.stream("POST", url, json={"stream": True}) as response:
        async for chunk in response.aiter_raw():
            if first < 0:
                buffer += chunk
                if _MARK in buffer:
                    first = time.perf_counter() - started
    if first < 0:
        raise RuntimeError("no content event in the stream")
    return first


def _first_content_sync(client: httpx.Client, url: str) -> float:
    first = -1.0
    buffer = b""
    started = time.perf_counter()
    with client.stream("POST", url, json={"stream": True}) as response:
        for chunk in response.iter_raw():
            if first < 0:
                buffer += chunk
                if _MARK in buffer:
                    first = time.perf_counter() - started
    if first < 0:
        raise RuntimeError("no content event in the stream")
    return first


def _summary(samples: list[list[float]], repeats: int) -> JSONObj:
    rows: list[JSONObj] = []
    for name, values in zip(TTFC_VARIANTS, samples, strict=True):
        ms = [value * 1000 for value in values]
        rows.append({"variant": name, "median_ms": median(ms), "p95_ms": percentile(ms, 95)})
    hold, no_hold = rows[1], rows[2]
    return {
        "repeats": repeats,
        "variants": rows,
        "hold_cost_median_ms": hold["median_ms"] - no_hold["median_ms"],
        "hold_cost_p95_ms": hold["p95_ms"] - no_hold["p95_ms"],
    }


async def _latency_async(url: str, repeats: int) -> JSONObj:
    transports: list[httpx.AsyncBaseTransport] = [
        httpx.AsyncHTTPTransport(),
        RetryTransport(httpx.AsyncHTTPTransport()),
        RetryTransport(httpx.AsyncHTTPTransport(), policy=_NO_PEEK),
    ]
    clients = [httpx.AsyncClient(transport=t, timeout=30.0) for t in transports]
    samples: list[list[float]] = [[] for _ in clients]
    for client in clients:
        for _ in range(20):
            await _first_content_async(client, url)
    gc.collect()
    gc.disable()
    try:
        for round_ in range(repeats):
            for offset in range(len(clients)):
                index = (round_ + offset) % len(clients)
                samples[index].append(await _first_content_async(clients[index], url))
    finally:
        gc.enable()
    for client in clients:
        await client.aclose()
    return _summary(samples, repeats)


def _latency_sync(url: str, repeats: int) -> JSONObj:
    transports: list[httpx.BaseTransport] = [
        httpx.HTTPTransport(),
        SyncRetryTransport(httpx.HTTPTransport()),
        SyncRetryTransport(httpx.HTTPTransport(), policy=_NO_PEEK),
    ]
    clients = [httpx.Client(transport=t, timeout=30.0) for t in transports]
    samples: list[list[float]] = [[] for _ in clients]
    for client in clients:
        for _ in range(20):
            _first_content_sync(client, url)
    gc.collect()
    gc.disable()
    try:
        for round_ in range(repeats):
            for offset in range(len(clients)):
                index = (round_ + offset) % len(clients)
                samples[index].append(_first_content_sync(clients[index], url))
    finally:
        gc.enable()
    for client in clients:
        client.close()
    return _summary(samples, repeats)


def run(up: Upstream, config: Config, progress: Progress) -> JSONObj:
    """Memory per variant and size, then first-content latency, async and sync."""
    try:
        progress("  peak RSS while streaming (one subprocess per variant and size)")
        memory = _memory(up, config, progress)
        path = "/ttfc" + ANTHROPIC_PATH
        up.script(path, anthropic_message("a streamed answer in several words", stream=True))
        latency: JSONObj = {}
        progress(f"  time to first content event, async ({config.ttfc_repeats} repeats each)")
        latency["async"] = anyio.run(_latency_async, up.url + path, config.ttfc_repeats)
        progress(f"  time to first content event, sync ({config.ttfc_repeats} repeats each)")
        latency["sync"] = _latency_sync(up.url + path, config.ttfc_repeats)
        for mode, data in latency.items():
            progress(
                f"    {mode}: hold costs {data['hold_cost_median_ms'] * 1000:.0f} µs at the "
                f"median, {data['hold_cost_p95_ms'] * 1000:.0f} µs at p95"
            )
    finally:
        up.reset()
    return {
        "event_bytes": _EVENT,
        "sizes": list(config.stream_sizes),
        "memory": memory,
        "first_content": latency,
    }


def _child(variant: str, url: str) -> JSONObj:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._stream_child", variant, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stream child {variant!r} failed:\n{done.stderr}")
    result: JSONObj = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def guard_cost(up: Upstream, size: int, rounds: int, progress: Progress) -> JSONObj:
    """Throughput of each variant over ``rounds`` downloads of ``size`` bytes, the variants
    interleaved round by round (so that load on the machine hits them alike); the stream
    guard's cost is the median throughput with it against the median without it."""
    path = f"/guard/{size}" + ANTHROPIC_PATH
    up.script(path, _big_stream(size))
    rates: dict[str, list[float]] = {variant: [] for variant in _stream_child.VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in _stream_child.VARIANTS}
    peaks: dict[str, list[float]] = {variant: [] for variant in _stream_child.VARIANTS}
    for round_ in range(rounds):
        for offset in range(len(_stream_child.VARIANTS)):
            variant = _stream_child.VARIANTS[(round_ + offset) % len(_stream_child.VARIANTS)]
            child = _child(variant, up.url + path)
            rates[variant].append(child["bytes"] / child["seconds"] / (1 << 20))
            cpu[variant].append(child["cpu_seconds"] / (child["bytes"] / (1 << 30)))
            peaks[variant].append(child["hwm_after_kib"] / 1024)
        progress(f"  round {round_ + 1}/{rounds} done")
    rows = [
        {
            "variant": variant,
            "median_mib_per_second": median(rates[variant]),
            "samples": rates[variant],
            "median_cpu_seconds_per_gib": median(cpu[variant]),
            "cpu_samples": cpu[variant],
            "peak_rss_mib": max(peaks[variant]),
        }
        for variant in _stream_child.VARIANTS
    ]
    cost = {
        mode: 1.0
        - median(rates[f"retry_transport, {mode}"])
        / median(rates[f"retry_transport without the stream guard, {mode}"])
        for mode in ("async", "sync")
    }
    cpu_cost = {
        mode: median(cpu[f"retry_transport, {mode}"])
        / median(cpu[f"retry_transport without the stream guard, {mode}"])
        - 1.0
        for mode in ("async", "sync")
    }
    return {
        "size_bytes": size,
        "rounds": rounds,
        "variants": rows,
        "guard_cost": cost,
        "guard_cpu_cost": cpu_cost,
        "watcher_alone": watcher_alone(size),
    }


def watcher_alone(size: int) -> JSONObj:
    """CPU seconds the terminal-event watcher alone spends on ``size`` bytes of this stream,
    fed in 16 KiB and 64 KiB chunks (best of 3), without any network in the way."""
    from retry_transport._terminal import TerminalWatcher

    result: JSONObj = {}
    for chunk_size in (16 << 10, 64 << 10):
        chunk = (_DELTA * (chunk_size // len(_DELTA) + 1))[:chunk_size]
        count = size // chunk_size
        best = float("inf")
        for _ in range(3):
            watcher = TerminalWatcher()
            started = time.process_time()
            watcher.feed(_PREAMBLE)
            for _ in range(count):
                watcher.feed(chunk)
            watcher.feed(_STOP)
            missing = watcher.missing()
            best = min(best, time.process_time() - started)
            assert missing is None
        result[f"{chunk_size >> 10} KiB chunks"] = best
    return result


def main() -> None:
    """``python -m benchmarks.streaming [MiB] [ROUNDS]``: the stream guard's throughput cost
    (default: 1024 MiB, 5 rounds), printed as JSON."""
    size = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 1 << 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with Upstream() as up:
        result = guard_cost(up, size, rounds, lambda message: print(message, file=sys.stderr))
    for row in result["variants"]:
        print(
            f"{row['variant']:<50} {row['median_mib_per_second']:7.0f} MiB/s "
            f"(peak RSS {row['peak_rss_mib']:.1f} MiB)",
            file=sys.stderr,
        )
    for mode, cost in result["guard_cost"].items():
        cpu_cost = result["guard_cpu_cost"][mode]
        print(
            f"stream guard cost, {mode}: {cost * 100:+.1f}% throughput (median wall), "
            f"{cpu_cost * 100:+.1f}% client CPU per GiB (median)",
            file=sys.stderr,
        )
    for chunks, seconds in result["watcher_alone"].items():
        print(f"watcher alone, {chunks}: {seconds * 1000:.1f} ms CPU per stream", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
