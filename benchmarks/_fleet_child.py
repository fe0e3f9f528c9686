"""One replica of the pacing benchmark's fleet: callers sending through one limiter.

Run as ``python -m benchmarks._fleet_child UPSTREAM_URL MODE SECONDS CALLERS START_AT [REDIS_URL
NAME | REQUESTS PER]``. MODE is ``redis`` (a `RedisLimiter` on REDIS_URL, replicas sharing
NAME), ``alone`` (a `SharedLimiter` of its own, pacing from the headers alone) or ``split``
(a `SharedLimiter` with a declared `RateLimit` of REQUESTS per PER seconds, pacing from
headers off). The callers start at START_AT (epoch seconds, so the replicas start together)
and send one request after another for SECONDS; the replica prints one JSON line: its
successes, failures and when (epoch seconds) its last answer came.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import anyio
import httpx

from retry_transport import RateLimit, RetryTransport, SharedLimiter

KEY = "sk-bench-fleet"
BODY = json.dumps(
    {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def _limiter(mode: str, extra: list[str]) -> SharedLimiter:
    if mode == "redis":
        import redis

        from retry_transport.redis import RedisLimiter

        client = redis.Redis.from_url(extra[0])
        # A generous timeout: on a loaded 2-core machine a 100 ms one makes replicas pace alone.
        return RedisLimiter(client, name=extra[1], timeout=1.0)
    if mode == "alone":
        return SharedLimiter()
    requests, per = int(extra[0]), float(extra[1])
    return SharedLimiter(rate=RateLimit(requests=requests, per=per), pacing=False)


async def _run(
    url: str, limiter: SharedLimiter, seconds: float, callers: int, start: float
) -> dict[str, float]:
    counts = {"ok": 0.0, "failed": 0.0, "last": 0.0}
    transport = RetryTransport(httpx.AsyncHTTPTransport(), limiter=limiter)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60.0) as client:
        await anyio.sleep(max(0.0, start - time.time()))
        stop_at = time.monotonic() + seconds

        async def caller() -> None:
            while time.monotonic() < stop_at:
                try:
                    with anyio.fail_after(max(0.1, stop_at - time.monotonic() + 5.0)):
                        response = await client.post(
                            "/v1/chat/completions", content=BODY, headers=headers
                        )
                    good = response.status_code == 200
                except Exception:
                    good = False
                counts["ok" if good else "failed"] += 1
                counts["last"] = time.time()

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)
    return counts


def main(argv: list[str]) -> None:
    url, mode, seconds, callers, start, *extra = argv
    logging.getLogger("retry_transport").setLevel(logging.ERROR)  # give-ups are expected here
    limiter = _limiter(mode, extra)
    counts = anyio.run(_run, url, limiter, float(seconds), int(callers), float(start))
    close = getattr(limiter, "close", None)
    if close is not None:
        close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
