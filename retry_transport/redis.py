"""`RedisLimiter`: a limiter whose block is shared through Redis (or Valkey) by a fleet.

Needs the ``redis`` extra (``pip install retry-transport[redis]``). Importing
`retry_transport` itself never imports this module or redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import anyio.to_thread
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._budget import RetryBudget
from ._limiter import SharedLimiter

__all__ = ["RedisLimiter"]

_logger = logging.getLogger("retry_transport")

_DEFAULT_BUDGET = RetryBudget()

# Extend the block to ARGV[1] milliseconds from now unless it already lasts longer; answer
# the milliseconds left. The block is the key's time to live, kept by the server's clock.
_EXTEND_BLOCK = """
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  return ms
end
return left
"""

# Connection settings of the caller's client that are not carried over into the private pool
# built for a sync client: its timeouts and retries (replaced) and per-pool internals.
_NOT_COPIED = frozenset(
    {
        "retry",
        "retry_on_error",
        "retry_on_timeout",
        "socket_timeout",
        "socket_connect_timeout",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "himport_registry",
        "event_dispatcher",
        "cache",
        "cache_config",
    }
)


def _bounded_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A client for the same server as ``client`` whose every call gives up after ``timeout``.

    A sync call cannot be cancelled from outside, so the bound has to be in the socket: the
    private pool uses ``timeout`` for connecting and for each reply, and never retries.
    """
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        raise TypeError(
            "RedisLimiter needs a redis.Redis client with a plain connection pool "
            f"(not {type(pool).__name__}); Sentinel and cluster clients are not supported"
        )
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _NOT_COPIED}
    kwargs.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
    )
    bounded_pool = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=bounded_pool)


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise TypeError(
            "RedisLimiter with a redis.asyncio client works only on asyncio; on trio, give "
            "it a sync redis.Redis client (its calls then run in a worker thread)"
        ) from None


