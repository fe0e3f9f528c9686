"""RedisLimiter under the real drivers: a fleet of processes, and a Redis server killed.

Each worker process has its own transport and its own `RedisLimiter` on the same name: the
sync driver, the async driver on asyncio (redis.asyncio client) and on trio (sync client in
a worker thread). One of them gets a 429 with ``Retry-After: 2``; no request from any process
reaches the upstream before that block lifts. Then: requests keep flowing, none slower than
the limiter's Redis timeout, while the Redis server is killed, restarted, frozen and thawed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
import redis.asyncio

from retry_transport import RetryTransport, SyncRetryTransport
from retry_transport.redis import RedisLimiter
from retry_transport.testing.upstream import Reply, Upstream

if TYPE_CHECKING:
    from tests.redis_fixtures import RedisServer

pytest_plugins = ["tests.redis_fixtures"]

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
LIMITED = "/v1/limited"
OTHER = "/v1/other"
RETRY_AFTER = 2.0
# The block is kept in whole milliseconds by the server's clock.
TOLERANCE = 0.005
# The limiters' Redis timeout in the fleet, whose server stays up: generous, so that a loaded
# machine is not taken for an outage (the default, 0.1 s, is for production).
LIVE_TIMEOUT = 5.0
# The timeout in the outage tests: a frozen server costs a request this long once; a live reply
# (before and after the outage) must still come within it.
OUTAGE_TIMEOUT = 0.5
# Wall-clock bound on one request while Redis is dead or frozen (the timeout and then some;
# redis-py's default retries alone would take 2.5-5 s).
BOUND = OUTAGE_TIMEOUT + 1.0


def worker() -> None:
    """A replica: ``<flavour> <redis url> <upstream url> <name> <path> <count>`` in argv.

    Builds its transport, prints ``ready``, waits for a line on stdin, sends ``count``
    requests to ``path`` one after another, and prints their statuses as JSON.
    """
    flavour, redis_url, upstream_url, name, path, count = sys.argv[1:7]
    url = upstream_url + path
    if flavour == "sync":
        _sync_worker(redis_url, url, name, int(count))
    else:
        import anyio

        anyio.run(_async_worker, redis_url, url, name, int(count), backend=flavour)


def _sync_worker(redis_url: str, url: str, name: str, count: int) -> None:
    import httpx

    from retry_transport import SyncRetryTransport
    from retry_transport.redis import RedisLimiter

    client = redis.Redis.from_url(redis_url)
    limiter = RedisLimiter(client, name=name, timeout=LIVE_TIMEOUT)
    with httpx.Client(transport=SyncRetryTransport(limiter=limiter)) as http:
        print("ready", flush=True)
        sys.stdin.readline()
        statuses = [http.post(url, json={}).status_code for _ in range(count)]
    limiter.close()
    client.close()
    print(json.dumps(statuses), flush=True)


async def _async_worker(redis_url: str, url: str, name: str, count: int) -> None:
    import anyio.to_thread
    import httpx
    import redis.asyncio

    from retry_transport import RetryTransport
    from retry_transport.redis import RedisLimiter

    on_asyncio = sys.argv[1] == "asyncio"
    client: redis.Redis | redis.asyncio.Redis = (
        redis.asyncio.Redis.from_url(redis_url) if on_asyncio else redis.Redis.from_url(redis_url)
    )
    limiter = RedisLimiter(client, name=name, timeout=LIVE_TIMEOUT)
    async with httpx.AsyncClient(transport=RetryTransport(limiter=limiter)) as http:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        statuses = [(await http.post(url, json={})).status_code for _ in range(count)]
    limiter.close()
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    else:
        client.close()
    print(json.dumps(statuses), flush=True)


def start_worker(
    flavour: str, server: RedisServer, upstream: Upstream, name: str, path: str, count: int
) -> subprocess.Popen[str]:
    code = "from tests.integration.test_redis_fleet import worker; worker()"
    args = [flavour, server.url, upstream.url, name, path, str(count)]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", f"worker did not start: {line!r}"


def go(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def statuses(process: subprocess.Popen[str]) -> list[int]:
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    result: list[int] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_429_in_one_process_holds_every_process_until_it_lifts(
    redis_server: RedisServer, upstream: Upstream
) -> None:
    name = f"fleet-{uuid.uuid4().hex}"
    upstream.script(
        LIMITED,
        Reply.json(429, {"error": {"message": "rate limited"}}, [("retry-after", "2")]),
        Reply.json(200, {"ok": True}),
    )
    leader = start_worker("sync", redis_server, upstream, name, LIMITED, 1)
    followers = [
        start_worker(flavour, redis_server, upstream, name, OTHER, 2)
        for flavour in ("asyncio", "trio", "sync")
    ]
    workers = [leader, *followers]
    raw = redis.Redis.from_url(redis_server.url)
    try:
        for process in workers:
            wait_ready(process)
        go(leader)
        upstream.wait_received(1, LIMITED, timeout=10)
        deadline = time.monotonic() + 5.0
        # The block is on the request's scope: this limiter's name, the origin, no key, no model.
        while not raw.keys(f"retry_transport:block:{name}|*"):
            assert time.monotonic() < deadline, "the leader never set the block"
            time.sleep(0.001)
        released_at = time.monotonic()
        for process in followers:
            go(process)
        assert statuses(leader) == [200]
        for process in followers:
            assert statuses(process) == [200, 200]
    finally:
        raw.close()
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()

    limited = upstream.received(LIMITED)
    others = upstream.received(OTHER)
    assert len(limited) == 2
    assert len(others) == 6
    lifts_at = limited[0].at + RETRY_AFTER
    assert limited[1].at >= lifts_at - TOLERANCE
    assert min(record.at for record in others) >= lifts_at - TOLERANCE
    # The followers were let go well inside the block: they really were held.
    assert lifts_at - released_at > 1.0


class FakeClock:
    """The limiter's clock, moved by hand to skip the retry interval."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``kind``: the redis-py client, on the event loops it works on."""
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", "kind"),
            [("asyncio", "sync"), ("trio", "sync"), ("asyncio", "async")],
            ids=["asyncio-sync", "trio-sync", "asyncio-async"],
        )


