"""Scripted inner transports (the respx idea) for both httpx flavours."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

FLAVOURS = ("httpx", "httpx2")


def lib(name: str) -> ModuleType:
    """The httpx or httpx2 module."""
    return importlib.import_module(name)


@dataclass(frozen=True)
class R:
    """One scripted reply: a status with body and headers."""

    status: int
    body: bytes | str = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Script:
    """A handler for ``MockTransport`` that replies with ``steps`` in turn (the last repeats)
    and records every request it received. An exception class step is raised."""

    flavour: str
    steps: Sequence[R | type[Exception]]
    seen: list[Any] = field(default_factory=list)

    def __call__(self, request: Any) -> Any:
        self.seen.append(request)
        index = min(len(self.seen), len(self.steps)) - 1
        step = self.steps[index]
        module = lib(self.flavour)
        if isinstance(step, R):
            body = step.body.encode() if isinstance(step.body, str) else step.body
            return module.Response(step.status, headers=list(step.headers), content=body)
        error: Any = step
        raise error("scripted failure", request=request)

    @property
    def count(self) -> int:
        return len(self.seen)

    def mock(self) -> Any:
        return lib(self.flavour).MockTransport(self)


class FakeClock:
    """A monotonic clock that moves only when a `Sleeps` sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """An injected sleep: records the waits and moves ``clock`` on, never sleeps for real."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sync(seconds)

    def sync(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.now += seconds


def exc(flavour: str, name: str) -> type[Exception]:
    """The exception class ``name`` of a flavour."""
    cls = getattr(lib(flavour), name)
    assert isinstance(cls, type)
    assert issubclass(cls, Exception)
    return cls
