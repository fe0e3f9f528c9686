"""What a replayed event stream checks as it is read: its final event, or an error to raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["StreamGuard"]


class _Watcher(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def missing(self) -> str | None: ...


@dataclass(slots=True)
class StreamGuard:
    """What a replayed event stream checks as it is read: ``watcher`` sees every byte after
    the held ones; at the end (or on a read error), a missing final event raises
    ``truncated(message)``; a read error is raised as it came (as without the transport),
    noted with the final event the stream lacked. ``error``, when set, is raised right after
    the held bytes instead."""

    watcher: _Watcher | None
    truncated: Callable[[str], BaseException]
    error: BaseException | None = None

    def check(self) -> _Watcher | None:
        """After the held bytes: raise ``error`` if set; else the watcher of the rest."""
        if self.error is not None:
            raise self.error
        return self.watcher

    def broken(self, exc: BaseException) -> None:
        """Reading the rest failed with ``exc`` (raised on as it came): note on it the final
        event the stream lacked, if it lacked one."""
        missing = None if self.watcher is None else self.watcher.missing()
        if missing is not None:
            exc.add_note(f"retry_transport: {missing}")

    def ended(self) -> None:
        """The body ended: raise if its final event is missing."""
        missing = None if self.watcher is None else self.watcher.missing()
        if missing is not None:
            raise self.truncated(missing)
