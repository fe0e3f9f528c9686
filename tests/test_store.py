"""The store seam: `InProcessStore`, and a limiter over a store of its own kind."""

from __future__ import annotations

import math

import anyio
import pytest

from retry_transport._limiter import SharedLimiter
from retry_transport._store import InProcessStore, Store


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RemoteStore:
    """A store 'elsewhere': an `InProcessStore` with a clock of its own, reachable or not,
    recording what it is asked."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = InProcessStore(clock)
        self.up = True
        self.calls: list[tuple[str, str, float | None]] = []

    def answers_locally(self) -> bool:
        return not self.up

    async def read(self, scope: str) -> float | None:
        return self.read_sync(scope)

    def read_sync(self, scope: str) -> float | None:
        self.calls.append(("read", scope, None))
        return self.inner.read_sync(scope) if self.up else None

    async def extend(self, scope: str, seconds: float) -> float | None:
        return self.extend_sync(scope, seconds)

    def extend_sync(self, scope: str, seconds: float) -> float | None:
        self.calls.append(("extend", scope, seconds))
        return self.inner.extend_sync(scope, seconds) if self.up else None


def test_in_process_store_keeps_one_block_per_scope() -> None:
    clock = FakeClock()
    store: Store = InProcessStore(clock)
    assert store.read_sync("a") == 0.0
    assert store.extend_sync("a", 5.0) == 5.0
    assert store.read_sync("a") == 5.0
    assert store.read_sync("b") == 0.0
    clock.now += 2.0
    assert store.read_sync("a") == 3.0


def test_in_process_store_never_shortens_a_block() -> None:
    clock = FakeClock()
    store = InProcessStore(clock)
    store.extend_sync("a", 5.0)
    assert store.extend_sync("a", 1.0) == 5.0
    assert store.extend_sync("a", 8.0) == 8.0
    clock.now += 10.0
    assert store.read_sync("a") == 0.0


@pytest.mark.anyio
async def test_in_process_store_async_calls_answer_as_the_sync_ones() -> None:
    store = InProcessStore(FakeClock())
    assert store.answers_locally()
    assert await store.extend("a", 2.0) == 2.0
    assert await store.read("a") == 2.0


def test_in_process_store_refuses_a_clock_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="clock"):
        InProcessStore(1.0)  # type: ignore[arg-type]


def test_a_limiter_keeps_its_block_in_its_store_under_its_scope() -> None:
    clock = FakeClock()
    store = InProcessStore(clock)
    limiter = SharedLimiter(store=store, scope="nim", clock=clock, random=lambda: 0.0)
    assert limiter.store is store
    assert limiter.scope == "nim"
    limiter.block_sync(4.0)
    assert store.read_sync("nim") == 4.0
    assert store.read_sync("default") == 0.0


def test_a_limiter_learns_a_block_set_in_a_remote_store_by_another() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    a = SharedLimiter(store=store, clock=clock, random=lambda: 0.0)
    b = SharedLimiter(store=store, clock=clock, random=lambda: 0.0)
    assert not b.try_admit()  # a reachable store elsewhere: only it can tell
    a.block_sync(3.0)
    assert store.calls[-1] == ("extend", "default", 3.0)
    assert b.blocked_for() == 0.0
    assert b.gate_sync() == 3.0
    assert b.blocked_for() == 3.0
    # Known locally now: no further read.
    reads = len(store.calls)
    assert b.gate_sync() == 3.0
    assert len(store.calls) == reads


def test_a_limiter_learns_a_longer_block_from_the_answer_to_its_extension() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    store.inner.extend_sync("default", 9.0)
    limiter = SharedLimiter(store=store, clock=clock, random=lambda: 0.0)
    limiter.block_sync(1.0)
    assert limiter.blocked_for() == 9.0


@pytest.mark.anyio
async def test_while_the_store_cannot_tell_the_limiter_keeps_its_own_record() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    limiter = SharedLimiter(store=store, clock=clock, random=lambda: 0.0, pacing=False)
    store.up = False
    assert limiter.try_admit()  # the store answers locally: the fast path may admit
    await limiter.block(2.0)
    assert limiter.blocked_for() == 2.0
    assert not limiter.try_admit()
    assert await limiter.gate() == 2.0
    clock.now += 2.0
    assert await limiter.gate() == 0.0


@pytest.mark.anyio
async def test_a_value_that_is_no_block_never_reaches_the_store() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    limiter = SharedLimiter(store=store, clock=clock)
    for seconds in (0.0, -1.0, math.inf, math.nan):
        await limiter.block(seconds)
        limiter.block_sync(seconds)
    assert [c for c in store.calls if c[0] == "extend"] == []


@pytest.mark.anyio
async def test_async_and_sync_callers_share_one_block_through_the_store() -> None:
    clock = FakeClock()
    store = RemoteStore(clock)
    a = SharedLimiter(store=store, clock=clock, random=lambda: 0.0)
    b = SharedLimiter(store=store, clock=clock, random=lambda: 0.0)
    await a.block(1.5)
    assert await anyio.to_thread.run_sync(b.gate_sync) == 1.5
