"""The stream handed back in place of a peeked response's own: held bytes, then the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ._guard import StreamGuard
from ._io import async_finish_iterator

__all__ = ["AsyncReplay"]


class AsyncReplay:
    """Yields the bytes already read, then the rest of the original stream, unchanged.

    Mixed with a flavour's byte-stream class (see `Flavour`) so the client accepts it.
    ``on_close`` runs once, when the stream is closed (it gives back a concurrency slot).
    With a ``guard``, every byte after the held ones is watched for the stream's final event
    (a stream cut before it raises where its iteration ends), or, when the guard carries an
    error, that error is raised right after the held bytes (``original`` is then ``None``).
    """

    def __init__(
        self,
        held: bytes,
        rest: AsyncIterator[bytes] | None,
        original: Any,
        on_close: Callable[[], None] | None = None,
        guard: StreamGuard | None = None,
    ) -> None:
        self._held = held
        self._rest = rest
        self._original = original
        self._on_close = on_close
        self._guard = guard
        self._ended = False
        """The stream was read to its end: nothing left to finish on closing."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        held, self._held = self._held, b""
        if held:
            yield held
        guard = self._guard
        watcher = None if guard is None else guard.check()
        rest = self._rest if self._rest is not None else self._original.__aiter__()
        self._rest = rest
        if guard is None or watcher is None:
            async for chunk in rest:
                if chunk:
                    yield chunk
            self._ended = True
            return
        feed = watcher.feed
        try:
            async for chunk in rest:
                if chunk:
                    feed(chunk)
                    yield chunk
        except Exception as exc:
            guard.broken(exc)
            raise
        self._ended = True
        guard.ended()

    @property
    def watched(self) -> bool:
        """Whether the bytes after the held ones are watched for the stream's final event."""
        guard = self._guard
        return guard is not None and guard.error is None and guard.watcher is not None

    def ended_properly(self) -> bool:
        """Whether the bytes read so far end with the stream's final event (for a `watched`
        stream; asked once its reader is done with it): a whole answer, or a cut one."""
        guard = self._guard
        assert guard is not None, "only a watched stream knows"
        watcher = guard.watcher
        assert watcher is not None, "only a watched stream knows"
        return watcher.missing() is None

    async def aclose(self) -> None:
        try:
            if self._rest is not None and not self._ended:
                await async_finish_iterator(self._rest)
            if self._original is not None:
                await self._original.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
