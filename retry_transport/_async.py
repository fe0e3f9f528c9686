"""`RetryTransport`: the async driver of the retry machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ._bases import AsyncTransportBase, BothResponse
from ._common import EVENT_STREAM, JSON_TYPE, PLAIN_TYPES, DriverBase, is_event_stream
from ._desk import Desk
from ._events import Hook
from ._io import (
    AsyncSleep,
    async_close_shielded,
    async_default_sleep,
    async_finish_iterator,
    async_peek,
    async_read_chunk,
    async_tell_hooks,
    async_wait_for_slot,
)
from ._limiter import Limiter
from ._machine import Block, Close, Fail, Finish, Gate, Peeked, Read, Report, Send, Sleep, Spend
from ._policy import RetryPolicy
from ._sse import ScanKind, ScanResult
from ._switch import SWITCH

if TYPE_CHECKING:
    import httpx
    import httpx2

__all__ = ["RetryTransport"]


class RetryTransport(DriverBase, AsyncTransportBase):
    """The async transport that retries transient upstream failures of the one it wraps.

    ``transport`` is any ``httpx.AsyncBaseTransport`` or ``httpx2.AsyncBaseTransport``; the
    responses and exceptions handed back are of the same library (``None``: a default
    ``httpx.AsyncHTTPTransport``). ``limiter`` is shared state (block, budget, concurrency);
    none given, the transport makes a private `SharedLimiter`. ``sleep``, ``clock``,
    ``wall_clock`` and ``random`` exist for tests. ``hooks`` are callables told of every
    scheduled retry and every give-up with a `RetryEvent` (see `Hook`); a hook that raises
    is logged and never breaks the request.
    ``name`` labels the transport's log records, events and metrics.
    """

    _is_async = True

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        sleep: AsyncSleep | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
        hooks: Sequence[Hook] = (),
        name: str | None = None,
    ) -> None:
        self._setup(transport, policy, limiter, clock, wall_clock, random, hooks, name)
        self._sleep = async_default_sleep if sleep is None else sleep

    @property
    def transport(self) -> httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport:
        """The wrapped transport."""
        wrapped: httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport = self._transport
        return wrapped

    async def handle_async_request(self, request: httpx.Request | httpx2.Request) -> BothResponse:
        """Send ``request``, retrying as the policy says; return the final response."""
        gate = self._gate
        used = gate.used
        if used >= gate.limit or type(request.stream) is not self._byte_stream:
            return await self._admit(request)
        # Fast path: the limiter's gate is open (no block, nothing to pace, no slot to take),
        # so the request goes at once; a plain success costs a status check and, for a 200, a
        # look for an event stream's content type. No clock is read: an answer that needs the
        # machine starts its clock when it came back (see `Attempt.elapsed` and
        # `RetryPolicy.first_content_timeout`). Laid out for the fewest bytecodes run on a
        # plain success: the cold paths return early or sit at the end.
        gate.used = used + 1
        try:
            response: BothResponse = await self._transport.handle_async_request(request)
        except Exception as exc:
            gate.answered += 1
            return await self._drive(request, exc)
        gate.answered += 1
        status = response.status_code
        if status == 200:
            for _, name, value in response.headers._list:
                if name == b"content-type":
                    if (
                        value == JSON_TYPE
                        or value in PLAIN_TYPES
                        or value[:17].lower() != EVENT_STREAM
                        or not self._peek_sse
                        or request.method != "POST"
                    ):
                        return response
                    return await self._stream(request, response)
            return response
        if status < 400:
            return response
        return await self._drive(request, response)

    async def _admit(self, request: httpx.Request | httpx2.Request) -> BothResponse:
        """A first attempt the gate did not let through: the limiter's own admission (which
        may open the gate for the next ones), then the fast path's send, its success scanned
        for rate-limit headers; or the machine."""
        if type(request.stream) is self._byte_stream and self._try_admit():
            # As on the fast path, no clock read unless a deadline counts from the send.
            start = None if self._deadline is None else self._fast_start(request)
            desk = self._desk
            # The fast path's answers so far: a report on this one covers at least those.
            mark = 0 if desk is None else desk.fast_gate.answered
            try:
                response: BothResponse = await self._transport.handle_async_request(request)
            except Exception as exc:
                if desk is not None:
                    desk.fast_gate.answered += 1
                return await self._drive(request, exc, start)
            if desk is not None:
                desk.fast_gate.answered += 1
            status = response.status_code
            if status >= 400:
                return await self._drive(request, response, start)
            if (
                status == self._sse_status
                and request.method == "POST"
                and is_event_stream(response.headers)
            ):
                if start is None:
                    return await self._stream(request, response, desk, mark)
                return await self._drive(request, response, start)
            if desk is not None:
                desk.observe_fast(request, response, mark)
            return response
        self._limiter.note_first_attempt()
        return await self._drive(request, None)

    async def _stream(
        self, request: Any, response: Any, desk: Desk | None = None, mark: int = 0
    ) -> BothResponse:
        """A 200 event stream answering a first attempt sent at once (on the fast path, or
        admitted by the limiter without a deadline): its preamble is held here, all its reads
        under one time limit (``first_content_timeout``, counted from now). A start with
        content is handed back at once, as the machine would hand it back, and, admitted by a
        pacing limiter, scanned for rate-limit headers as any such success (``desk``, ``mark``:
        see `Desk.observe_fast`); anything else goes on in the machine from what was read. An
        encoded body is the machine's from the start."""
        peek = self._stream_peek(response)
        if peek is None:
            return await self._drive(request, response)
        start = self._clock()
        first = self._first_content
        self._first_read(request, first)
        chunks = response.stream.__aiter__()
        try:
            outcome = await async_peek(chunks, peek.feed, first)
        except BaseException:  # cancelled while it waited: the response is done with
            await async_close_shielded(self._close, response, chunks)
            raise
        if type(outcome) is not ScanResult or outcome.kind is not ScanKind.CONTENT:
            return await self._drive(request, response, start, Peeked(peek, outcome), chunks)
        if hasattr(response, "_content"):
            # A body built in memory (MockTransport): it is all there already.
            await chunks.aclose()
            chunks = None
        if desk is not None:
            desk.observe_fast(request, response, mark)
        finish = self._streamed(response, peek, start)
        stream = self._final_stream(
            finish, chunks, response, False, self._flavour.async_replay_stream, request
        )
        handed: BothResponse = self._hand_back(finish, stream)
        return handed

    async def _drive(
        self,
        request: Any,
        first: object,
        start: float | None = None,
        peeked: Peeked | None = None,
        chunks: Any = None,
    ) -> BothResponse:
        rewind = self._replay_plan(request)
        machine = self._machine(request, replayable=rewind is not None)
        limiter = self._limiter
        current: Any = None if isinstance(first, BaseException) else first
        paced = self._paced
        ticket = None if paced is None else paced.ticket(request, first)
        slot = False
        steps = machine.run(first, start, peeked)
        action = next(steps)
        try:
            while True:
                kind = type(action)
                if kind is Read:
                    assert isinstance(action, Read)
                    if chunks is None:
                        self._first_read(request, action.timeout)
                        chunks = current.stream.__aiter__()
                    action = steps.send(await async_read_chunk(chunks, action.timeout))
                elif kind is Send:
                    assert isinstance(action, Send)
                    if action.resend and rewind is not None:
                        rewind()
                    self._cap_timeouts(request, action.timeout)
                    if ticket is not None:
                        ticket.sent()
                    try:
                        current = await self._transport.handle_async_request(request)
                        if ticket is not None:
                            ticket.observe(current)
                        result: object = current
                    except Exception as exc:
                        # A Send always follows a Gate that took the slot.
                        result, current, slot = exc, None, False
                        limiter.release_slot()
                    action = steps.send(result)
                elif kind is Gate:
                    assert isinstance(action, Gate)
                    if SWITCH.no_wait:
                        wait = 0.0
                    elif ticket is not None:
                        wait = await ticket.gate(action.timeout)
                    else:
                        wait = await limiter.gate()
                    if wait <= 0:
                        slot = await async_wait_for_slot(limiter, action.timeout)
                        if not slot:
                            wait = float("inf")
                        elif ticket is not None and ticket.late():
                            # The slot wait held it past its booking: booked again for now.
                            wait = await ticket.gate(action.timeout)
                            if wait > 0:
                                slot = False
                                limiter.release_slot()
                    action = steps.send(wait)
                elif kind is Sleep:
                    assert isinstance(action, Sleep)
                    if not SWITCH.no_wait:
                        await self._sleep(action.seconds)
                    action = steps.send(None)
                elif kind is Close:
                    await self._close(current, chunks)
                    current = chunks = None
                    if slot:
                        slot = False
                        limiter.release_slot()
                    action = steps.send(None)
                elif kind is Block:
                    assert isinstance(action, Block)
                    if SWITCH.no_wait:
                        pass
                    elif ticket is not None:
                        await ticket.block(action.seconds, action.named)
                    else:
                        await limiter.block(action.seconds)
                    action = steps.send(None)
                elif kind is Spend:
                    action = steps.send(limiter.allow_retry())
                elif kind is Report:
                    assert isinstance(action, Report)
                    event = self._report(action)
                    if event is not None:
                        await async_tell_hooks(self._hooks, event, self._hook_failed)
                    action = steps.send(None)
                elif kind is Finish:
                    assert isinstance(action, Finish)
                    if action.failure is not None:
                        # Handed back failing where its body is read: this one is done with.
                        await self._close(current, chunks)
                        current = chunks = None
                        if slot:
                            slot = False
                            limiter.release_slot()
                    if chunks is not None and hasattr(current, "_content"):
                        # A body built in memory (MockTransport): it is all there already.
                        await chunks.aclose()
                        chunks = None
                    stream = self._final_stream(
                        action, chunks, current, slot, self._flavour.async_replay_stream, request
                    )
                    current = chunks = None
                    slot = False
                    handed: BothResponse = self._hand_back(action, stream)
                    return handed
                else:
                    assert isinstance(action, Fail)
                    raise self._failure(action, request)
        finally:
            if ticket is not None:
                await ticket.done()
            if current is not None:
                await async_close_shielded(self._close, current, chunks)
            if slot:
                limiter.release_slot()

    @staticmethod
    async def _close(response: Any, chunks: Any) -> None:
        try:
            if chunks is not None:
                await async_finish_iterator(chunks)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._transport.__aexit__(exc_type, exc_value, traceback)
