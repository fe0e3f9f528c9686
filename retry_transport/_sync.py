"""`SyncRetryTransport`: the sync driver of the retry machine."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._common import DriverBase, is_event_stream
from ._events import Hook
from ._limiter import Limiter
from ._machine import Block, Close, Fail, Finish, Gate, Notify, Read, Send, Sleep
from ._policy import RetryPolicy
from ._switch import SWITCH

if TYPE_CHECKING:
    import httpx
    import httpx2

    class _Base(httpx.BaseTransport, httpx2.BaseTransport):  # type: ignore[misc]
        pass
else:
    _Base = object

__all__ = ["SyncRetryTransport"]


class SyncRetryTransport(DriverBase, _Base):
    """The sync twin of `RetryTransport`: wraps an ``httpx.BaseTransport`` or
    ``httpx2.BaseTransport`` (``None``: a default ``httpx.HTTPTransport``). ``hooks`` must be
    plain callables here."""

    _is_async = False

    def __init__(
        self,
        transport: httpx.BaseTransport | httpx2.BaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self._setup(transport, policy, limiter, clock, wall_clock, random, hooks)
        self._sleep = time.sleep if sleep is None else sleep

    def handle_request(self, request: Any) -> Any:
        """Send ``request``, retrying as the policy says; return the final response."""
        limiter = self._limiter
        if type(request.stream) is self._byte_stream and limiter.try_admit():
            start = None if self._deadline is None else self._fast_start(request)
            try:
                response = self._transport.handle_request(request)
            except Exception as exc:
                return self._drive(request, exc, start)
            status = response.status_code
            if status < 400 and (
                status != 200 or not self._peek_sse or not is_event_stream(response.headers)
            ):
                if self._paced is not None:
                    self._paced.desk_observe_fast(request, response)
                return response
            return self._drive(request, response, start)
        limiter.note_first_attempt()
        return self._drive(request, None)

    def _drive(self, request: Any, first: object, start: float | None = None) -> Any:
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
                        chunks = iter(current.stream)
                    try:
                        chunk: object = b""
                        while chunk == b"":
                            chunk = next(chunks)
                    except StopIteration:
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
                        current = self._transport.handle_request(request)
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
                        wait = ticket.gate_sync(action.timeout)
                    else:
                        wait = limiter.gate_sync()
                    if wait <= 0:
                        slot = limiter.acquire_slot_sync(action.timeout)
                        if not slot:
                            wait = float("inf")
                    action = steps.send(wait)
                elif kind is Sleep:
                    assert isinstance(action, Sleep)
                    if not SWITCH.no_wait:
                        self._sleep(action.seconds)
                    action = steps.send(None)
                elif kind is Close:
                    self._close(current, chunks)
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
                        ticket.block_sync(action.seconds)
                    else:
                        limiter.block_sync(action.seconds)
                    action = steps.send(None)
                elif kind is Notify:
                    assert isinstance(action, Notify)
                    for hook in self._hooks:
                        try:
                            outcome = hook(action.event)
                        except Exception:
                            self._hook_failed(hook, action.event)
                            continue
                        if inspect.iscoroutine(outcome):
                            outcome.close()
                            self._hook_failed(
                                hook, action.event, "an async hook on a sync transport"
                            )
                    action = steps.send(None)
                elif kind is Finish:
                    assert isinstance(action, Finish)
                    if chunks is not None and hasattr(current, "_content"):
                        # A body built in memory (MockTransport): it is all there already.
                        chunks.close()
                        chunks = None
                    stream = self._final_stream(
                        action, chunks, current, slot, self._flavour.sync_replay_stream
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
                self._close(current, chunks)
            if slot:
                limiter.release_slot()

    @staticmethod
    def _close(response: Any, chunks: Any) -> None:
        if response is None:
            return
        try:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()
        finally:
            response.close()

    def close(self) -> None:
        """Close the wrapped transport."""
        self._transport.close()

    def __enter__(self) -> SyncRetryTransport:
        self._transport.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._transport.__exit__(*exc_info)
