"""`RetryTransport`: the async driver of the retry machine."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._common import DriverBase, is_event_stream
from ._events import Hook
from ._flavour import finish_iterator
from ._limiter import Limiter
from ._machine import Block, Close, Fail, Finish, Gate, Notify, Read, Send, Sleep
from ._policy import RetryPolicy
from ._switch import SWITCH

if TYPE_CHECKING:
    import httpx
    import httpx2

    class _Base(httpx.AsyncBaseTransport, httpx2.AsyncBaseTransport):  # type: ignore[misc]
        pass
else:
    _Base = object

__all__ = ["RetryTransport"]


class RetryTransport(DriverBase, _Base):
    """An async transport that retries transient upstream failures of the one it wraps.

    ``transport`` is any ``httpx.AsyncBaseTransport`` or ``httpx2.AsyncBaseTransport``; the
    responses and exceptions handed back are of the same library (``None``: a default
    ``httpx.AsyncHTTPTransport``). ``limiter`` is shared state (block, budget, concurrency);
    none given, the transport makes a private `SharedLimiter`. ``sleep``, ``clock``,
    ``wall_clock`` and ``random`` exist for tests. ``hooks`` are callables (plain or coroutine
    functions) told of every scheduled retry and every give-up with a `RetryEvent`; a hook that
    raises is logged and never breaks the request.
    """

    _is_async = True

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | httpx2.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self._setup(transport, policy, limiter, clock, wall_clock, random, hooks)
        self._sleep = anyio.sleep if sleep is None else sleep

    async def handle_async_request(self, request: Any) -> Any:
        """Send ``request``, retrying as the policy says; return the final response."""
        limiter = self._limiter
        if type(request.stream) is self._byte_stream and limiter.try_admit():
            # Fast path: nothing to wait for; a plain success costs a status check.
            start = None if self._deadline is None else self._fast_start(request)
            try:
                response = await self._transport.handle_async_request(request)
            except Exception as exc:
                return await self._drive(request, exc, start)
            status = response.status_code
            if status < 400 and (
                status != 200 or not self._peek_sse or not is_event_stream(response.headers)
            ):
                if self._paced is not None:
                    self._paced.desk_observe_fast(request, response)
                return response
            return await self._drive(request, response, start)
        limiter.note_first_attempt()
        return await self._drive(request, None)

    async def _drive(self, request: Any, first: object, start: float | None = None) -> Any:
        rewind = self._replay_plan(request)
        machine = self._machine(request, replayable=rewind is not None)
        limiter = self._limiter
        current: Any = None if isinstance(first, BaseException) else first
        paced = self._paced
        ticket = None if paced is None else paced.ticket(request, first)
        chunks: Any = None
        slot = False
        steps = machine.run(first, start)
        action = next(steps)
        try:
            while True:
                kind = type(action)
                if kind is Read:
                    if chunks is None:
                        chunks = current.stream.__aiter__()
                    try:
                        chunk: object = b""
                        while chunk == b"":
                            chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        chunk = None
                    except Exception as exc:
                        chunk = exc
                    action = steps.send(chunk)
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
                        result, current = exc, None
                        if slot:
                            slot = False
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
                        with anyio.move_on_after(action.timeout):
                            await limiter.acquire_slot()
                            slot = True
                        if not slot:
                            wait = float("inf")
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
                        await ticket.block(action.seconds)
                    else:
                        await limiter.block(action.seconds)
                    action = steps.send(None)
                elif kind is Notify:
                    assert isinstance(action, Notify)
                    for hook in self._hooks:
                        try:
                            outcome = hook(action.event)
                            if inspect.isawaitable(outcome):
                                await outcome
                        except Exception:
                            self._hook_failed(hook, action.event)
                    action = steps.send(None)
                elif kind is Finish:
                    assert isinstance(action, Finish)
                    if chunks is not None and hasattr(current, "_content"):
                        # A body built in memory (MockTransport): it is all there already.
                        await chunks.aclose()
                        chunks = None
                    stream = self._final_stream(
                        action, chunks, current, slot, self._flavour.async_replay_stream
                    )
                    current = chunks = None
                    slot = False
                    return self._hand_back(action, stream)
                else:
                    assert isinstance(action, Fail)
                    raise self._failure(action, request)
        finally:
            if ticket is not None:
                ticket.done()
            if current is not None:
                with anyio.CancelScope(shield=True):
                    await self._close(current, chunks)
            if slot:
                limiter.release_slot()

    @staticmethod
    async def _close(response: Any, chunks: Any) -> None:
        if response is None:
            return
        try:
            if chunks is not None:
                await finish_iterator(chunks)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()

    async def __aenter__(self) -> RetryTransport:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._transport.__aexit__(*exc_info)
