"""httpx and httpx2 side by side: which library a transport belongs to, and its classes.

httpx2 (the fork the current openai and anthropic SDKs use) has the same API as httpx with
different classes, and its client asserts that a response stream is one of *its* byte-stream
classes. Everything flavour-specific is looked up here, once per flavour; httpx2 is imported
only when a wrapped transport is an httpx2 one.
"""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from ._errors import DeadlineExceeded
from ._replay_async import AsyncReplay
from ._replay_sync import SyncReplay

__all__ = ["Flavour", "flavour_named", "flavour_of", "replay_plan", "request_flavour"]

Rewind = Callable[[], None]
T = TypeVar("T")


def _noop() -> None:
    return None


@dataclass(eq=False, slots=True)
class Flavour:
    """The classes of one HTTP library (httpx or httpx2)."""

    name: str
    module: ModuleType
    byte_stream: type[Any]
    async_byte_stream: type[Any]
    sync_byte_stream: type[Any]
    multipart_stream: type[Any]
    iterator_byte_stream: type[Any]
    async_replay_stream: type[Any]
    sync_replay_stream: type[Any]
    deadline_error: type[Exception]
    subclasses: dict[tuple[type, bool], type] = field(default_factory=dict)

    def transport_class(self, cls: type[T], *, is_async: bool) -> type[T]:
        """``cls`` mixed with this flavour's base transport class (cached)."""
        key = (cls, is_async)
        sub = self.subclasses.get(key)
        if sub is None:
            base = self.module.AsyncBaseTransport if is_async else self.module.BaseTransport
            sub = type(cls.__name__, (cls, base), {"__module__": cls.__module__})
            sub.__qualname__ = cls.__qualname__
            self.subclasses[key] = sub
        made: type[T] = sub
        return made

    def default_transport(self, *, is_async: bool) -> Any:
        """A fresh default transport of this flavour."""
        return self.module.AsyncHTTPTransport() if is_async else self.module.HTTPTransport()


_FLAVOURS: dict[str, Flavour] = {}


def flavour_named(name: str) -> Flavour:
    """The flavour of library ``name`` ("httpx" or "httpx2"), importing it on first use."""
    flavour = _FLAVOURS.get(name)
    if flavour is None:
        module = importlib.import_module(name)
        content = importlib.import_module(f"{name}._content")
        multipart = importlib.import_module(f"{name}._multipart")
        flavour = Flavour(
            name=name,
            module=module,
            byte_stream=module.ByteStream,
            async_byte_stream=module.AsyncByteStream,
            sync_byte_stream=module.SyncByteStream,
            multipart_stream=multipart.MultipartStream,
            iterator_byte_stream=content.IteratorByteStream,
            async_replay_stream=type(
                "AsyncReplayStream",
                (AsyncReplay, module.AsyncByteStream),
                {"__module__": __name__},
            ),
            sync_replay_stream=type(
                "SyncReplayStream",
                (SyncReplay, module.SyncByteStream),
                {"__module__": __name__},
            ),
            deadline_error=type(
                "DeadlineExceeded",
                (DeadlineExceeded, module.PoolTimeout),
                {"__module__": DeadlineExceeded.__module__},
            ),
        )
        _FLAVOURS[name] = flavour
    return flavour


def _libraries() -> Iterator[tuple[str, ModuleType]]:
    """httpx2 and httpx, those of them already imported (an instance of a class of either
    means its library is loaded, so nothing is imported here). httpx2 comes first: a test
    suite may alias ``httpx`` to it (``httpx2.alias_httpx()``)."""
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None:
            yield name, module


def flavour_of(transport: object, *, is_async: bool = True) -> Flavour:
    """The flavour a transport belongs to, judged by the base classes it subclasses.

    Not by the classes' ``__module__`` strings: SDKs rebind those (``import openai`` sets
    ``httpx2.BaseTransport.__module__`` to ``"openai"``). An object that subclasses neither
    library's base transport but has the method (a duck-typed transport) is taken for httpx.
    Raises `TypeError` for anything else, and for a transport of the other style (a sync
    transport where an async one is wanted, and the reverse).
    """
    method = "handle_async_request" if is_async else "handle_request"
    wanted, other = ("AsyncBaseTransport", "BaseTransport")
    if not is_async:
        wanted, other = other, wanted
    mismatched = None
    for name, module in _libraries():
        if isinstance(transport, getattr(module, wanted)):
            return flavour_named(name)
        if isinstance(transport, getattr(module, other)):
            mismatched = f"{name}.{other}"
    ours, theirs = ("RetryTransport", "SyncRetryTransport")
    if not is_async:
        ours, theirs = theirs, ours
    if mismatched is not None:
        raise TypeError(
            f"transport must be an httpx.{wanted} or httpx2.{wanted} for {ours}, got "
            f"{transport!r}, an {mismatched}: wrap it in {theirs} instead"
        )
    if callable(getattr(transport, method, None)):
        return flavour_named("httpx")
    raise TypeError(
        f"transport must be an httpx.{wanted} or httpx2.{wanted} (or None for a default "
        f"httpx one), got {transport!r}"
    )


def request_flavour(request: object) -> str | None:
    """The library (``"httpx"`` or ``"httpx2"``) whose `Request` class ``request`` is of."""
    for name, module in _libraries():
        if isinstance(request, module.Request):
            return name
    return None


def _file_rewind(file: Any) -> Rewind | None:
    seekable = getattr(file, "seekable", None)
    try:
        if seekable is None or not seekable():
            return None
        position = file.tell()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None

    def rewind() -> None:
        file.seek(position)

    return rewind


def replay_plan(stream: object, flavour: Flavour) -> Rewind | None:
    """How to make a request body ready to be sent again, or ``None`` if it cannot be.

    Call before the first send: for a seekable file body it remembers the start position.
    Bytes bodies and list or tuple bodies (of bytes chunks) need nothing; multipart bodies
    rewind their own files (if all are seekable); generators, other iterables and unseekable
    files cannot be replayed.
    """
    if isinstance(stream, flavour.byte_stream):
        return _noop
    if isinstance(stream, flavour.multipart_stream):
        for part in stream.fields:
            file = getattr(part, "file", None)
            rewindable = file is None or isinstance(file, str | bytes) or _file_rewind(file)
            if not rewindable:
                return None
        return _noop
    if isinstance(stream, flavour.iterator_byte_stream):
        source = getattr(stream, "_stream", None)
        if isinstance(source, list | tuple):
            # httpx iterates a list or tuple body afresh on every send.
            return _noop
        if source is not None and hasattr(source, "read"):
            rewind = _file_rewind(source)
            if rewind is not None:

                def reopen() -> None:
                    rewind()
                    stream._is_stream_consumed = False

                return reopen
    return None
