"""The drivers' stream guard with in-memory streams: what a failing 200 stream raises and
where, read errors after content, and the first-content deadline, async and sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import nullcontext
from typing import Any

import anyio
import httpx
import pytest

import retry_transport
from retry_transport import RetryPolicy, RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport.testing import no_waiting

from .transport_helpers import FakeClock, Sleeps

SSE = {"content-type": "text/event-stream"}
START = b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta",'
    b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
)
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
UNKNOWN = b": an opening comment, then nothing that names a protocol\n\n"
ONCE = RetryPolicy(max_attempts=1)


class AsyncBody(httpx.AsyncByteStream):
    """Yields ``chunks``, then raises ``error`` (or blocks for ever, or ends)."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None, block: bool = False):
        self.chunks, self.error, self.block = chunks, error, block
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.block:
            await anyio.sleep_forever()
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


class SyncBody(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes], error: Exception | None = None):
        self.chunks, self.error = chunks, error
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


def async_transport(
    bodies: list[AsyncBody], policy: RetryPolicy = ONCE, **options: Any
) -> RetryTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, stream=bodies.pop(0))

    return RetryTransport(httpx.MockTransport(handler), policy=policy, **options)


def sync_transport(
    bodies: list[SyncBody], policy: RetryPolicy = ONCE, **options: Any
) -> SyncRetryTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, stream=bodies.pop(0))

    return SyncRetryTransport(httpx.MockTransport(handler), policy=policy, **options)


async def async_read(transport: RetryTransport, path: str = "/v1/messages") -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="http://up") as client:
        response = await client.send(client.build_request("POST", path), stream=True)
        assert response.status_code == 200
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response


def sync_read(transport: SyncRetryTransport, path: str = "/v1/messages") -> httpx.Response:
    with httpx.Client(transport=transport, base_url="http://up") as client:
        response = client.send(client.build_request("POST", path), stream=True)
        assert response.status_code == 200
        try:
            response.read()
        finally:
            response.close()
    return response


# -- a 200 stream given up on before its content fails from its iteration ---------------------


@pytest.mark.anyio
async def test_async_a_read_timeout_before_content_is_raised_from_iteration() -> None:
    timeout = httpx.ReadTimeout("slow")
    limiter = SharedLimiter(max_concurrency=1)
    body = AsyncBody([START], timeout)
    transport = async_transport([body], limiter=limiter)
    with pytest.raises(httpx.ReadTimeout) as raised:
        await async_read(transport)
    assert raised.value is timeout
    assert body.closed
    assert limiter.acquire_slot_sync(timeout=0)  # the slot came back


def test_sync_a_read_timeout_before_content_is_raised_from_iteration() -> None:
    timeout = httpx.ReadTimeout("slow")
    limiter = SharedLimiter(max_concurrency=1)
    body = SyncBody([START], timeout)
    transport = sync_transport([body], limiter=limiter)
    with pytest.raises(httpx.ReadTimeout) as raised:
        sync_read(transport)
    assert raised.value is timeout
    assert body.closed
    assert limiter.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_async_a_failing_stream_sent_on_the_fast_path_fails_from_its_iteration() -> None:
    # Without pacing the first attempt goes on the fast path, holding no slot to give back.
    timeout = httpx.ReadTimeout("slow")
    body = AsyncBody([START], timeout)
    transport = async_transport([body], limiter=SharedLimiter(pacing=False))
    with pytest.raises(httpx.ReadTimeout) as raised:
        await async_read(transport)
    assert raised.value is timeout
    assert body.closed


def test_sync_a_failing_stream_sent_on_the_fast_path_fails_from_its_iteration() -> None:
    timeout = httpx.ReadTimeout("slow")
    body = SyncBody([START], timeout)
    transport = sync_transport([body], limiter=SharedLimiter(pacing=False))
    with pytest.raises(httpx.ReadTimeout) as raised:
        sync_read(transport)
    assert raised.value is timeout
    assert body.closed


@pytest.mark.anyio
async def test_async_a_drop_of_an_unknown_protocol_is_raised_as_it_came() -> None:
    drop = httpx.RemoteProtocolError("peer closed")
    transport = async_transport([AsyncBody([UNKNOWN], drop)])
    with pytest.raises(httpx.RemoteProtocolError) as raised:
        await async_read(transport, "/v1/threads/runs")
    assert raised.value is drop


