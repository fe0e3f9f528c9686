"""A scripted driver for the pure retry machine: no network, no clock, no sleeping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from retry_transport import RetryPolicy
from retry_transport._machine import (
    Action,
    Block,
    Close,
    Fail,
    Finish,
    Gate,
    Read,
    RetryMachine,
    Send,
    Sleep,
    Spend,
)


class FakeClock:
    """A monotonic clock that only moves when told to (or when the machine 'sleeps')."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeLimiter:
    """Records what the machine asks of the limiter; `allow` answers the budget question."""

    allow: bool = True
    gate_waits: list[float] = field(default_factory=list)
    retries_asked: int = 0

    def try_admit(self) -> bool:
        return True

    def note_first_attempt(self) -> None:
        return None

    async def gate(self) -> float:
        return self.gate_sync()

    def gate_sync(self) -> float:
        return self.gate_waits.pop(0) if self.gate_waits else 0.0

    async def acquire_slot(self) -> None:
        return None

    def acquire_slot_sync(self, timeout: float | None = None) -> bool:
        return True

    def release_slot(self) -> None:
        return None

    def allow_retry(self) -> bool:
        self.retries_asked += 1
        return self.allow

    async def block(self, seconds: float) -> None:
        return None

    def block_sync(self, seconds: float) -> None:
        return None

    def blocked_for(self) -> float:
        return 0.0


Step = httpx.Response | Exception


@dataclass
class Run:
    """What one scripted run of the machine did."""

    actions: list[Action]
    sends: int
    end: Finish | Fail

    @property
    def sleeps(self) -> list[float]:
        return [a.seconds for a in self.actions if isinstance(a, Sleep)]

    @property
    def blocks(self) -> list[float]:
        return [a.seconds for a in self.actions if isinstance(a, Block)]

    @property
    def closes(self) -> int:
        return sum(isinstance(a, Close) for a in self.actions)


def run_machine(
    steps: Sequence[Step],
    policy: RetryPolicy | None = None,
    *,
    method: str = "POST",
    idempotency_key: bool = False,
    replayable: bool = True,
    limiter: FakeLimiter | None = None,
    clock: FakeClock | None = None,
    random: Callable[[], float] = lambda: 0.5,
    wall_clock: float = 1_700_000_000.0,
    chunk_size: int = 1 << 20,
    path: str = "/v1/chat/completions",
) -> Run:
    """Drive a machine through ``steps`` (one per Send) and return what it did."""
    clock = clock or FakeClock()
    limiter = limiter or FakeLimiter()
    machine = RetryMachine(
        policy or RetryPolicy(),
        method=method,
        url="https://api.example.com" + path,
        idempotency_key=idempotency_key,
        replayable=replayable,
        clock=clock,
        wall_clock=lambda: wall_clock,
        random=random,
        path=path,
    )
    pending = list(steps)
    actions: list[Action] = []
    sends = 0
    body: list[bytes] = []
    gen = machine.run()
    action = next(gen)
    while True:
        actions.append(action)
        reply: object = None
        if isinstance(action, Finish | Fail):
            return Run(actions, sends, action)
        if isinstance(action, Gate):
            reply = limiter.gate_sync()
        elif isinstance(action, Send):
            sends += 1
            step = pending.pop(0)
            if isinstance(step, httpx.Response):
                content = step.content
                body = [content[i : i + chunk_size] for i in range(0, len(content), chunk_size)]
            reply = step
        elif isinstance(action, Read):
            reply = body.pop(0) if body else None
        elif isinstance(action, Spend):
            reply = limiter.allow_retry()
        elif isinstance(action, Sleep):
            clock.advance(action.seconds)
        action = gen.send(reply)


def response(
    status: int,
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A complete response as a transport would return it."""
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, headers=headers or {}, content=content)


def sse(*events: str) -> httpx.Response:
    """A 200 event stream made of ``events`` (each a whole SSE event without its blank line)."""
    return response(200, "".join(f"{e}\n\n" for e in events), {"content-type": "text/event-stream"})