class RedisLimiter:
    """A limiter whose block lives in Redis, so a fleet of processes honours one 429.

    Does the job of `retry_transport.SharedLimiter` across processes: a congestion block set
    by any replica holds every replica using the same ``name`` against the same server.

    - **Block**: a key (``retry_transport:block:<name>``) whose time to live is the block. A
      Lua script only ever extends it; its expiry is kept by the server's clock, so replicas
      whose clocks disagree still agree on when it ends. `gate` asks the server for the time
      left (one ``PTTL``) when no block is known locally; a known block is answered locally
      until it ends, with the same release jitter as `SharedLimiter`, so waiters do not poll.
      A block is also kept locally at once, so local requests hold even if Redis is slow.
    - **Budget and concurrency** stay in-process: a budget is a ratio, so per-process budgets
      add up to the same ratio fleet-wide.
    - **Failures**: each Redis call is bounded by ``timeout`` whatever the client's own retry
      settings. After a failure (error or timeout) it logs one warning per outage on the
      ``retry_transport`` logger, skips Redis for ``retry_interval`` seconds and acts as an
      in-process limiter meanwhile; then one caller probes Redis again, and on success the
      recovery is logged (INFO). Redis trouble never raises and never hangs a request.
    - **Clients**: a ``redis.Redis`` client serves sync transports, and async transports on
      asyncio or trio (its calls run in a worker thread); its connection settings are copied
      into a private pool with short timeouts and no retries (`close` releases it). A
      ``redis.asyncio.Redis`` client serves async transports on asyncio only, within the event
      loop it belongs to; its calls are cancelled after ``timeout``.

    Args:
        redis_client: a ``redis.Redis`` or ``redis.asyncio.Redis`` client.
        name: identifies the upstream; replicas sharing a name share a block.
        budget: the retry budget (per process), or None for no limit on retries.
        max_concurrency: the most attempts in flight at once in this process, or None.
        timeout: seconds each Redis call may take before it counts as a failure (from sync
            code, the private pool's socket timeout: for connecting and for each reply).
        retry_interval: seconds to leave Redis alone after a failure.
        clock: monotonic time in seconds.
        random: uniform random numbers in [0, 1), used for the release jitter.

    Raises:
        TypeError: ``redis_client`` is neither kind of client, or a sync client on a Sentinel
            or cluster pool. Later: an asyncio client used from trio or from sync code.
        ValueError: an invalid ``name``, ``timeout``, ``retry_interval`` or ``max_concurrency``.
    """

    def __init__(
        self,
        redis_client: redis.Redis | redis.asyncio.Redis,
        *,
        name: str,
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        max_concurrency: int | None = None,
        timeout: float = 0.1,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not (math.isfinite(timeout) and timeout > 0.0):
            raise ValueError(f"timeout must be a finite number > 0, got {timeout!r}")
        if not (math.isfinite(retry_interval) and retry_interval >= 0.0):
            raise ValueError(f"retry_interval must be a finite number >= 0, got {retry_interval!r}")
        self._local = SharedLimiter(budget, max_concurrency, clock=clock, random=random)
        self._name = name
        self._key = f"retry_transport:block:{name}"
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._async_client: redis.asyncio.Redis | None = None
        self._sync_client: redis.Redis | None = None
        if isinstance(redis_client, redis.asyncio.Redis):
            self._async_client = redis_client
            self._async_extend = redis_client.register_script(_EXTEND_BLOCK)
        elif isinstance(redis_client, redis.Redis):
            self._sync_client = _bounded_client(redis_client, timeout)
            self._sync_extend = self._sync_client.register_script(_EXTEND_BLOCK)
        else:
            raise TypeError(
                "redis_client must be a redis.Redis or redis.asyncio.Redis client, "
                f"got {type(redis_client).__name__}"
            )
        self._state_lock = threading.Lock()
        self._skip_until = -math.inf
        self._failed_at = -math.inf
        self._down = False

    @property
    def name(self) -> str:
        """The name that replicas sharing a block have in common."""
        return self._name

    @property
    def key(self) -> str:
        """The Redis key that holds the block."""
        return self._key

    # -- in-process parts ---------------------------------------------------------------

    def try_admit(self) -> bool:
        """Admit a first attempt without I/O, only while Redis is being skipped after a failure.

        Otherwise False: the shared block can only be learnt from Redis, through `gate`.
        """
        if self._clock() < self._skip_until:
            return self._local.try_admit()
        return False

    def note_first_attempt(self) -> None:
        """Count one first attempt for the (in-process) budget."""
        self._local.note_first_attempt()

    def allow_retry(self) -> bool:
        """Spend one retry from the (in-process) budget: True if it fits."""
        return self._local.allow_retry()

    async def acquire_slot(self) -> None:
        """Wait for an in-process concurrency slot; at once without a cap."""
        await self._local.acquire_slot()

    def acquire_slot_sync(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: forever) for an in-process concurrency slot."""
        return self._local.acquire_slot_sync(timeout)

    def release_slot(self) -> None:
        """Give an in-process concurrency slot back; never blocks."""
        self._local.release_slot()

    def blocked_for(self) -> float:
        """Seconds of block left as known in this process (0.0 when none)."""
        return self._local.blocked_for()

    # -- the shared block ---------------------------------------------------------------

    async def gate(self) -> float:
        """Seconds to wait before sending: the block's remainder plus jitter, or 0.0.

        A block known locally is answered without I/O. Otherwise one bounded Redis call;
        while Redis is unreachable, only the block known locally counts.
        """
        wait = self._local.gate_sync()
        if wait > 0.0:
            return wait
        left_ms = await self._call_async(self._read_async, self._read_sync)
        return self._learn(left_ms)

    def gate_sync(self) -> float:
        """`gate` for sync callers (needs a sync ``redis.Redis`` client)."""
        self._require_sync()
        wait = self._local.gate_sync()
        if wait > 0.0:
            return wait
        return self._learn(self._call_sync(self._read_sync))

    async def block(self, seconds: float) -> None:
        """Extend the fleet's block to ``seconds`` from now; never shortens it.

        Kept locally at once, then in Redis. Zero, negative, infinite and NaN are ignored.
        """
        if not 0.0 < seconds < math.inf:
            return
        self._local.block_sync(seconds)
        ms = max(1, math.ceil(seconds * 1000.0))
        self._learn_block(
            await self._call_async(lambda: self._extend_async(ms), lambda: self._extend_sync(ms))
        )

    def block_sync(self, seconds: float) -> None:
        """`block` for sync callers (needs a sync ``redis.Redis`` client)."""
        self._require_sync()
        if not 0.0 < seconds < math.inf:
            return
        self._local.block_sync(seconds)
        ms = max(1, math.ceil(seconds * 1000.0))
        self._learn_block(self._call_sync(lambda: self._extend_sync(ms)))

    def close(self) -> None:
        """Release the private connection pool made for a sync client.

        The client given to the constructor is left alone: it stays the caller's to close.
        """
        if self._sync_client is not None:
            self._sync_client.connection_pool.disconnect()

    def _learn(self, left_ms: int | None) -> float:
        # PTTL answers -2 without a block, and 0 for one that ends within the millisecond.
        if left_ms is None or left_ms < 0:
            return 0.0
        self._local.block_sync(max(left_ms, 1) / 1000.0)
        return self._local.gate_sync()

    def _learn_block(self, left_ms: int | None) -> None:
        if left_ms is not None and left_ms > 0:
            self._local.block_sync(left_ms / 1000.0)

    # -- Redis calls ----------------------------------------------------------------------

    async def _read_async(self) -> int:
        assert self._async_client is not None
        return int(await self._async_client.pttl(self._key))

    def _read_sync(self) -> int:
        assert self._sync_client is not None
        return int(cast(Any, self._sync_client.pttl(self._key)))

    async def _extend_async(self, ms: int) -> int:
        return int(await self._async_extend(keys=[self._key], args=[ms]))

    def _extend_sync(self, ms: int) -> int:
        return int(self._sync_extend(keys=[self._key], args=[ms]))

    def _require_sync(self) -> None:
        if self._sync_client is None:
            raise TypeError(
                "RedisLimiter with a redis.asyncio client cannot serve sync callers; "
                "give it a sync redis.Redis client"
            )

    def _claim(self) -> bool:
        """Whether to use Redis now; while it is down, lets one caller probe per interval."""
        now = self._clock()
        if now < self._skip_until:
            return False
        if self._down:
            with self._state_lock:
                if now < self._skip_until:
                    return False
                self._skip_until = now + self._retry_interval
        return True

    async def _call_async(
        self, async_call: Callable[[], Awaitable[int]], sync_call: Callable[[], int]
    ) -> int | None:
        """Run one Redis call bounded by the timeout; None if Redis is skipped or fails."""
        if self._async_client is not None:
            _require_asyncio()
        if not self._claim():
            return None
        started = self._clock()
        try:
            with anyio.fail_after(self._timeout):
                if self._async_client is not None:
                    result = await async_call()
                else:
                    result = await anyio.to_thread.run_sync(sync_call, abandon_on_cancel=True)
        except Exception as exc:
            self._failed(exc)
            return None
        self._succeeded(started)
        return result

    def _call_sync(self, call: Callable[[], int]) -> int | None:
        """Run one Redis call (bounded by the private pool's timeouts); None if skipped/failed."""
        if not self._claim():
            return None
        started = self._clock()
        try:
            result = call()
        except Exception as exc:
            self._failed(exc)
            return None
        self._succeeded(started)
        return result

    def _failed(self, exc: Exception) -> None:
        with self._state_lock:
            now = self._clock()
            self._failed_at = now
            self._skip_until = now + self._retry_interval
            if self._down:
                return
            self._down = True
        _logger.warning(
            "Redis unreachable for limiter %r (%s: %s); blocks are kept in-process only, "
            "Redis is tried again every %gs",
            self._name,
            type(exc).__name__,
            str(exc) or f"no answer within {self._timeout:g}s",
            self._retry_interval,
        )

    def _succeeded(self, started: float) -> None:
        if not self._down:
            return
        with self._state_lock:
            # A call begun before the latest failure proves nothing about recovery.
            if not self._down or started < self._failed_at:
                return
            self._down = False
            self._skip_until = -math.inf
        _logger.info("Redis reachable again for limiter %r; blocks are shared again", self._name)
