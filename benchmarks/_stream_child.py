"""One streaming download in a process of its own, so its memory peak is its own.

``python -m benchmarks._stream_child VARIANT URL`` POSTs to URL, streams the whole response
through the variant's client, and prints one JSON line: bytes read, seconds, whether the
first content event was seen, and VmHWM (peak resident set) before and after, in KiB, and
the CPU seconds the client process spent (less sensitive than wall time to a loaded machine).
Imports nothing but httpx, anyio and retry_transport. The "no stream guard" variants switch
the terminal-event watcher off (the transport as it was before it), to measure what it costs.
"""

from __future__ import annotations

import json
import sys
import time

import anyio
import httpx

from retry_transport import RetryTransport, SyncRetryTransport

__all__ = ["VARIANTS", "main"]

VARIANTS = (
    "bare, async",
    "retry_transport, async",
    "retry_transport without the stream guard, async",
    "bare, sync",
    "retry_transport, sync",
    "retry_transport without the stream guard, sync",
)
_MARK = b"event: content_block_delta"


def _hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _stream_async(url: str, wrap: bool) -> tuple[int, bool]:
    inner = httpx.AsyncHTTPTransport()
    transport: httpx.AsyncBaseTransport = RetryTransport(inner) if wrap else inner
    size, seen = 0, False
    async with (
        httpx.AsyncClient(transport=transport, timeout=60.0) as client,
        client.stream("POST", url, json={"stream": True}) as response,
    ):
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            if not seen:
                seen = _MARK in chunk
            size += len(chunk)
    return size, seen


def _stream_sync(url: str, wrap: bool) -> tuple[int, bool]:
    inner = httpx.HTTPTransport()
    transport: httpx.BaseTransport = SyncRetryTransport(inner) if wrap else inner
    size, seen = 0, False
    with (
        httpx.Client(transport=transport, timeout=60.0) as client,
        client.stream("POST", url, json={"stream": True}) as response,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw():
            if not seen:
                seen = _MARK in chunk
            size += len(chunk)
    return size, seen


def main() -> None:
    """Run the variant named on the command line against the URL given."""
    variant, url = sys.argv[1], sys.argv[2]
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {VARIANTS}")
    wrap = variant.startswith("retry_transport")
    if "without the stream guard" in variant:
        import retry_transport._machine as machine

        machine.TerminalWatcher = lambda: None  # type: ignore[assignment,misc,return-value]
    before = _hwm_kib()
    started = time.perf_counter()
    cpu_started = time.process_time()
    if variant.endswith("async"):
        size, seen = anyio.run(_stream_async, url, wrap)
    else:
        size, seen = _stream_sync(url, wrap)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    result = {
        "cpu_seconds": cpu_seconds,
        "bytes": size,
        "seconds": seconds,
        "content_seen": seen,
        "hwm_before_kib": before,
        "hwm_after_kib": _hwm_kib(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
