"""The stream handed back in place of a peeked response's own: held bytes, then the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ._io import async_finish_iterator

__all__ = ["AsyncReplay"]


class AsyncReplay:
    """Yields the bytes already read, then the rest of the original stream, unchanged.

    Mixed with a flavour's byte-stream class (see `Flavour`) so the client accepts it.
    ``on_close`` runs once, when the stream is closed (it gives back a concurrency slot).
    """

    def __init__(
        self,
        held: bytes,
        rest: AsyncIterator[bytes] | None,
        original: Any,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._held = held
        self._rest = rest
        self._original = original
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        held, self._held = self._held, b""
        if held:
            yield held
        rest = self._rest if self._rest is not None else self._original.__aiter__()
        self._rest = rest
        async for chunk in rest:
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        try:
            if self._rest is not None:
                await async_finish_iterator(self._rest)
            await self._original.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