def test_sync_a_drop_of_a_recognised_protocol_is_raised_as_it_came_noting_the_cut() -> None:
    drop = httpx.RemoteProtocolError("peer closed")
    transport = sync_transport([SyncBody([START], drop)])
    with pytest.raises(httpx.RemoteProtocolError) as raised:
        sync_read(transport)
    assert raised.value is drop
    assert any("message_stop" in note for note in drop.__notes__)


def test_sync_a_stream_ending_before_content_on_the_last_attempt_raises_truncated() -> None:
    transport = sync_transport([SyncBody([START])])
    with pytest.raises(retry_transport.StreamTruncated):
        sync_read(transport)


# -- read errors after content -----------------------------------------------------------------


@pytest.mark.anyio
async def test_async_read_errors_after_content_are_raised_as_they_came() -> None:
    drop = httpx.ReadError("reset")
    with pytest.raises(httpx.ReadError) as raised:
        await async_read(async_transport([AsyncBody([START, DELTA], drop)]))
    assert raised.value is drop
    assert drop.__notes__ == [
        "retry_transport: the Anthropic Messages stream ended without its final event "
        "(message_stop)"
    ]
    timeout = httpx.ReadTimeout("idle")
    with pytest.raises(httpx.ReadTimeout) as timed_out:
        await async_read(async_transport([AsyncBody([START, DELTA], timeout)]))
    assert timed_out.value is timeout


@pytest.mark.anyio
async def test_async_a_drop_after_the_final_event_is_raised_as_it_came() -> None:
    drop = httpx.ReadError("reset")
    with pytest.raises(httpx.ReadError) as raised:
        await async_read(async_transport([AsyncBody([START, DELTA, STOP], drop)]))
    assert raised.value is drop


def test_sync_read_errors_after_content() -> None:
    drop = httpx.ReadError("reset")
    with pytest.raises(httpx.ReadError) as raised:
        sync_read(sync_transport([SyncBody([START, DELTA], drop)]))
    assert raised.value is drop
    assert len(drop.__notes__) == 1
    after_stop = httpx.ReadError("reset")
    with pytest.raises(httpx.ReadError) as after:
        sync_read(sync_transport([SyncBody([START, DELTA, STOP], after_stop)]))
    assert after.value is after_stop
    assert not hasattr(after_stop, "__notes__")  # the stream had ended properly
    assert sync_read(sync_transport([SyncBody([START, DELTA, STOP])])).is_closed


# -- the first-content deadline ----------------------------------------------------------------


@pytest.mark.anyio
async def test_async_a_read_that_never_returns_is_abandoned_at_the_deadline() -> None:
    # The only test that lets real time pass: 10 ms, so that the race itself is exercised.
    policy = RetryPolicy(max_attempts=2, first_content_timeout=0.01)
    stalled = AsyncBody([START], block=True)
    sleeps = Sleeps()
    transport = async_transport([stalled, AsyncBody([START, DELTA, STOP])], policy, sleep=sleeps)
    response = await async_read(transport)
    assert [a.reason for a in response.extensions["retry_history"]] == [
        "stream stalled before its first content",
        "success",
    ]
    assert stalled.closed


@pytest.mark.anyio
async def test_async_the_overall_deadline_ends_a_stall_with_read_timeout() -> None:
    sleeps = Sleeps()

    def handler(request: httpx.Request) -> httpx.Response:
        sleeps.clock.now += 50  # the headers took that long
        return httpx.Response(200, headers=SSE, stream=AsyncBody([START, DELTA]))

    policy = RetryPolicy(deadline=40.0)
    transport = RetryTransport(
        httpx.MockTransport(handler), policy=policy, sleep=sleeps, clock=sleeps.clock
    )
    with pytest.raises(httpx.ReadTimeout, match="the deadline passed"):
        await async_read(transport)


def test_sync_a_request_without_timeouts_gets_the_first_content_bound() -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=SSE, stream=SyncBody([START, DELTA, STOP]))

    transport = SyncRetryTransport(httpx.MockTransport(handler))
    request = httpx.Request("POST", "http://up/v1/messages")
    request.extensions = {}
    response = transport.handle_request(request)
    assert isinstance(response.stream, httpx.SyncByteStream)
    assert b"".join(response.stream) == START + DELTA + STOP
    assert request.extensions["timeout"] == {"read": 120.0}


