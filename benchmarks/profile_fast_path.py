"""Where the success fast path of `RetryTransport` spends its time, line by line.

``python -m benchmarks.profile_fast_path`` (also run as part of ``benchmarks.run``).

Each statement of ``RetryTransport.handle_async_request``'s fast path is timed alone with
`timeit` (best of several repeats) on the objects it sees in real use: a pre-built POST
request and a 200 response freshly built by the inner transport, whose headers have not been
decoded yet (as an httpx network transport hands them over). The same is done for a cheaper
content-type probe, and the whole transport call is timed for the bare transport, a do-nothing
wrapper, `RetryTransport`, `RetryTransport` with that cheaper probe, and httpx-retries. A
cProfile run counts the function calls one fast-path request makes.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
import timeit
from collections.abc import Callable

import httpx
from httpx_retries import RetryTransport as HttpxRetriesTransport

from retry_transport import RetryTransport, SharedLimiter
from retry_transport._common import is_event_stream
from retry_transport.testing.upstream import openai_chat

from ._common import HTTPX_RETRIES_LLM, OPENAI_PATH, JSONObj, Progress

__all__ = ["main", "run"]

_CANNED = openai_chat("hello")
_BODY = _CANNED.body
_HEADERS = [*_CANNED.headers, ("content-length", str(len(_BODY)))]
_SSE = b"text/event-stream"


def _fresh() -> httpx.Response:
    return httpx.Response(200, headers=_HEADERS, stream=httpx.ByteStream(_BODY))


class _Fresh(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return _fresh()


class _Passthrough(httpx.AsyncBaseTransport):
    """The least a wrapper can do: await the inner transport."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)


def _best_ns(stmt: Callable[[], object], number: int, repeat: int = 7) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


_FRESH_BATCH = 100


