"""The sidecar's upstream pools side by side: CPU per request in this process.

    .venv/bin/python -m benchmarks.pool [--requests 2000] [--rounds 10] [--concurrency 1]

The scripted upstream (`retry_transport.testing.upstream`, its canned OpenAI chat completion)
runs in a child process; this process sends ``POST /v1/chat/completions`` through each pool
(`retry_transport.proxy.pool.AiohttpTransport`, `retry_transport.proxy.wire.WireTransport`,
httpx's own transport) on the sidecar's event loop, reading each body to its end. Rounds
alternate between the pools (the order rotating), so that the machine's other load hits all
alike; the figure is this process's CPU time (user + system) per request, median over rounds,
and the wall time per request beside it (noisier: it includes the upstream's turn).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from retry_transport.proxy.pool import AiohttpTransport
from retry_transport.proxy.serving import fast_loop
from retry_transport.proxy.wire import WireTransport

__all__ = ["main"]

_UPSTREAM = """
import sys
from retry_transport.testing.upstream import Upstream
with Upstream() as up:
    print(up.url, flush=True)
    sys.stdin.read()
"""
_BODY = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'

_POOLS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "aiohttp": AiohttpTransport,
    "wire": WireTransport,
    "httpx": lambda: httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None)),
}


async def _round(
    transport: httpx.AsyncBaseTransport, url: httpx.URL, requests: int, concurrency: int
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per request over ``requests`` sent ``concurrency`` at once."""
    headers = [
        (b"Host", url.netloc),
        (b"Content-Type", b"application/json"),
        (b"Authorization", b"Bearer sk-test"),
        (b"Content-Length", str(len(_BODY)).encode()),
    ]
    timeout = {"connect": 5.0, "read": 60.0, "write": 60.0, "pool": 60.0}

    async def one() -> None:
        request = httpx.Request(
            "POST", url, headers=headers, content=_BODY, extensions={"timeout": timeout}
        )
        response = await transport.handle_async_request(request)
        try:
            async for _ in response.aiter_raw():
                pass
        finally:
            await response.aclose()
        assert response.status_code == 200, response.status_code

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    cpu, wall = time.process_time(), time.perf_counter()
    share = requests // concurrency
    await asyncio.gather(*(client(share) for _ in range(concurrency)))
    done = share * concurrency
    return (time.process_time() - cpu) / done, (time.perf_counter() - wall) / done


async def _run(args: argparse.Namespace, base: str) -> dict[str, tuple[list[float], list[float]]]:
    url = httpx.URL(f"{base}/v1/chat/completions")
    names = list(args.pools)
    transports = {name: _POOLS[name]() for name in names}
    figures: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    try:
        for name in names:  # warm up: connections made, code paths run
            await _round(transports[name], url, 200, args.concurrency)
        for index in range(args.rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                cpu, wall = await _round(transports[name], url, args.requests, args.concurrency)
                figures[name][0].append(cpu)
                figures[name][1].append(wall)
    finally:
        for transport in transports.values():
            await transport.aclose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per pool and round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1, help="requests at once")
    parser.add_argument("--pools", nargs="+", choices=sorted(_POOLS), default=list(_POOLS))
    args = parser.parse_args(argv)
    with subprocess.Popen(
        [sys.executable, "-c", _UPSTREAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as upstream:
        assert upstream.stdout is not None
        assert upstream.stdin is not None
        base = upstream.stdout.readline().decode().strip()
        loop = fast_loop()
        if loop == "uvloop":
            import uvloop

            figures = uvloop.run(_run(args, base))
        else:
            figures = asyncio.run(_run(args, base))
        upstream.stdin.close()
    print(
        f"{args.rounds} rounds x {args.requests} requests, {args.concurrency} at once, {loop} loop"
    )
    print("| pool | CPU µs per request (median of rounds) | min | wall µs per request |")
    print("|---|---:|---:|---:|")
    for name, (cpu, wall) in figures.items():
        print(
            f"| {name} | {statistics.median(cpu) * 1e6:.1f} | {min(cpu) * 1e6:.1f} "
            f"| {statistics.median(wall) * 1e6:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