@pytest.mark.anyio
async def test_async_empty_chunks_after_the_preamble_are_skipped_and_watched_past() -> None:
    body = AsyncBody([START, DELTA, b"", STOP])
    response = await async_read(async_transport([body]))
    assert response.content == START + DELTA + STOP


def test_sync_empty_chunks_after_the_preamble_are_skipped_and_watched_past() -> None:
    response = sync_read(sync_transport([SyncBody([START, DELTA, b"", STOP])]))
    assert response.content == START + DELTA + STOP


# -- the fast path's own hold: a first attempt sent at once ----------------------------------
# Without pacing (and without a deadline) every first attempt goes on the fast path, which
# holds a 200 stream's preamble itself and hands the machine what it read if it must retry.

ERROR = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
    b'"message":"Overloaded"}}\n\n'
)


class TickingBody(AsyncBody):
    """An `AsyncBody` whose every chunk moves ``clock`` on by one second."""

    def __init__(self, chunks: list[bytes], clock: FakeClock) -> None:
        super().__init__(chunks)
        self.clock = clock

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.clock.now += 1.0
            yield chunk


@pytest.mark.anyio
async def test_async_the_fast_path_hands_back_a_stream_with_content_as_the_machine_would() -> None:
    clock = FakeClock()
    body = TickingBody([b"", START, b"", DELTA, STOP], clock)
    transport = async_transport([body], limiter=SharedLimiter(pacing=False), clock=clock)
    response = await async_read(transport)
    assert response.content == START + DELTA + STOP
    (attempt,) = response.extensions["retry_history"]
    assert (attempt.number, attempt.status, attempt.reason) == (1, 200, "success")
    assert attempt.elapsed == 4.0  # from the headers to the first content: four reads
    assert body.closed


def test_sync_the_fast_path_hands_back_a_stream_with_content() -> None:
    body = SyncBody([b"", START, b"", DELTA, STOP])
    transport = sync_transport([body], limiter=SharedLimiter(pacing=False))
    response = sync_read(transport)
    assert response.content == START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == ["success"]
    assert body.closed


@pytest.mark.anyio
async def test_async_an_error_event_read_on_the_fast_path_is_retried_by_the_machine() -> None:
    sleeps = Sleeps()
    failed = AsyncBody([START, ERROR])
    policy = RetryPolicy(max_attempts=2)
    transport = async_transport(
        [failed, AsyncBody([START, DELTA, STOP])],
        policy,
        limiter=SharedLimiter(pacing=False, clock=sleeps.clock),
        sleep=sleeps,
        clock=sleeps.clock,
    )
    response = await async_read(transport)
    assert response.content == START + DELTA + STOP
    history = response.extensions["retry_history"]
    assert [(a.verdict, a.reason) for a in history][1:] == [(None, "success")]
    assert history[0].verdict is retry_transport.Verdict.CONGESTION
    assert failed.closed
    assert len(sleeps.waits) == 1


def test_sync_a_stream_ending_before_content_on_the_fast_path_is_retried() -> None:
    sleeps = Sleeps()
    cut = SyncBody([START])
    transport = sync_transport(
        [cut, SyncBody([START, DELTA, STOP])],
        RetryPolicy(max_attempts=2),
        limiter=SharedLimiter(pacing=False),
        sleep=sleeps.sync,
    )
    response = sync_read(transport)
    assert response.content == START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == [
        "stream truncated before its first content",
        "success",
    ]
    assert cut.closed


@pytest.mark.anyio
async def test_async_a_stall_on_the_fast_path_raises_read_timeout_from_iteration() -> None:
    # A body that never sends its content against a first-content bound of a microsecond: the
    # bound passes first, whatever the machine's load (no wait is timed here).
    stalled = AsyncBody([START], block=True)
    policy = RetryPolicy(max_attempts=1, first_content_timeout=1e-6)
    transport = async_transport([stalled], policy, limiter=SharedLimiter(pacing=False))
    with pytest.raises(httpx.ReadTimeout, match="first_content_timeout"):
        await async_read(transport)
    assert stalled.closed


