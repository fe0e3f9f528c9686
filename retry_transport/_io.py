"""The few spots where async and sync code differ, as symmetric pairs.

The async modules are written once and their sync twins generated from them by
``scripts/unasync.py``, a token rewrite in which ``async_x`` becomes ``sync_x``. What differs
beyond that rewrite lives here, each async helper beside its sync twin: how to sleep, how to
wait for a concurrency slot, how to call hooks, how to read a chunk within a time limit, how to
end a half-read body, and how to clean up when cancelled (under a shielded scope in async
code).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio

from ._events import Hook, RetryEvent
from ._limiter import Limiter
from ._machine import Stalled

__all__ = [
    "AsyncSleep",
    "SyncSleep",
    "async_close_shielded",
    "async_default_sleep",
    "async_finish_iterator",
    "async_peek",
    "async_read_chunk",
    "async_tell_hooks",
    "async_wait_for_slot",
    "sync_close_shielded",
    "sync_default_sleep",
    "sync_finish_iterator",
    "sync_peek",
    "sync_read_chunk",
    "sync_tell_hooks",
    "sync_wait_for_slot",
]

AsyncSleep = Callable[[float], Awaitable[None]]
"""How an async driver sleeps (``anyio.sleep`` unless a test injects one)."""
SyncSleep = Callable[[float], None]
"""How a sync driver sleeps (``time.sleep`` unless a test injects one)."""

HookFailed = Callable[[Hook, RetryEvent, "str | None"], None]

async_default_sleep: AsyncSleep = anyio.sleep
sync_default_sleep: SyncSleep = time.sleep


async def async_wait_for_slot(limiter: Limiter, patience: float | None) -> bool:
    """Wait up to ``patience`` seconds (None: forever) for a slot; False if none came."""
    with anyio.move_on_after(patience):
        await limiter.acquire_slot()
        return True
    return False


def sync_wait_for_slot(limiter: Limiter, patience: float | None) -> bool:
    """Wait up to ``patience`` seconds (None: forever) for a slot; False if none came."""
    return limiter.acquire_slot_sync(patience)


async def async_tell_hooks(hooks: tuple[Hook, ...], event: RetryEvent, failed: HookFailed) -> None:
    """Call each hook with ``event``, awaiting those that return an awaitable; a hook that
    raises is reported to ``failed`` and the others still run."""
    for hook in hooks:
        try:
            outcome = hook(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            failed(hook, event, None)


def sync_tell_hooks(hooks: tuple[Hook, ...], event: RetryEvent, failed: HookFailed) -> None:
    """Call each hook with ``event``; a hook that raises, or a coroutine function (which a sync
    transport cannot run), is reported to ``failed`` and the others still run."""
    for hook in hooks:
        try:
            outcome = hook(event)
        except Exception:
            failed(hook, event, None)
            continue
        if inspect.iscoroutine(outcome):
            outcome.close()
            failed(hook, event, "an async hook on a sync transport")


async def async_read_chunk(chunks: AsyncIterator[bytes], patience: float | None) -> object:
    """The next non-empty chunk, ``None`` at the end of the body, the exception raised, or a
    `Stalled` when ``patience`` seconds (``None``: no limit) passed first."""
    try:
        chunk = b""
        with anyio.move_on_after(patience) as scope:
            while chunk == b"":
                chunk = await chunks.__anext__()
        if scope.cancelled_caught:
            return Stalled()
    except StopAsyncIteration:
        return None
    except Exception as exc:
        return exc
    return chunk


def sync_read_chunk(chunks: Iterator[bytes], patience: float | None) -> object:
    """The next non-empty chunk, ``None`` at the end of the body, or the exception raised. A
    blocking read cannot be raced: the read timeout bounds it instead (see
    ``DriverBase._first_read``), so ``patience`` is not used here."""
    try:
        chunk = b""
        while chunk == b"":
            chunk = next(chunks)
    except StopIteration:
        return None
    except Exception as exc:
        return exc
    return chunk


async def async_peek(
    chunks: AsyncIterator[bytes], feed: Callable[[bytes], object], patience: float | None
) -> object:
    """Feed ``chunks`` to ``feed`` until it answers (not ``None``): that answer; else what
    ended the reading: ``None`` at the end of the body, the exception raised, or a `Stalled`
    when ``patience`` seconds (``None``: no limit) passed first. One time limit covers all the
    reads (one cancel scope, not one per read)."""
    with anyio.move_on_after(patience):
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return None
            except Exception as exc:
                return exc
            if chunk:
                answer = feed(chunk)
                if answer is not None:
                    return answer
    return Stalled()


def sync_peek(
    chunks: Iterator[bytes], feed: Callable[[bytes], object], patience: float | None
) -> object:
    """Feed ``chunks`` to ``feed`` until it answers (not ``None``): that answer; else ``None``
    at the end of the body, or the exception raised. A blocking read cannot be raced: the
    read timeout bounds each read (see ``DriverBase._first_read``), so ``patience`` is not
    used here."""
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            return None
        except Exception as exc:
            return exc
        if chunk:
            answer = feed(chunk)
            if answer is not None:
                return answer


async def async_finish_iterator(chunks: AsyncIterator[bytes]) -> None:
    """End a half-read response iterator by cancelling its next wait for the network.

    Closing it instead would leave the transport's nested async generators to the garbage
    collector (trio warns about those). Bytes already buffered are discarded; read errors do
    not matter to a response being discarded.
    """
    with contextlib.suppress(Exception), anyio.CancelScope() as scope:
        scope.cancel()
        async for _ in chunks:
            pass


def sync_finish_iterator(chunks: Iterator[bytes]) -> None:
    """End a half-read response iterator: close it if it can be closed.

    A generator being read in another thread cannot be closed ("generator already
    executing"): closing the response's own stream after this ends that read, as it would
    without us.
    """
    close = getattr(chunks, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):
            close()


async def async_close_shielded(
    close: Callable[[object, object], Awaitable[None]], response: object, chunks: object
) -> None:
    """``close(response, chunks)``, shielded from cancellation so cleanup always completes."""
    with anyio.CancelScope(shield=True):
        await close(response, chunks)


def sync_close_shielded(
    close: Callable[[object, object], None], response: object, chunks: object
) -> None:
    """``close(response, chunks)`` (nothing cancels sync code from outside)."""
    close(response, chunks)
