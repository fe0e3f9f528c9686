"""`ScriptedTransport`: a transport that answers each request with the next `Step` of a script."""

from __future__ import annotations

import importlib
import json as _json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from .._bases import AnyTransportBase as _Base
from .._bases import BothResponse
from .._errors import RetryTransportError
from ._received import Received

if TYPE_CHECKING:
    import httpx
    import httpx2

__all__ = ["ExceptionSpec", "ScriptExhausted", "ScriptedTransport", "Step"]


ExceptionSpec = str | type[Exception] | Exception
"""An exception a `Step` raises: a class or instance, or the name of an exception class of the
client's library (``"ConnectError"``, ``"ReadTimeout"``, ...), so one script serves httpx and
httpx2."""


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted answer to one request: a response, or an exception raised instead.

    ``body`` is sent as given (a ``str`` is UTF-8 encoded); ``headers`` are (name, value)
    pairs or a mapping. When ``exception`` is set, the request fails with it and no response
    is made (``status``, ``body`` and ``headers`` must then be left alone).
    """

    status: int = 200
    body: bytes | str = b""
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = ()
    exception: ExceptionSpec | None = None

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"status must be an integer, got {self.status!r}")
        if not 100 <= self.status <= 999:
            raise ValueError(f"status must be in 100-999, got {self.status}")
        if not isinstance(self.body, bytes | str):
            raise ValueError(f"body must be bytes or str, got {type(self.body).__name__}")
        pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in pairs))
        if self.exception is not None:
            if self.status != 200 or self.body or self.headers:
                raise ValueError("exception: a step raises or answers, not both")
            if not isinstance(self.exception, str | Exception) and not (
                isinstance(self.exception, type) and issubclass(self.exception, Exception)
            ):
                raise ValueError(
                    f"exception must be a name, an exception class or instance, "
                    f"got {self.exception!r}"
                )

    @classmethod
    def json(
        cls, status: int, obj: object, headers: Iterable[tuple[str, str]] | Mapping[str, str] = ()
    ) -> Step:
        """A response whose body is ``obj`` as JSON (``content-type: application/json``)."""
        return cls(status, _json.dumps(obj).encode(), _with_type(headers, "application/json"))

    @classmethod
    def sse(
        cls,
        events: Iterable[tuple[str | None, object]],
        *,
        status: int = 200,
        headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    ) -> Step:
        """A server-sent-event stream: one event per ``(event name or None, data)``; data that
        is not a ``str`` is sent as JSON."""
        parts = []
        for name, data in events:
            text = data if isinstance(data, str) else _json.dumps(data)
            head = "" if name is None else f"event: {name}\n"
            parts.append(head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n")
        return cls(status, "".join(parts), _with_type(headers, "text/event-stream"))

    @classmethod
    def raising(cls, exception: ExceptionSpec) -> Step:
        """A step that fails the request with ``exception`` (see `ExceptionSpec`)."""
        return cls(exception=exception)


def _with_type(
    headers: Iterable[tuple[str, str]] | Mapping[str, str], content_type: str
) -> tuple[tuple[str, str], ...]:
    pairs = tuple(headers.items() if isinstance(headers, Mapping) else headers)
    if any(name.lower() == "content-type" for name, _ in pairs):
        return pairs
    return (("content-type", content_type), *pairs)


class ScriptExhausted(RetryTransportError):
    """A `ScriptedTransport` got more requests than it has steps (and ``repeat_last`` is off)."""


_SUBCLASSES: dict[tuple[type, str], type] = {}
_FLAVOURS = ("httpx", "httpx2")


class ScriptedTransport(_Base):
    """A transport for tests that answers each request with the next `Step` of a script.

    Serves sync and async clients alike. ``flavour`` is the library of the client it is given
    to: ``"httpx"``, or ``"httpx2"`` (the current anthropic SDK's). Wrap it in `RetryTransport`
    or `SyncRetryTransport` to see retries happen without a network. A step may be a plain
    status code. Once the steps run out, a request raises `ScriptExhausted`, unless
    ``repeat_last`` is set, when the last step answers every further request.

    ``requests`` records what was received, oldest first (a request sent twice by a retry is
    recorded twice); ``call_count`` is how many.
    """

    def __new__(cls, *args: object, flavour: str = "httpx", **kwargs: object) -> Self:
        if flavour not in _FLAVOURS:
            raise ValueError(f"flavour must be one of {_FLAVOURS}, got {flavour!r}")
        key = (cls, flavour)
        sub = _SUBCLASSES.get(key)
        if sub is None:
            module = importlib.import_module(flavour)
            bases = (cls, module.BaseTransport, module.AsyncBaseTransport)
            sub = type(cls.__name__, bases, {"__module__": cls.__module__})
            sub.__qualname__ = cls.__qualname__
            _SUBCLASSES[key] = sub
        made: Self = object.__new__(sub)
        return made

    def __init__(
        self,
        steps: Iterable[Step | int],
        *,
        flavour: Literal["httpx", "httpx2"] = "httpx",
        repeat_last: bool = False,
    ) -> None:
        self._steps = tuple(step if isinstance(step, Step) else Step(step) for step in steps)
        if not self._steps:
            raise ValueError("steps: a script needs at least one step")
        self._module = importlib.import_module(flavour)
        self._repeat_last = repeat_last
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self.flavour = flavour

    @property
    def call_count(self) -> int:
        """How many requests were received."""
        return len(self.requests)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The script."""
        return self._steps

    def _record(self, request: Any) -> Step:
        received = Received(
            method=request.method,
            url=str(request.url),
            headers=tuple(request.headers.multi_items()),
            content=request.content,
            at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(received)
            index = len(self.requests) - 1
        if index >= len(self._steps):
            if not self._repeat_last:
                raise ScriptExhausted(
                    f"request {index + 1} ({received.method} {received.url}) but the script "
                    f"has {len(self._steps)} step(s)"
                )
            index = len(self._steps) - 1
        return self._steps[index]

    def _answer(self, step: Step, request: Any) -> Any:
        if step.exception is not None:
            raise self._exception(step.exception, request)
        body = step.body.encode() if isinstance(step.body, str) else step.body
        return self._module.Response(
            step.status, headers=list(step.headers), content=body, request=request
        )

    def _exception(self, spec: ExceptionSpec, request: Any) -> Exception:
        if isinstance(spec, Exception):
            return spec
        cls: Any = getattr(self._module, spec, None) if isinstance(spec, str) else spec
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise ValueError(f"{self.flavour} has no exception class named {spec!r}")
        make: Callable[..., Exception] = cls
        message = f"scripted {cls.__name__}"
        try:
            return make(message, request=request)  # httpx's transport errors take the request
        except TypeError:
            return make(message)

    def handle_request(self, request: httpx.Request | httpx2.Request) -> BothResponse:
        """Answer ``request`` with the next step."""
        request.read()
        response: BothResponse = self._answer(self._record(request), request)
        return response

    async def handle_async_request(self, request: httpx.Request | httpx2.Request) -> BothResponse:
        """Answer ``request`` with the next step."""
        await request.aread()
        response: BothResponse = self._answer(self._record(request), request)
        return response

    def close(self) -> None:
        """Nothing to close."""

    async def aclose(self) -> None:
        """Nothing to close."""