def retry_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "retry_transport" and r.levelno == level]


@pytest.mark.anyio
async def test_async_requests_keep_flowing_while_redis_is_killed_or_frozen(
    own_redis_server: RedisServer,
    upstream: Upstream,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    client: redis.Redis | redis.asyncio.Redis = (
        redis.asyncio.Redis.from_url(own_redis_server.url)
        if kind == "async"
        else redis.Redis.from_url(own_redis_server.url)
    )
    limiter = RedisLimiter(
        client, name=f"fault-{uuid.uuid4().hex}", clock=clock, timeout=OUTAGE_TIMEOUT
    )
    url = upstream.url + OTHER
    async with httpx.AsyncClient(transport=RetryTransport(limiter=limiter)) as http:

        async def timed_post() -> tuple[int, float]:
            started = time.monotonic()
            status = (await http.post(url, json={})).status_code
            return status, time.monotonic() - started

        results = [await timed_post()]
        own_redis_server.kill()
        results += [await timed_post() for _ in range(10)]
        own_redis_server.start()
        clock.now += 5.0
        results += [await timed_post() for _ in range(3)]
        own_redis_server.pause()
        try:
            results += [await timed_post() for _ in range(10)]
        finally:
            own_redis_server.resume()
        clock.now += 5.0
        results += [await timed_post() for _ in range(3)]
    limiter.close()
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    else:
        client.close()

    assert [status for status, _ in results] == [200] * 27
    assert max(elapsed for _, elapsed in results) < BOUND
    assert upstream.count(OTHER) == 27
    # One warning per outage (killed, then frozen), one recovery after each.
    assert len(retry_logs(caplog, logging.WARNING)) == 2
    assert len(retry_logs(caplog, logging.INFO)) == 2


def test_sync_requests_keep_flowing_while_redis_is_killed_or_frozen(
    own_redis_server: RedisServer, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retry_transport")
    clock = FakeClock()
    client = redis.Redis.from_url(own_redis_server.url)
    limiter = RedisLimiter(
        client, name=f"fault-{uuid.uuid4().hex}", clock=clock, timeout=OUTAGE_TIMEOUT
    )
    url = upstream.url + OTHER
    elapsed: list[float] = []
    with httpx.Client(transport=SyncRetryTransport(limiter=limiter)) as http:

        def post() -> int:
            started = time.monotonic()
            status = http.post(url, json={}).status_code
            elapsed.append(time.monotonic() - started)
            return status

        statuses = [post()]
        own_redis_server.kill()
        statuses += [post() for _ in range(10)]
        own_redis_server.start()
        clock.now += 5.0
        statuses += [post() for _ in range(3)]
        own_redis_server.pause()
        try:
            statuses += [post() for _ in range(10)]
        finally:
            own_redis_server.resume()
        clock.now += 5.0
        statuses += [post() for _ in range(3)]
    limiter.close()
    client.close()

    assert statuses == [200] * 27
    assert max(elapsed) < BOUND
    assert upstream.count(OTHER) == 27
    assert len(retry_logs(caplog, logging.WARNING)) == 2
    assert len(retry_logs(caplog, logging.INFO)) == 2