def _best_ns_on_fresh(probe: Callable[[httpx.Response], object], number: int) -> float:
    """Nanoseconds per ``probe(response)`` on responses just built and not yet looked at.

    The responses are built outside the timed loop, in small batches (so they are still in
    the CPU caches, as a response just returned by a transport is); best batch.
    """
    best = float("inf")
    perf = time.perf_counter
    for _ in range(max(number // _FRESH_BATCH, 1)):
        responses = [_fresh() for _ in range(_FRESH_BATCH)]
        started = perf()
        for response in responses:
            probe(response)
        best = min(best, (perf() - started) / _FRESH_BATCH)
    return best * 1e9


def _line_costs(number: int) -> list[JSONObj]:
    """Nanoseconds per fast-path statement, measured alone."""
    transport = RetryTransport(_Fresh())
    limiter = transport.limiter
    assert isinstance(limiter, SharedLimiter)
    gate = limiter.fast_gate
    request = httpx.Request("POST", "http://upstream.invalid" + OPENAI_PATH, json={"a": 1})
    response = _fresh()
    byte_stream = httpx.ByteStream

    def on_fresh(probe: Callable[[httpx.Response], object]) -> float:
        return _best_ns_on_fresh(probe, number)

    def get_content_type(r: httpx.Response) -> object:
        return r.headers.get("content-type", "")

    def current_probe(r: httpx.Response) -> object:
        return is_event_stream(r.headers)

    costs: list[tuple[str, str, float]] = [
        (
            "_async.py",
            "type(request.stream) is self._byte_stream",
            _best_ns(lambda: type(request.stream) is byte_stream, number),
        ),
        (
            "_async.py",
            "gate.used < gate.limit (the limiter's fast-path gate)",
            _best_ns(lambda: gate.used < gate.limit, number),
        ),
        (
            "(removed)",
            "self._clock() (time.monotonic): the start a retry's history counted from, "
            "read before every send until the fast path stopped reading a clock",
            _best_ns(time.monotonic, number),
        ),
        (
            "_limiter.py",
            "limiter.try_admit(): the admission between runs of the gate (1 in up to 256)",
            _best_ns(limiter.try_admit, number),
        ),
        (
            "_async.py",
            "response.status_code < 400",
            _best_ns(lambda: response.status_code < 400, number),
        ),
        (
            "_common.py",
            "is_event_stream(response.headers): scans the raw header list, fresh response",
            on_fresh(current_probe),
        ),
        (
            "(rejected)",
            'response.headers.get("content-type", ""), fresh response '
            "(decodes every header once to pick Headers.encoding, then a list scan)",
            on_fresh(get_content_type),
        ),
        (
            "(rejected)",
            "  the same, headers already decoded (Headers.encoding cached)",
            _best_ns(lambda: response.headers.get("content-type", ""), number),
        ),
        ("(reference)", "building the fresh 200 response itself", _best_ns(_fresh, number)),
    ]
    return [{"where": where, "statement": what, "ns": round(ns, 1)} for where, what, ns in costs]


def _call_costs(calls: int) -> list[JSONObj]:
    """Nanoseconds per whole transport call, best of several batches, interleaved."""
    request = httpx.Request("POST", "http://upstream.invalid" + OPENAI_PATH, json={"a": 1})
    variants: list[tuple[str, httpx.AsyncBaseTransport]] = [
        ("bare inner transport", _Fresh()),
        ("do-nothing wrapper (await inner)", _Passthrough(_Fresh())),
        ("retry_transport", RetryTransport(_Fresh())),
        ("httpx-retries (default)", HttpxRetriesTransport(_Fresh())),
        (
            "httpx-retries (POST, 400, 529)",
            HttpxRetriesTransport(_Fresh(), retry=HTTPX_RETRIES_LLM),
        ),
    ]
    best = dict.fromkeys((name for name, _ in variants), float("inf"))

    async def batch(transport: httpx.AsyncBaseTransport) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(calls):
            await transport.handle_async_request(request)
        return (loop.time() - start) / calls * 1e9

    async def measure() -> None:
        for _ in range(9):
            for name, transport in variants:
                best[name] = min(best[name], await batch(transport))

    asyncio.run(measure())
    bare = best["bare inner transport"]
    return [
        {"variant": name, "ns": round(ns, 1), "added_ns": round(ns - bare, 1)}
        for name, ns in best.items()
    ]


def _call_counts() -> list[JSONObj]:
    """Python function calls one fast-path request makes, per transport (cProfile)."""
    request = httpx.Request("POST", "http://upstream.invalid" + OPENAI_PATH, json={"a": 1})
    rows: list[JSONObj] = []
    variants: list[tuple[str, httpx.AsyncBaseTransport]] = [
        ("bare inner transport", _Fresh()),
        ("retry_transport", RetryTransport(_Fresh())),
        (
            "httpx-retries (POST, 400, 529)",
            HttpxRetriesTransport(_Fresh(), retry=HTTPX_RETRIES_LLM),
        ),
    ]
    for name, transport in variants:

        async def many(transport: httpx.AsyncBaseTransport = transport) -> None:
            for _ in range(1000):
                await transport.handle_async_request(request)

        profile = cProfile.Profile()
        profile.runcall(asyncio.run, many())
        stats = pstats.Stats(profile)
        per_function = {
            f"{func[0].rsplit('/', 2)[-1]}:{func[1]}({func[2]})": calls
            for func, (_, calls, _, _, _) in stats.stats.items()  # type: ignore[attr-defined]
            if calls >= 1000
        }
        rows.append(
            {
                "variant": name,
                "calls_per_request": round(sum(per_function.values()) / 1000, 1),
                "functions": {k: v / 1000 for k, v in sorted(per_function.items())},
            }
        )
    return rows


def run(progress: Progress, *, quick: bool = False) -> JSONObj:
    """Line costs, whole-call costs and call counts of the fast path."""
    number = 20_000 if quick else 50_000
    progress("  timing each fast-path statement alone (timeit, best of 7)")
    lines = _line_costs(number)
    progress("  timing whole transport calls (best of 9 batches)")
    calls = _call_costs(2_000 if quick else 10_000)
    progress("  counting function calls (cProfile)")
    counts = _call_counts()
    return {"lines": lines, "calls": calls, "call_counts": counts}


def main() -> None:
    """Print the breakdown."""
    result = run(Progress())
    print("\nper statement (ns):")
    for line in result["lines"]:
        print(f"  {line['ns']:8.1f}  {line['where']:<14} {line['statement']}")
    print("\nwhole transport call (ns, best of 9 batches):")
    for call in result["calls"]:
        print(f"  {call['ns']:8.1f}  (+{call['added_ns']:6.1f})  {call['variant']}")
    print("\nPython function calls per request (cProfile):")
    for count in result["call_counts"]:
        print(f"  {count['calls_per_request']:6.1f}  {count['variant']}")
        for function, per in count["functions"].items():
            print(f"           {per:5.1f}  {function}")


if __name__ == "__main__":
    main()
