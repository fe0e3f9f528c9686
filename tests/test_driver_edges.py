"""Edges of the drivers and their helpers: a slot that never comes, bodies closed unread,
replay streams closed early, hooks that are coroutines, headers of another library."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from retry_transport import RetryPolicy, RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport._common import is_event_stream, safe_url
from retry_transport._io import sync_finish_iterator
from retry_transport._replay_async import AsyncReplay
from retry_transport._replay_sync import SyncReplay
from retry_transport.testing import ScriptedTransport

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
