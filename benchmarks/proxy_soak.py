"""Soak the sidecar: many concurrent streaming clients, faults on both sides, for minutes.

    .venv/bin/python -m benchmarks.proxy_soak --clients 200 --duration 150

The scripted upstream runs in this process; the sidecar runs in a child process
(`benchmarks._soak_child`: the app and uvicorn configuration of ``retry-transport proxy``,
plus a once-a-second line of its task count, open descriptors and resident memory). Each
client loops until the duration is up, each time picking one of:

- ``stream``: a streamed chat completion read to its end (about 1 s of events);
- ``vanish``: the same stream, left after its first chunk (the client goes away);
- ``reset``: the upstream resets the connection (TCP RST) after reading the request;
- ``drop``: the upstream drops the connection halfway through the stream;
- ``stall``: the upstream goes silent mid-stream, past the sidecar's read timeout;
- ``overloaded``: an overload error before the first content, then (on retry) the stream.

It checks, and prints as JSON: every request was answered (a status) or cut (a transport
error), none hung; after the clients stop, the sidecar's tasks and descriptors are back to
where they were before the load; its memory stayed flat; and its request and disconnect
counters add up to the requests the clients sent. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

from retry_transport.testing.upstream import Reply, Upstream, openai_chat, openai_chat_stream_error

__all__ = ["main"]

_KINDS = {"stream": 40, "vanish": 20, "reset": 10, "drop": 10, "stall": 10, "overloaded": 10}
_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": True}
_WORDS = " ".join(f"word{n}" for n in range(20))


def _stalling(chunks: tuple[bytes, ...], stall: float) -> Iterator[bytes]:
    yield from chunks[:3]
    time.sleep(stall)  # in the upstream's own connection thread: silent past the read timeout
    yield from chunks[3:]


def _script(upstream: Upstream, stall: float) -> None:
    stream = openai_chat(_WORDS, stream=True, chunk_delay=0.05)
    chunks = stream.chunks
    assert isinstance(chunks, tuple)
    sse = (("content-type", "text/event-stream"),)
    upstream.script("/v1/stream/chat/completions", stream)
    upstream.script("/v1/vanish/chat/completions", stream)
    upstream.script("/v1/reset/chat/completions", Reply(fault="reset"))
    upstream.script(
        "/v1/drop/chat/completions", Reply(200, headers=sse, chunks=chunks, fault="drop_mid_body")
    )
    upstream.script(
        "/v1/stall/chat/completions",
        Reply(200, headers=sse, chunks=lambda: _stalling(chunks, stall)),
    )
    # Overloaded before content on odd tries, the stream on even ones: a retry recovers it.
    overloaded = openai_chat_stream_error("role", message="Overloaded", code=529)
    upstream.script("/v1/overloaded/chat/completions", *([overloaded, stream] * 100_000))


class _Child:
    def __init__(self, upstream: str, directory: Path) -> None:
        self.status = directory / "status.jsonl"
        self.log = directory / "sidecar.log"
        argv = [
            *("--upstream", upstream, "--read-timeout", "1", "--max-attempts", "3"),
            *("--congestion-base", "0.05", "--transient-base", "0.05", "--log-level", "error"),
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._soak_child", str(self.status), *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30.0
        self.url = ""
        while not self.url:
            text = self.log.read_text()
            if "listening on " in text and self._answers(text):
                self.url = text.split("listening on ", 1)[1].split("/\n", 1)[0]
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar did not start:\n{text}")
            else:
                time.sleep(0.05)

    @staticmethod
    def _answers(text: str) -> bool:
        url = text.split("listening on ", 1)[1].split("/\n", 1)[0]
        try:
            httpx.get(f"{url}/_retry_transport/healthz").raise_for_status()
        except httpx.HTTPError:
            return False
        return True

    def samples(self) -> list[dict[str, int]]:
        lines = self.status.read_text().splitlines() if self.status.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


async def _client(
    base: str, end: float, rng: random.Random, outcomes: Counter[tuple[str, str]]
) -> None:
    kinds, weights = list(_KINDS), list(_KINDS.values())
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            url = f"{base}/v1/{kind}/chat/completions"
            try:
                async with client.stream("POST", url, json=_BODY) as response:
                    if kind == "vanish":
                        async for _ in response.aiter_raw():
                            break
                        outcome = "left"
                    else:
                        async for _ in response.aiter_raw():
                            pass
                        outcome = f"answered {response.status_code}"
            except httpx.TimeoutException:
                outcome = "hung"
            except httpx.TransportError:
                outcome = "cut"
            outcomes[kind, outcome] += 1


def _fifths(values: list[int]) -> list[list[int]]:
    size = max(1, len(values) // 5)
    return [values[start : start + size] for start in range(0, size * 5, size) if values[start:]]


def _metric_sum(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


async def _soak(clients: int, duration: float, stall: float) -> dict[str, object]:
    with Upstream() as upstream, tempfile.TemporaryDirectory() as directory:
        _script(upstream, stall)
        child = _Child(upstream.url, Path(directory))
        try:
            async with httpx.AsyncClient() as probe:
                await probe.post(f"{child.url}/v1/stream/chat/completions", json=_BODY)
            await asyncio.sleep(2.5)
            before = child.samples()[-1]
            rng = random.Random(15)
            outcomes: Counter[tuple[str, str]] = Counter()
            end = time.monotonic() + duration
            started = time.monotonic()
            await asyncio.gather(
                *(
                    _client(child.url, end, random.Random(rng.random()), outcomes)
                    for _ in range(clients)
                )
            )
            elapsed = time.monotonic() - started
            during = child.samples()
            # The sidecar finishes what the clients left (a stall ends at its read timeout).
            await asyncio.sleep(stall + 3.0)
            after = child.samples()[-1]
            async with httpx.AsyncClient() as probe:
                metrics = (await probe.get(f"{child.url}/_retry_transport/metrics")).text
        finally:
            exit_status = child.stop()
    sent = sum(outcomes.values()) + 1  # the warm-up request too
    counted = _metric_sum(metrics, "retry_transport_proxy_requests_total") + _metric_sum(
        metrics, "retry_transport_proxy_client_disconnects_total"
    )
    load = during[len(during) // 20 :]  # past the ramp-up
    rss = [sample["rss"] for sample in load]
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, outcome), count in sorted(outcomes.items()):
        by_kind.setdefault(kind, {})[outcome] = count
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": sent,
        "outcomes": by_kind,
        "hung": sum(count for (_, outcome), count in outcomes.items() if outcome == "hung"),
        "counted_by_metrics": counted,
        "metrics_add_up": counted == sent,
        "tasks": {
            "before": before["tasks"],
            "peak": max(s["tasks"] for s in during),
            "after": after["tasks"],
        },
        "fds": {
            "upstream_pool_after": after["upstream_sockets"],
            "before": before["fds"],
            "peak": max(s["fds"] for s in during),
            "after": after["fds"],
        },
        "rss_mib": {
            "before": round(before["rss"] / 2**20, 1),
            "median_by_fifth_of_the_load": [
                round(statistics.median(part) / 2**20, 1) for part in _fifths(rss)
            ],
            "peak": round(max(rss) / 2**20, 1),
            "after": round(after["rss"] / 2**20, 1),
        },
        "retries": _metric_sum(metrics, "retry_transport_retries_total"),
        "sidecar_exit_status": exit_status,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_soak")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of load")
    parser.add_argument("--stall", type=float, default=3.0, help="upstream mid-stream silence")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(_soak(args.clients, args.duration, args.stall))
        print(json.dumps(report, indent=2))
        ok = report["hung"] == 0 and report["metrics_add_up"] and report["sidecar_exit_status"] == 0
        return 0 if ok else 1
    return 130


if __name__ == "__main__":
    sys.exit(main())
