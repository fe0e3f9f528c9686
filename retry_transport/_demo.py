"""`python -m retry_transport demo`: the same flaky upstream, without and with RetryTransport.

An embedded upstream on 127.0.0.1 plays each scenario's script twice: once for a plain httpx
client, once for one whose transport is a `RetryTransport`. The table shows what the caller
got, how many requests reached the upstream and how long it took.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import anyio
import httpx

from ._async import RetryTransport
from ._backoff import Backoff
from ._policy import RetryPolicy
from .testing.upstream import (
    Reply,
    Upstream,
    anthropic_error,
    anthropic_message,
    anthropic_stream_error,
)

__all__ = ["DEMO_POLICY", "SCENARIOS", "Scenario", "run_demo"]

# Short waits so the demo finishes in seconds; the defaults are 2 s / 0.5 s bases.
DEMO_POLICY = RetryPolicy(
    congestion_backoff=Backoff(base=0.2, cap=2.0),
    transient_backoff=Backoff(base=0.1, cap=1.0),
)

_NIM_DEGRADED = {
    "status": 400,
    "title": "Bad Request",
    "detail": "Function id '87ea0ddc-cff1-4bca-bf8b-3bd98a35ddd0': "
    "DEGRADED function cannot be invoked",
}
_CONTEXT_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your "
        "messages resulted in 9100 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One flaky behaviour: the replies the upstream gives, in order.

    ``as_meant`` is said after the RetryTransport outcome of a scenario whose failure is the
    right answer (a request that no retry can fix).
    """

    name: str
    replies: Callable[[], Sequence[Reply]]
    stream: bool = False
    as_meant: str = ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "503 then 200",
        lambda: (anthropic_error(503, "api_error", "Service Unavailable"), anthropic_message()),
    ),
    Scenario(
        "429 with Retry-After: 1",
        lambda: (
            anthropic_error(429, "rate_limit_error", "slow down", headers=(("retry-after", "1"),)),
            anthropic_message(),
        ),
    ),
    Scenario("529 overloaded x2", lambda: (_overloaded(), _overloaded(), anthropic_message())),
    Scenario("dropped connection", lambda: (Reply(fault="drop"), anthropic_message())),
    Scenario(
        "NIM 'DEGRADED' 400 (transient)",
        lambda: (Reply.json(400, _NIM_DEGRADED), anthropic_message()),
    ),
    Scenario(
        "permanent 400 (context too long)",
        lambda: (Reply.json(400, _CONTEXT_TOO_LONG), anthropic_message()),
        as_meant="not retried: correct",
    ),
    Scenario(
        "stream: overloaded before content",
        lambda: (anthropic_stream_error("preamble"), anthropic_message(stream=True)),
        stream=True,
    ),
    Scenario(
        "streamed answer",
        lambda: (anthropic_message("a streamed answer", stream=True),),
        stream=True,
    ),
)


def _overloaded() -> Reply:
    return anthropic_error(529, "overloaded_error", "Overloaded")


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str
    attempts: int
    seconds: float


def _stream_outcome(body: bytes) -> str:
    for line in body.splitlines():
        if line.startswith(b"data:"):
            try:
                data = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("type") == "error":
                return f"200, stream failed: {data.get('error', {}).get('type', 'error')}"
    events = sum(line.startswith(b"event:") for line in body.splitlines())
    return f"200, stream ok ({events} events)"


async def _call(client: httpx.AsyncClient, url: str, stream: bool) -> str:
    payload = {"model": "claude-sonnet-5", "max_tokens": 64, "stream": stream, "messages": []}
    try:
        async with client.stream("POST", url, json=payload) as response:
            body = await response.aread()
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}"
    if stream and response.status_code == 200:
        return _stream_outcome(body)
    if response.status_code == 200:
        return "200 OK"
    return f"{response.status_code} {response.reason_phrase}".strip()


async def _run(up: Upstream, scenario: Scenario, path: str, retrying: bool) -> _Result:
    up.script(path, *scenario.replies())
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport()
    if retrying:
        transport = RetryTransport(transport, policy=DEMO_POLICY)
    started = time.perf_counter()
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
        outcome = await _call(client, up.url + path, scenario.stream)
    return _Result(outcome, up.count(path), time.perf_counter() - started)


async def _main(out: TextIO) -> None:
    with Upstream() as up:
        out.write(
            f"retry_transport demo: a deliberately flaky upstream at {up.url}\n"
            "each scenario runs twice, with a plain httpx client and through RetryTransport\n\n"
        )
        header = f"{'scenario':<34} | {'plain httpx':<37} {'tries':>5} {'time':>6} | "
        header += f"{'with RetryTransport':<37} {'tries':>5} {'time':>6}"
        out.write(header + "\n" + "-" * len(header) + "\n")
        for number, scenario in enumerate(SCENARIOS):
            plain = await _run(up, scenario, f"/plain/{number}/v1/messages", retrying=False)
            retried = await _run(up, scenario, f"/retry/{number}/v1/messages", retrying=True)
            if scenario.as_meant:
                retried = dataclasses.replace(
                    retried, outcome=f"{retried.outcome}, {scenario.as_meant}"
                )
            out.write(
                f"{scenario.name:<34} | {plain.outcome:<37} {plain.attempts:>5} "
                f"{plain.seconds:>5.2f}s | {retried.outcome:<37} {retried.attempts:>5} "
                f"{retried.seconds:>5.2f}s\n"
            )
        out.write(
            "\na permanent 400 is the one row meant to fail both ways: no retry can shorten a "
            "context that is too long,\nso RetryTransport hands the 400 back after one request "
            "instead of spending attempts and time on it.\n"
        )
        out.write(
            "backoffs shortened for the demo: "
            f"congestion base {DEMO_POLICY.congestion_backoff.base}s, "
            f"transient base {DEMO_POLICY.transient_backoff.base}s\n"
        )


def run_demo(out: TextIO) -> None:
    """Run every scenario and write the side-by-side table to ``out``."""
    anyio.run(_main, out)
