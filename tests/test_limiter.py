"""SharedLimiter: block, release jitter, budget accounting and the concurrency cap."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from retry_transport._budget import RetryBudget
from retry_transport._limiter import Limiter, SharedLimiter, _Waiter, release_jitter


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_limiter(
    budget: RetryBudget | None = None,
    max_concurrency: int | None = None,
    clock: FakeClock | None = None,
    jitter: float = 0.0,
) -> SharedLimiter:
    # Pacing off: these are the block, budget and slot semantics (pacing: test_pacing_limiter).
    return SharedLimiter(
        budget, max_concurrency, clock=clock or FakeClock(), random=lambda: jitter, pacing=False
    )


def test_shared_limiter_satisfies_the_limiter_protocol() -> None:
    limiter: Limiter = SharedLimiter(pacing=False)
    assert limiter.try_admit()


def test_max_concurrency_below_one_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        SharedLimiter(max_concurrency=0)


def test_default_budget_is_the_default_retry_budget() -> None:
    limiter = SharedLimiter(clock=FakeClock())
    assert [limiter.allow_retry() for _ in range(11)] == [True] * 10 + [False]


# -- fast path and budget accounting --------------------------------------------------------


def test_try_admit_counts_a_first_attempt_for_the_budget() -> None:
    limiter = make_limiter(RetryBudget(ratio=1.0, min_per_second=0.0))
    assert limiter.try_admit()
    assert limiter.try_admit()
    assert [limiter.allow_retry() for _ in range(3)] == [True, True, False]


def test_try_admit_refuses_during_a_block_and_counts_nothing() -> None:
    clock = FakeClock()
    limiter = make_limiter(RetryBudget(ratio=1.0, min_per_second=0.0), clock=clock)
    limiter.block_sync(5.0)
    assert not limiter.try_admit()
    assert not limiter.allow_retry()
    clock.now += 5.0
    assert limiter.try_admit()


def test_try_admit_refuses_with_a_concurrency_cap() -> None:
    limiter = make_limiter(RetryBudget(ratio=1.0, min_per_second=0.0), max_concurrency=10)
    assert not limiter.try_admit()
    assert not limiter.allow_retry()


def test_note_first_attempt_counts_for_the_budget() -> None:
    limiter = make_limiter(RetryBudget(ratio=0.5, min_per_second=0.0))
    limiter.note_first_attempt()
    limiter.note_first_attempt()
    assert limiter.allow_retry()
    assert not limiter.allow_retry()


def test_budget_deposits_expire_with_the_injected_clock() -> None:
    clock = FakeClock()
    limiter = make_limiter(RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0), clock=clock)
    assert limiter.try_admit()
    clock.now += 10.0
    assert not limiter.allow_retry()


def test_without_budget_every_retry_is_allowed() -> None:
    limiter = make_limiter(budget=None)
    assert all(limiter.allow_retry() for _ in range(10_000))
    assert limiter.try_admit()
    limiter.note_first_attempt()


# -- block and jitter --------------------------------------------------------------------------


def test_block_holds_until_it_has_passed() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock=clock)
    limiter.block_sync(2.0)
    assert limiter.gate_sync() == pytest.approx(2.0)
    clock.now += 1.5
    assert limiter.gate_sync() == pytest.approx(0.5)
    assert limiter.blocked_for() == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.gate_sync() == 0.0
    assert limiter.blocked_for() == 0.0


def test_a_shorter_block_never_shortens_a_longer_one() -> None:
    limiter = make_limiter()
    limiter.block_sync(10.0)
    limiter.block_sync(1.0)
    assert limiter.blocked_for() == pytest.approx(10.0)


def test_a_later_block_ending_later_extends_it() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock=clock)
    limiter.block_sync(10.0)
    clock.now += 8.0
    limiter.block_sync(5.0)
    assert limiter.blocked_for() == pytest.approx(5.0)


@pytest.mark.parametrize("seconds", [0.0, -3.0, math.nan, math.inf])
def test_block_ignores_zero_negative_and_non_finite(seconds: float) -> None:
    limiter = make_limiter()
    limiter.block_sync(1.0)
    limiter.block_sync(seconds)
    assert limiter.blocked_for() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("remaining", "random", "jitter"),
    [
        (2.0, 0.0, 0.0),
        (2.0, 0.5, 0.1),
        (2.0, 0.999999, 0.2),
        (30.0, 0.999999, 1.0),
        (30.0, 0.25, 0.25),
    ],
)
def test_release_jitter_is_at_most_a_tenth_and_never_over_a_second(
    remaining: float, random: float, jitter: float
) -> None:
    assert release_jitter(remaining, lambda: random) == pytest.approx(jitter, abs=1e-5)


def test_gate_adds_release_jitter_to_the_remaining_block() -> None:
    limiter = make_limiter(jitter=0.5)
    limiter.block_sync(4.0)
    assert limiter.gate_sync() == pytest.approx(4.0 + 0.2)
    assert limiter.blocked_for() == pytest.approx(4.0)


def test_gate_has_no_jitter_without_a_block() -> None:
    limiter = make_limiter(jitter=0.9)
    assert limiter.gate_sync() == 0.0


def test_waiters_release_spread_over_the_jitter_window() -> None:
    draws = iter([0.0, 0.5, 0.999])
    limiter = SharedLimiter(clock=FakeClock(), random=lambda: next(draws))
    limiter.block_sync(60.0)
    waits = [limiter.gate_sync() for _ in range(3)]
    assert waits == pytest.approx([60.0, 60.5, 60.999])


@pytest.mark.anyio
async def test_async_gate_and_block_match_the_sync_ones() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock=clock)
    await limiter.block(3.0)
    await limiter.block(1.0)
    assert await limiter.gate() == pytest.approx(3.0)
    clock.now += 3.0
    assert await limiter.gate() == 0.0


def test_block_from_many_threads_keeps_the_longest() -> None:
    limiter = make_limiter()
    barrier = threading.Barrier(8)

    def block(seconds: float) -> None:
        barrier.wait()
        for _ in range(200):
            limiter.block_sync(seconds)

    threads = [threading.Thread(target=block, args=(float(s),)) for s in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiter.blocked_for() == pytest.approx(8.0)


# -- concurrency cap -------------------------------------------------------------------------


def test_without_a_cap_slots_are_free() -> None:
    limiter = make_limiter()
    assert limiter.max_concurrency is None
    assert all(limiter.acquire_slot_sync(timeout=0) for _ in range(100))
    for _ in range(100):
        limiter.release_slot()


@pytest.mark.anyio
async def test_async_acquire_without_a_cap_returns_at_once() -> None:
    limiter = make_limiter()
    with anyio.fail_after(5):
        for _ in range(10):
            await limiter.acquire_slot()


def test_cap_limits_slots_held_at_once() -> None:
    limiter = make_limiter(max_concurrency=2)
    assert limiter.acquire_slot_sync(timeout=0)
    assert limiter.acquire_slot_sync(timeout=0)
    assert not limiter.acquire_slot_sync(timeout=0)
    limiter.release_slot()
    assert limiter.acquire_slot_sync(timeout=0)


def test_releasing_more_than_acquired_raises() -> None:
    limiter = make_limiter(max_concurrency=1)
    with pytest.raises(RuntimeError, match="release_slot"):
        limiter.release_slot()


def test_timed_out_sync_waiter_leaves_no_trace() -> None:
    limiter = make_limiter(max_concurrency=1)
    assert limiter.acquire_slot_sync()
    assert not limiter.acquire_slot_sync(timeout=0.001)
    limiter.release_slot()
    assert limiter.acquire_slot_sync(timeout=0)
    assert not limiter.acquire_slot_sync(timeout=0)


def test_sync_waiters_are_served_in_arrival_order() -> None:
    limiter = make_limiter(max_concurrency=1)
    assert limiter.acquire_slot_sync()
    order: list[int] = []
    done = [threading.Event() for _ in range(3)]

    def wait(index: int) -> None:
        assert limiter.acquire_slot_sync(timeout=10)
        order.append(index)
        done[index].set()

    for index in range(3):
        threading.Thread(target=wait, args=(index,), daemon=True).start()
        _wait_for_waiters(limiter, index + 1)
    for index in range(3):
        limiter.release_slot()
        assert done[index].wait(10)
    assert order == [0, 1, 2]


@pytest.mark.anyio
async def test_async_waiters_are_served_in_arrival_order() -> None:
    limiter = make_limiter(max_concurrency=2)
    await limiter.acquire_slot()
    await limiter.acquire_slot()
    order: list[int] = []
    served = [anyio.Event() for _ in range(4)]

    async def wait(index: int) -> None:
        await limiter.acquire_slot()
        order.append(index)
        served[index].set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(wait, index)
                await anyio.wait_all_tasks_blocked()
            for index in range(4):
                limiter.release_slot()
                await served[index].wait()
                assert order == list(range(index + 1))
    assert not limiter.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_cancelled_async_waiter_does_not_leak_a_slot() -> None:
    limiter = make_limiter(max_concurrency=1)
    await limiter.acquire_slot()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire_slot)
        await anyio.wait_all_tasks_blocked()
        assert len(limiter._waiters) == 1
        tg.cancel_scope.cancel()
    assert len(limiter._waiters) == 0
    limiter.release_slot()
    assert limiter.acquire_slot_sync(timeout=0)
    assert not limiter.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_waiter_cancelled_as_its_slot_arrives_passes_the_slot_on() -> None:
    limiter = make_limiter(max_concurrency=1)
    await limiter.acquire_slot()
    next_served = anyio.Event()

    async def first() -> None:
        await limiter.acquire_slot()
        try:
            await anyio.sleep_forever()
        finally:
            limiter.release_slot()

    async def second() -> None:
        await limiter.acquire_slot()
        next_served.set()

    first_scope = anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_in_scope, first_scope, first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            # Grant the first waiter its slot and cancel it before it can run.
            limiter.release_slot()
            first_scope.cancel()
            await next_served.wait()
    limiter.release_slot()
    assert limiter.acquire_slot_sync(timeout=0)
    assert not limiter.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_release_from_another_thread_wakes_an_async_waiter() -> None:
    limiter = make_limiter(max_concurrency=1)
    await limiter.acquire_slot()
    acquired = anyio.Event()

    async def wait() -> None:
        await limiter.acquire_slot()
        acquired.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            releaser = threading.Thread(target=limiter.release_slot)
            releaser.start()
            await acquired.wait()
    releaser.join()
    assert not limiter.acquire_slot_sync(timeout=0)


@pytest.mark.anyio
async def test_async_release_wakes_a_sync_waiter_in_a_thread() -> None:
    limiter = make_limiter(max_concurrency=1)
    await limiter.acquire_slot()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(limiter.acquire_slot_sync(10)))
    waiter.start()
    await anyio.to_thread.run_sync(_wait_for_waiters, limiter, 1)
    limiter.release_slot()
    await anyio.to_thread.run_sync(waiter.join)
    assert results == [True]


@pytest.mark.anyio
async def test_waiter_in_another_threads_event_loop_is_woken(anyio_backend: str) -> None:
    other_backend = "trio" if anyio_backend == "asyncio" else "asyncio"
    limiter = make_limiter(max_concurrency=1)
    await limiter.acquire_slot()
    results: list[str] = []

    async def wait() -> None:
        await limiter.acquire_slot()
        results.append("acquired")
        limiter.release_slot()

    other = threading.Thread(target=anyio.run, args=(wait,), kwargs={"backend": other_backend})
    other.start()
    await anyio.to_thread.run_sync(_wait_for_waiters, limiter, 1)
    limiter.release_slot()
    await anyio.to_thread.run_sync(other.join)
    assert results == ["acquired"]
    assert limiter.acquire_slot_sync(timeout=0)


def test_a_waiter_whose_event_loop_has_finished_is_skipped() -> None:
    limiter = make_limiter(max_concurrency=1)
    assert limiter.acquire_slot_sync()

    def dead_loop() -> None:
        raise RuntimeError("Event loop is closed")

    limiter._waiters.append(_Waiter(dead_loop))
    limiter.release_slot()
    assert not limiter._waiters
    assert limiter.acquire_slot_sync(timeout=0)


def test_interrupted_sync_waiter_leaves_no_trace() -> None:
    limiter = make_limiter(max_concurrency=1)
    assert limiter.acquire_slot_sync()

    def interrupt_when_waiting() -> None:
        _wait_for_waiters(limiter, 1)
        # A real signal, so that the blocked wait returns to run the handler.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_waiting)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire_slot_sync()
    interrupter.join()
    assert not limiter._waiters
    limiter.release_slot()
    assert limiter.acquire_slot_sync(timeout=0)


async def _in_scope(scope: anyio.CancelScope, func: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await func()


def _wait_for_waiters(limiter: SharedLimiter, count: int) -> None:
    """Block until ``count`` callers queue for a slot (they run in other threads)."""
    deadline = time.monotonic() + 5.0
    while len(limiter._waiters) != count:
        assert time.monotonic() < deadline, f"{count} waiters not queued within 5 s"
        time.sleep(0.001)


@pytest.mark.parametrize("value", [1.5, True, "2", 0, -1])
def test_max_concurrency_that_is_no_positive_integer_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"SharedLimiter\.max_concurrency"):
        SharedLimiter(max_concurrency=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["x", 0.2, {"ratio": 0.2}])
def test_a_budget_that_is_no_retry_budget_raises_type_error_naming_it(value: object) -> None:
    with pytest.raises(TypeError, match="budget"):
        SharedLimiter(budget=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"scope": ""}, ValueError, "scope"),
        ({"scope": 3}, TypeError, "scope"),
        ({"clock": 1.0}, TypeError, "clock"),
        ({"random": None}, TypeError, "random"),
    ],
)
def test_other_invalid_arguments_are_refused_naming_them(
    kwargs: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=field):
        SharedLimiter(**kwargs)  # type: ignore[arg-type]


def test_a_block_extended_while_its_end_is_being_noted_still_holds() -> None:
    limiter = SharedLimiter(clock=FakeClock(1001.0), random=lambda: 0.0, pacing=False)
    real_lock = threading.Lock()

    class ExtendedFirst:
        """The block lock, taken just after another thread extended the block."""

        def __enter__(self) -> None:
            limiter._blocked_until = 1006.0
            real_lock.acquire()

        def __exit__(self, *exc_info: object) -> None:
            real_lock.release()

    limiter._blocked_until = 1001.0  # a block that ends now
    limiter._blocked = True
    limiter._block_lock = ExtendedFirst()  # type: ignore[assignment]
    assert not limiter.try_admit()
    assert limiter.blocked_for() == 5.0
