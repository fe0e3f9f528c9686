"""Edges of the drivers and their helpers: a slot that never comes, bodies closed unread,
replay streams closed early, hooks that are coroutines, headers of another library."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from retry_transport import (
    RetryEvent,
    RetryPolicy,
    RetryTransport,
    SharedLimiter,
    SyncRetryTransport,
)
from retry_transport._common import is_event_stream, safe_url
from retry_transport._io import sync_finish_iterator
from retry_transport._replay_async import AsyncReplay
from retry_transport._replay_sync import SyncReplay
from retry_transport.testing import ScriptedTransport, Step

from .transport_helpers import Sleeps

URL = "http://api.test/v1/chat/completions"
# A retry would follow the 503, but the deadline leaves too little time to wait for a slot.
POLICY = RetryPolicy(max_attempts=3, deadline=0.05)


@pytest.mark.anyio
async def test_async_a_slot_that_never_comes_ends_at_the_deadline() -> None:
    limiter = SharedLimiter(max_concurrency=1)
    limiter.acquire_slot_sync()  # held elsewhere for the whole test
    script = ScriptedTransport([503, 200])
    sleeps = Sleeps()
    transport = RetryTransport(script, policy=POLICY, limiter=limiter, sleep=sleeps)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.PoolTimeout, match="deadline"):
            await client.post(URL, json={})
    assert script.call_count == 0
    limiter.release_slot()


def test_sync_a_slot_that_never_comes_ends_at_the_deadline() -> None:
    limiter = SharedLimiter(max_concurrency=1)
    limiter.acquire_slot_sync()
    script = ScriptedTransport([503, 200])
    transport = SyncRetryTransport(script, policy=POLICY, limiter=limiter, sleep=Sleeps().sync)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.PoolTimeout):
        client.post(URL, json={})
    assert script.call_count == 0
    limiter.release_slot()


class Closing:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_a_response_closed_unread_is_closed_without_touching_a_body() -> None:
    response = Closing()
    await RetryTransport._close(response, None)
    assert response.closed


def test_a_sync_response_closed_unread_is_closed_without_touching_a_body() -> None:
    response = Closing()
    SyncRetryTransport._close(response, None)
    assert response.closed


def test_a_plain_iterator_needs_no_closing() -> None:
    chunks = iter([b"a", b"b"])
    sync_finish_iterator(chunks)
    assert list(chunks) == [b"a", b"b"]


class Original:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    async def aclose(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_async_replay_skips_empty_chunks_and_closes_unread() -> None:
    released: list[bool] = []
    replay = AsyncReplay(
        b"held", None, Original([b"", b"rest", b""]), lambda: released.append(True)
    )
    assert [chunk async for chunk in replay] == [b"held", b"rest"]
    unread_original = Original([b"x"])
    unread = AsyncReplay(b"", None, unread_original, lambda: released.append(True))
    await unread.aclose()
    assert unread_original.closed
    await unread.aclose()  # a second close releases nothing more
    assert released == [True]


def test_sync_replay_skips_empty_chunks_and_closes_unread() -> None:
    released: list[bool] = []
    replay = SyncReplay(b"held", None, Original([b"", b"rest"]), lambda: released.append(True))
    assert list(replay) == [b"held", b"rest"]
    unread_original = Original([b"x"])
    unread = SyncReplay(b"", None, unread_original, lambda: released.append(True))
    unread.close()
    assert unread_original.closed
    assert released == [True]


class PlainHeaders(dict[str, str]):
    """Headers of a library that keeps no raw list."""


def test_headers_without_a_raw_list_are_read_by_name() -> None:
    assert is_event_stream(PlainHeaders({"content-type": "Text/Event-Stream; charset=utf-8"}))  # type: ignore[arg-type]
    assert not is_event_stream(PlainHeaders({"content-type": "application/json"}))  # type: ignore[arg-type]
    assert not is_event_stream(PlainHeaders())  # type: ignore[arg-type]


def test_an_ipv6_host_is_bracketed_in_the_logged_url() -> None:
    url = httpx.URL("https://user:pw@[::1]:8443/v1/x?key=secret")
    assert safe_url(url) == "https://[::1]:8443/v1/x"


def test_a_policy_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="policy"):
        SyncRetryTransport(ScriptedTransport([200]), policy={"max_attempts": 2})  # type: ignore[arg-type]


def test_a_hook_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="hooks"):
        SyncRetryTransport(ScriptedTransport([200]), hooks=["print"])  # type: ignore[list-item]


def test_a_closed_file_body_cannot_be_rewound() -> None:
    import io

    from retry_transport._flavour import _file_rewind

    closed = io.BytesIO(b"body")
    closed.close()
    assert _file_rewind(closed) is None


def test_the_policy_given_is_the_policy_in_force() -> None:
    policy = RetryPolicy(max_attempts=2)
    assert SyncRetryTransport(ScriptedTransport([200]), policy=policy).policy is policy


# -- the fast path without pacing: a first attempt sent at once, no ticket ----------------------
# A limiter that does not pace admits even a transport's first request on the fast path.


def unpaced() -> SharedLimiter:
    return SharedLimiter(pacing=False)


@pytest.mark.anyio
async def test_async_a_first_attempt_failing_on_the_fast_path_is_retried() -> None:
    script = ScriptedTransport([Step.raising("ConnectError"), 200])
    sleeps = Sleeps()
    transport = RetryTransport(script, limiter=unpaced(), sleep=sleeps, random=lambda: 0.5)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(URL, json={})
    assert response.status_code == 200
    assert script.call_count == 2
    assert [(a.status, a.exception) for a in response.extensions["retry_history"]] == [
        (None, "ConnectError"),
        (200, None),
    ]
    assert len(sleeps.waits) == 1


def test_sync_a_first_attempt_failing_on_the_fast_path_is_retried() -> None:
    script = ScriptedTransport([Step.raising("ConnectError"), 200])
    sleeps = Sleeps()
    transport = SyncRetryTransport(script, limiter=unpaced(), sleep=sleeps.sync, random=lambda: 0.5)
    with httpx.Client(transport=transport) as client:
        response = client.post(URL, json={})
    assert response.status_code == 200
    assert script.call_count == 2
    assert [(a.status, a.exception) for a in response.extensions["retry_history"]] == [
        (None, "ConnectError"),
        (200, None),
    ]
    assert len(sleeps.waits) == 1


def test_sync_a_success_on_the_fast_path_without_pacing_is_returned_as_it_came() -> None:
    script = ScriptedTransport([Step(200, body=b"ok")])
    transport = SyncRetryTransport(script, limiter=unpaced())
    with httpx.Client(transport=transport) as client:
        response = client.get(URL)
    assert response.text == "ok"
    assert "retry_history" not in response.extensions  # never went through the machine


def test_sync_a_named_wait_without_pacing_blocks_the_shared_limiter() -> None:
    clock = Sleeps()
    limiter = SharedLimiter(pacing=False, clock=clock.clock, random=lambda: 0.0)
    events: list[RetryEvent] = []
    script = ScriptedTransport([Step(503, headers={"retry-after": "7"}), 200])
    transport = SyncRetryTransport(
        script,
        limiter=limiter,
        sleep=clock.sync,
        clock=clock.clock,
        random=lambda: 0.5,
        hooks=[events.append],
    )
    with httpx.Client(transport=transport) as client:
        response = client.post(URL, json={})
    assert response.status_code == 200
    assert script.call_count == 2
    assert [event.blocked_for for event in events] == [7.0]  # the limiter's block
    assert clock.waits == [7.0]  # waited once, for the block


class Timeouts:
    """An inner transport that answers 200 and keeps each request's timeouts."""

    def __init__(self) -> None:
        self.seen: list[dict[str, float | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)


@pytest.mark.anyio
async def test_async_a_deadline_caps_the_fast_path_attempts_timeouts() -> None:
    inner = Timeouts()
    policy = RetryPolicy(deadline=2.5)
    transport = RetryTransport(httpx.MockTransport(inner), policy=policy, limiter=unpaced())
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10.0)) as client:
        await client.get(URL)
    assert inner.seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


def test_sync_a_deadline_caps_the_fast_path_attempts_timeouts() -> None:
    inner = Timeouts()
    policy = RetryPolicy(deadline=2.5)
    transport = SyncRetryTransport(httpx.MockTransport(inner), policy=policy, limiter=unpaced())
    with httpx.Client(transport=transport, timeout=httpx.Timeout(1.0, read=None)) as client:
        client.get(URL)
    assert inner.seen == [{"connect": 1.0, "read": 2.5, "write": 1.0, "pool": 1.0}]