@pytest.mark.anyio
async def test_async_a_request_cancelled_while_its_stream_is_held_closes_it() -> None:
    waiting = anyio.Event()

    class Waiting(AsyncBody):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield START
            waiting.set()
            await anyio.sleep_forever()
            yield DELTA  # pragma: no cover - never reached: the read is cancelled

    body = Waiting([])
    transport = async_transport([body], limiter=SharedLimiter(pacing=False))
    async with anyio.create_task_group() as group:

        async def read() -> None:
            await async_read(transport)

        group.start_soon(read)
        await waiting.wait()
        group.cancel_scope.cancel()
    assert group.cancel_scope.cancelled_caught
    assert body.closed


@pytest.mark.anyio
async def test_async_the_fast_path_hands_back_a_preamble_past_the_hold_limit() -> None:
    body = AsyncBody([START, START, DELTA, STOP])
    policy = RetryPolicy(max_attempts=1, peek_limit=len(START) + 1)
    transport = async_transport([body], policy, limiter=SharedLimiter(pacing=False))
    response = await async_read(transport)
    assert response.content == START + START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == ["success"]


@pytest.mark.anyio
async def test_async_an_encoded_stream_on_the_fast_path_is_the_machines() -> None:
    import gzip

    encoded = gzip.compress(START + DELTA + STOP)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {**SSE, "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=AsyncBody([encoded]))

    transport = RetryTransport(httpx.MockTransport(handler), limiter=SharedLimiter(pacing=False))
    response = await async_read(transport)
    assert response.content == START + DELTA + STOP  # decoded by the client, as ever
    assert [a.reason for a in response.extensions["retry_history"]] == ["success"]


@pytest.mark.anyio
async def test_async_a_stream_ending_before_content_on_the_fast_path_is_retried() -> None:
    sleeps = Sleeps()
    cut = AsyncBody([START])
    transport = async_transport(
        [cut, AsyncBody([START, DELTA, STOP])],
        RetryPolicy(max_attempts=2),
        limiter=SharedLimiter(pacing=False),
        sleep=sleeps,
    )
    response = await async_read(transport)
    assert response.content == START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == [
        "stream truncated before its first content",
        "success",
    ]
    assert cut.closed


def test_sync_an_encoded_stream_on_the_fast_path_is_the_machines() -> None:
    import gzip

    encoded = gzip.compress(START + DELTA + STOP)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {**SSE, "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=SyncBody([encoded]))

    transport = SyncRetryTransport(
        httpx.MockTransport(handler), limiter=SharedLimiter(pacing=False)
    )
    response = sync_read(transport)
    assert response.content == START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == ["success"]


@pytest.mark.anyio
async def test_async_a_stream_built_in_memory_is_handed_back_whole() -> None:
    # MockTransport's `content=`: the body is all there; what was peeked is not read twice.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=START + DELTA + STOP)

    transport = RetryTransport(httpx.MockTransport(handler), limiter=SharedLimiter(pacing=False))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("http://up/v1/messages")
    assert response.content == START + DELTA + STOP
    assert [a.reason for a in response.extensions["retry_history"]] == ["success"]


def test_sync_a_stream_built_in_memory_is_handed_back_whole() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=START + DELTA + STOP)

    transport = SyncRetryTransport(
        httpx.MockTransport(handler), limiter=SharedLimiter(pacing=False)
    )
    with httpx.Client(transport=transport) as client:
        response = client.post("http://up/v1/messages")
    assert response.content == START + DELTA + STOP


PLAIN_EVENT = b'data: {"text":"hi"}\n\n'  # content, of no protocol the watcher knows


@pytest.mark.anyio
async def test_async_a_stream_of_no_known_protocol_passes_unwatched() -> None:
    # Its content came, so it is handed on; cut short, it is not called truncated.
    body = AsyncBody([UNKNOWN, PLAIN_EVENT])
    response = await async_read(async_transport([body], limiter=SharedLimiter(pacing=False)))
    assert response.content == UNKNOWN + PLAIN_EVENT


class Abort(BaseException):
    """Not an error a read may fail with: it goes on up (as a cancellation would)."""


def test_sync_a_base_exception_while_the_stream_is_held_closes_it() -> None:
    class Aborting(SyncBody):
        def __iter__(self) -> Iterator[bytes]:
            yield START
            raise Abort

    body = Aborting([])
    transport = sync_transport([body], limiter=SharedLimiter(pacing=False))
    with pytest.raises(Abort):
        sync_read(transport)
    assert body.closed


# -- what a reader may ask a watched stream: did it end with its final event ----------------
# (The sidecar asks, rather than look for the final event again in every chunk it passes on.)


async def _async_stream(body: AsyncBody) -> Any:
    transport = async_transport([body], limiter=SharedLimiter(pacing=False))
    response = await transport.handle_async_request(httpx.Request("POST", "http://up/v1/x"))
    stream: Any = response.stream
    try:
        async for _ in stream:
            pass
    except httpx.TransportError:
        pass
    await stream.aclose()
    return stream


@pytest.mark.anyio
async def test_async_a_watched_stream_tells_whether_it_ended_properly() -> None:
    whole = await _async_stream(AsyncBody([START, DELTA, STOP]))
    assert whole.watched
    assert whole.ended_properly()
    cut = await _async_stream(AsyncBody([START, DELTA], httpx.ReadError("reset")))
    assert cut.watched
    assert not cut.ended_properly()
    unknown = await _async_stream(AsyncBody([UNKNOWN, PLAIN_EVENT]))
    assert not getattr(unknown, "watched", False)


def test_sync_a_watched_stream_tells_whether_it_ended_properly() -> None:
    for chunks, whole in (([START, DELTA, STOP], True), ([START, DELTA], False)):
        transport = sync_transport([SyncBody(chunks)], limiter=SharedLimiter(pacing=False))
        response = transport.handle_request(httpx.Request("POST", "http://up/v1/x"))
        stream: Any = response.stream
        assert stream.watched
        with pytest.raises(retry_transport.StreamTruncated) if not whole else nullcontext():
            for _ in stream:
                pass
        stream.close()
        assert stream.ended_properly() is whole
    failed = sync_transport([SyncBody([START])])  # given up before content: raises at once
    given_up: Any = failed.handle_request(httpx.Request("POST", "http://up/v1/x")).stream
    assert not given_up.watched


# -- a GET's event stream: handed on at once ---------------------------------------------------
#
# A generation's stream answers a POST. A GET's event stream (an event subscription such as
# the Anthropic sessions API's /events/stream, or a stream resumed) may say nothing for
# minutes, and its reader needs the response before any event comes: it is handed on at
# once, unread and unguarded.

OVERLOADED = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n'
)


@pytest.mark.anyio
async def test_a_get_event_stream_is_handed_on_before_its_first_event() -> None:
    silent = AsyncBody([], block=True)
    async with httpx.AsyncClient(transport=async_transport([silent])) as client:
        request = client.build_request("GET", "http://up.test/v1/sessions/s/events/stream")
        response = await client.send(request, stream=True)  # returns: nothing is held
        assert response.headers["content-type"] == "text/event-stream"
        await response.aclose()
    assert silent.closed


@pytest.mark.anyio
async def test_a_get_event_stream_is_not_guarded_and_a_post_one_is() -> None:
    policy = RetryPolicy(max_attempts=2)
    got = async_transport([AsyncBody([OVERLOADED]), AsyncBody([START, DELTA, STOP])], policy)
    with no_waiting():
        async with httpx.AsyncClient(transport=got) as client:
            assert (await client.get("http://up.test/v1/events")).content == OVERLOADED
            retried = async_transport(
                [AsyncBody([OVERLOADED]), AsyncBody([START, DELTA, STOP])], policy
            )
            async with httpx.AsyncClient(transport=retried) as posting:
                posted = await posting.post("http://up.test/v1/messages", json={})
    assert posted.content == START + DELTA + STOP


def test_a_get_event_stream_is_handed_on_unread_sync() -> None:
    policy = RetryPolicy(max_attempts=2)
    bodies = [SyncBody([OVERLOADED]), SyncBody([START, DELTA, STOP])]
    with (
        no_waiting(),
        httpx.Client(transport=sync_transport(bodies, policy)) as client,
    ):
        assert client.get("http://up.test/v1/events").content == OVERLOADED
        assert client.post("http://up.test/v1/messages", json={}).content == START + DELTA + STOP
    assert bodies == []
