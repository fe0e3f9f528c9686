"""`RedisLimiter`: a limiter whose block is shared through Redis (or Valkey) by a fleet.

`RedisStore` is the `retry_transport` store (see `SharedLimiter`'s ``store``) kept in Redis;
`RedisLimiter` is a `SharedLimiter` over one.

Needs the ``redis`` extra (``pip install retry-transport[redis]``). Importing
`retry_transport` itself never imports this module or redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._budget import RetryBudget
from ._checks import check_callable, check_number, check_type
from ._desk import Ticket, default_fingerprint_key
from ._limiter import SharedLimiter
from ._pacing import RateLimit

__all__ = ["RedisLimiter", "RedisStore"]

_logger = logging.getLogger("retry_transport")

_T = TypeVar("_T")

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

# Book one attempt in a scope's shared pace, by the server's clock: it goes at the later of
# now + ARGV[1] ms (what this process's pacing asks) and the scope's next free time per
# dimension; each dimension's next free time then moves on by its spacing (ARGV[3], [5], ...
# ms, named by ARGV[2], [4], ...). Answers the milliseconds to wait. A scope idle for ten
# minutes is forgotten.
_BOOK_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = now + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local tat = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tat > slot then slot = tat end
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], slot + tonumber(ARGV[i + 1]))
end
redis.call('PEXPIRE', KEYS[1], 600000)
return slot - now
"""

# Book one attempt in a limiter's declared rolling window, kept by the server's clock: at most
# ARGV[2] attempts (and ARGV[4] estimated tokens, when ARGV[4] > 0) in any ARGV[3] ms. KEYS[1]
# is a sorted set of the bookings (score: when it goes, in server ms; member: when, a sequence
# number and its tokens), KEYS[2] the sequence. The attempt goes at the earliest time from
# now + ARGV[1] ms (what this process's own pacing asks) that is no earlier than the latest
# booking and keeps the window; it is booked only if that is before now + ARGV[6] ms (a
# deadline; -1: none). ARGV[7], when not empty, is an earlier booking of the same attempt to
# give back first (held past its time, it is booked again for when it can go). Answers the
# milliseconds to wait and the new booking's member ('' when not booked).
_BOOK_WINDOW = """
if ARGV[7] ~= '' then redis.call('ZREM', KEYS[1], ARGV[7]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local requests = tonumber(ARGV[2])
local per = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local need = tonumber(ARGV[5])
local deadline = tonumber(ARGV[6])
local at = now + tonumber(ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 and tonumber(last[2]) > at then at = tonumber(last[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at - per)
local count = redis.call('ZCARD', KEYS[1])
if count >= requests then
  local oldest = redis.call('ZRANGE', KEYS[1], count - requests, count - requests, 'WITHSCORES')
  local free = tonumber(oldest[2]) + per
  if free > at then at = free end
end
if limit > 0 then
  if need > limit then need = limit end
  local booked = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local total = 0
  for i = 1, #booked, 2 do
    local spent = tonumber(string.match(booked[i], ':([^:]*)$'))
    total = total + spent
  end
  for i = 1, #booked, 2 do
    local when = tonumber(booked[i + 1])
    if when > at - per and total + need <= limit then break end
    total = total - tonumber(string.match(booked[i], ':([^:]*)$'))
    if when + per > at then at = when + per end
  end
end
local member = ''
if deadline < 0 or at < now + deadline then
  local seq = redis.call('INCR', KEYS[2])
  member = at .. ':' .. seq .. ':' .. need
  redis.call('ZADD', KEYS[1], at, member)
  local keep = at - now + per + 1000
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
end
return {at - now, member}
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
            "RedisLimiter (RedisStore) with a redis.asyncio client works only on asyncio; "
            "on trio, give it a sync redis.Redis client (its calls then run in a worker thread)"
        ) from None


def _seconds_left(left_ms: int) -> float:
    """Seconds left of a block from its key's PTTL: -2 (no key) is none; 0 ends within the
    millisecond, so still holds for one."""
    if left_ms < 0:
        return 0.0
    return max(left_ms, 1) / 1000.0


class RedisStore:
    """A `retry_transport` store kept in Redis (or Valkey), shared by every process using it.

    A scope's block is a key (``retry_transport:block:<scope>``) whose time to live is the
    block: a Lua script only ever extends it, and its expiry is kept by the server's clock, so
    processes whose clocks disagree still agree on when it ends.

    Each call is bounded by ``timeout`` whatever the client's own retry settings. After a
    failure (error or timeout) it logs one warning per outage on the ``retry_transport``
    logger, answers ``None`` without I/O for ``retry_interval`` seconds, then lets one caller
    probe Redis again; on success the recovery is logged (INFO). It never raises for Redis
    trouble and never hangs a caller.

    A ``redis.Redis`` client serves sync callers, and async callers on asyncio or trio (its
    calls run in a worker thread); its connection settings are copied into a private pool with
    short timeouts and no retries (`close` releases it). A ``redis.asyncio.Redis`` client serves
    async callers on asyncio only, within the event loop it belongs to; its calls are cancelled
    after ``timeout``.

    Args:
        redis_client: a ``redis.Redis`` or ``redis.asyncio.Redis`` client.
        timeout: seconds each Redis call may take before it counts as a failure (from sync
            code, the private pool's socket timeout: for connecting and for each reply).
        retry_interval: seconds to leave Redis alone after a failure.
        clock: monotonic time in seconds.
        label: names the store's user in its log lines.

    Raises:
        TypeError: ``redis_client`` is neither kind of client, or a sync client on a Sentinel
            or cluster pool. Later: an asyncio client used from trio or from sync code.
        ValueError: an invalid ``timeout`` or ``retry_interval``.
    """

    def __init__(
        self,
        redis_client: redis.Redis | redis.asyncio.Redis,
        *,
        timeout: float = 0.1,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        label: str = "redis",
    ) -> None:
        owner = type(self).__name__
        check_number(owner, "timeout", timeout, positive=True)
        check_number(owner, "retry_interval", retry_interval, positive=False)
        check_callable(owner, "clock", clock)
        check_type(owner, "label", label, str)
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._clock = clock
        self._label = label
        self._async_client: redis.asyncio.Redis | None = None
        self._sync_client: redis.Redis | None = None
        if isinstance(redis_client, redis.asyncio.Redis):
            self._async_client = redis_client
            self._async_extend = redis_client.register_script(_EXTEND_BLOCK)
            self._async_book = redis_client.register_script(_BOOK_PACE)
            self._async_window = redis_client.register_script(_BOOK_WINDOW)
        elif isinstance(redis_client, redis.Redis):
            self._sync_client = _bounded_client(redis_client, timeout)
            self._sync_extend = self._sync_client.register_script(_EXTEND_BLOCK)
            self._sync_book = self._sync_client.register_script(_BOOK_PACE)
            self._sync_window = self._sync_client.register_script(_BOOK_WINDOW)
        else:
            raise TypeError(
                "redis_client must be a redis.Redis or redis.asyncio.Redis client, "
                f"got {type(redis_client).__name__}"
            )
        self._state_lock = threading.Lock()
        self._skip_until = -math.inf
        self._failed_at = -math.inf
        self._down = False

    @staticmethod
    def key(scope: str) -> str:
        """The Redis key that holds ``scope``'s block."""
        return f"retry_transport:block:{scope}"

    def answers_locally(self) -> bool:
        """True while Redis is left alone after a failure (reads answer None at once)."""
        return self._clock() < self._skip_until

    async def read(self, scope: str) -> float | None:
        """Seconds left of ``scope``'s block (one bounded ``PTTL``); None if Redis is skipped
        or fails."""
        key = self.key(scope)
        left_ms = await self._call_async(
            lambda: self._read_async(key), lambda: self._read_sync(key)
        )
        return None if left_ms is None else _seconds_left(left_ms)

    def read_sync(self, scope: str) -> float | None:
        """`read` for sync callers (needs a sync ``redis.Redis`` client)."""
        self.require_sync()
        key = self.key(scope)
        left_ms = self._call_sync(lambda: self._read_sync(key))
        return None if left_ms is None else _seconds_left(left_ms)

    async def extend(self, scope: str, seconds: float) -> float | None:
        """Extend ``scope``'s block to ``seconds`` from now by the server's clock, never
        shortening it; the seconds left afterwards, or None if Redis is skipped or fails."""
        key, ms = self.key(scope), _milliseconds(seconds)
        left_ms = await self._call_async(
            lambda: self._extend_async(key, ms), lambda: self._extend_sync(key, ms)
        )
        return None if left_ms is None else left_ms / 1000.0

    def extend_sync(self, scope: str, seconds: float) -> float | None:
        """`extend` for sync callers (needs a sync ``redis.Redis`` client)."""
        self.require_sync()
        key, ms = self.key(scope), _milliseconds(seconds)
        left_ms = self._call_sync(lambda: self._extend_sync(key, ms))
        return None if left_ms is None else left_ms / 1000.0

    async def book_pace(
        self, scope: str, wait: float, spacing: tuple[tuple[str, float], ...]
    ) -> float | None:
        """Book an attempt in ``scope``'s fleet-wide pace (see `_BOOK_PACE`): the seconds it
        must wait, at least ``wait``; None if Redis is skipped or fails."""
        key, args = self._pace_args(scope, wait, spacing)
        left_ms = await self._call_async(
            lambda: self._book_async(key, args), lambda: self._book_sync(key, args)
        )
        return None if left_ms is None else max(0.0, left_ms / 1000.0)

    def book_pace_sync(
        self, scope: str, wait: float, spacing: tuple[tuple[str, float], ...]
    ) -> float | None:
        """`book_pace` for sync callers."""
        self.require_sync()
        key, args = self._pace_args(scope, wait, spacing)
        left_ms = self._call_sync(lambda: self._book_sync(key, args))
        return None if left_ms is None else max(0.0, left_ms / 1000.0)

    @staticmethod
    def _pace_args(
        scope: str, wait: float, spacing: tuple[tuple[str, float], ...]
    ) -> tuple[str, list[str | int]]:
        args: list[str | int] = [max(0, math.ceil(wait * 1000.0))]
        for name, seconds in spacing:
            args += [name, max(0, math.ceil(seconds * 1000.0))]
        return f"retry_transport:pace:{scope}", args

    async def book_window(
        self,
        scope: str,
        rate: RateLimit,
        wait: float,
        tokens: float,
        left: float | None,
        drop: str | None = None,
    ) -> tuple[float, str | None] | None:
        """Book an attempt of ``tokens`` estimated tokens in ``scope``'s declared rolling
        window of ``rate`` (``rate.per`` plus `RateLimit.margin`), kept fleet-wide (see
        `_BOOK_WINDOW`): the seconds it must wait, at least ``wait``, and the booking (to give
        back as ``drop`` when booking the same attempt again); booked only if that is less
        than ``left`` seconds (None: no limit), else the booking is None. ``drop`` is given
        back first. None if Redis is skipped or fails."""
        keys, args = self._window_args(scope, rate, wait, tokens, left, drop)
        answer = await self._call_async(
            lambda: self._window_async(keys, args), lambda: self._window_sync(keys, args)
        )
        return _window_answer(answer)

    def book_window_sync(
        self,
        scope: str,
        rate: RateLimit,
        wait: float,
        tokens: float,
        left: float | None,
        drop: str | None = None,
    ) -> tuple[float, str | None] | None:
        """`book_window` for sync callers."""
        self.require_sync()
        keys, args = self._window_args(scope, rate, wait, tokens, left, drop)
        return _window_answer(self._call_sync(lambda: self._window_sync(keys, args)))

    async def give_back(self, scope: str, booking: str) -> None:
        """Give back ``booking`` (from `book_window`) in ``scope``'s declared window: its
        attempt will not go. Redis skipped or failing: the booking expires with the window."""
        key = f"retry_transport:rate:{scope}"
        await self._call_async(
            lambda: self._zrem_async(key, booking), lambda: self._zrem_sync(key, booking)
        )

    def give_back_sync(self, scope: str, booking: str) -> None:
        """`give_back` for sync callers."""
        self.require_sync()
        key = f"retry_transport:rate:{scope}"
        self._call_sync(lambda: self._zrem_sync(key, booking))

    async def _zrem_async(self, key: str, member: str) -> None:
        assert self._async_client is not None
        await self._async_client.zrem(key, member)

    def _zrem_sync(self, key: str, member: str) -> None:
        assert self._sync_client is not None
        self._sync_client.zrem(key, member)

    @staticmethod
    def _window_args(
        scope: str,
        rate: RateLimit,
        wait: float,
        tokens: float,
        left: float | None,
        drop: str | None,
    ) -> tuple[list[str], list[int | str]]:
        key = f"retry_transport:rate:{scope}"
        args: list[int | str] = [
            max(0, math.ceil(wait * 1000.0)),
            rate.requests,
            max(1, math.ceil((rate.per + rate.margin) * 1000.0)),
            0 if rate.tokens is None else rate.tokens,
            max(0, math.ceil(tokens)),
            -1 if left is None else max(0, math.floor(left * 1000.0)),
            drop or "",
        ]
        return [key, key + ":seq"], args

    async def _window_async(self, keys: list[str], args: list[int | str]) -> tuple[int, str]:
        return _window_reply(await self._async_window(keys=keys, args=args))

    def _window_sync(self, keys: list[str], args: list[int | str]) -> tuple[int, str]:
        return _window_reply(self._sync_window(keys=keys, args=args))

    async def _book_async(self, key: str, args: list[str | int]) -> int:
        return int(await self._async_book(keys=[key], args=args))

    def _book_sync(self, key: str, args: list[str | int]) -> int:
        return int(self._sync_book(keys=[key], args=args))

    def close(self) -> None:
        """Release the private connection pool made for a sync client.

        The client given to the constructor is left alone: it stays the caller's to close.
        """
        if self._sync_client is not None:
            self._sync_client.connection_pool.disconnect()

    def require_sync(self) -> None:
        """Raise TypeError unless the store can serve sync callers (has a sync client)."""
        if self._sync_client is None:
            raise TypeError(
                "RedisLimiter (RedisStore) with a redis.asyncio client cannot serve sync "
                "callers; give it a sync redis.Redis client"
            )

    # -- Redis calls ----------------------------------------------------------------------

    async def _read_async(self, key: str) -> int:
        assert self._async_client is not None
        return int(await self._async_client.pttl(key))

    def _read_sync(self, key: str) -> int:
        assert self._sync_client is not None
        answer: object = self._sync_client.pttl(key)
        assert isinstance(answer, int)
        return answer

    async def _extend_async(self, key: str, ms: int) -> int:
        return int(await self._async_extend(keys=[key], args=[ms]))

    def _extend_sync(self, key: str, ms: int) -> int:
        return int(self._sync_extend(keys=[key], args=[ms]))

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
        self, async_call: Callable[[], Awaitable[_T]], sync_call: Callable[[], _T]
    ) -> _T | None:
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

    def _call_sync(self, call: Callable[[], _T]) -> _T | None:
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
            self._label,
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
        _logger.info("Redis reachable again for limiter %r; blocks are shared again", self._label)


def _window_reply(reply: object) -> tuple[int, str]:
    """The script's answer: milliseconds to wait and the booking's member."""
    assert isinstance(reply, list)
    wait, member = reply
    text = member.decode() if isinstance(member, bytes) else str(member)
    return int(wait), text


def _window_answer(answer: tuple[int, str] | None) -> tuple[float, str | None] | None:
    if answer is None:
        return None
    wait_ms, member = answer
    return max(0.0, wait_ms / 1000.0), member or None


def _tokens(ticket: Ticket) -> float:
    cost = ticket.cost
    return cost.input_tokens + cost.output_tokens


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000.0))


class RedisLimiter(SharedLimiter):
    """A limiter whose block lives in Redis, so a fleet of processes honours one 429.

    Does the job of `retry_transport.SharedLimiter` across processes: it is a `SharedLimiter`
    over a `RedisStore`, scoped by ``name``, so a congestion block set by any replica holds
    every replica using the same ``name`` against the same server.

    - **Block**: a key (``retry_transport:block:<name>``) whose time to live is the block. A
      Lua script only ever extends it; its expiry is kept by the server's clock, so replicas
      whose clocks disagree still agree on when it ends. `gate` asks the server for the time
      left (one ``PTTL``) when no block is known locally; a known block is answered locally
      until it ends, with the same release jitter as `SharedLimiter`, so waiters do not poll.
      A block is also kept locally at once, so local requests hold even if Redis is slow.
    - **Declared rate**: with ``rate=``, every attempt is booked in one rolling window per
      ``name`` (a sorted set of send times, ``retry_transport:rate:<name>``, booked by a Lua
      script on the server's clock), so N replicas together never send more than
      ``rate.requests`` (and ``rate.tokens``) in any ``rate.per`` seconds. Each process keeps
      the window locally too, and alone while Redis is unreachable.
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
        rate: a declared `RateLimit` for every attempt through every limiter of this
            ``name``: one rolling window for the fleet, kept in Redis by the server's clock
            (while Redis is unreachable, each process keeps the window alone).
        pacing: pace from the providers' rate-limit headers and adapt where none come; a 429
            or overload then blocks its scope (origin, key fingerprint, model) fleet-wide.
        clock: monotonic time in seconds.
        random: uniform random numbers in [0, 1), used for the release jitter.
        fingerprint_key: the key of the credential fingerprints; None: one derived from
            ``name``, so that replicas agree (pass a secret of your own to make fingerprints
            unguessable outside the fleet).

    Raises:
        TypeError: ``redis_client`` is neither kind of client, or a sync client on a Sentinel
            or cluster pool; ``name`` is not a string; ``budget`` is not a `RetryBudget` (or
            None). Later: an asyncio client used from trio or from sync code.
        ValueError: an invalid ``name``, ``timeout``, ``retry_interval`` or ``max_concurrency``.
    """

    __slots__ = ("_redis_store",)

    def __init__(
        self,
        redis_client: redis.Redis | redis.asyncio.Redis,
        *,
        name: str,
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        max_concurrency: int | None = None,
        timeout: float = 0.1,
        retry_interval: float = 5.0,
        rate: RateLimit | None = None,
        pacing: bool = True,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        fingerprint_key: bytes | None = None,
    ) -> None:
        check_type("RedisLimiter", "name", name, str)
        if not name:
            raise ValueError(f"RedisLimiter.name must be a non-empty string, got {name!r}")
        check_number("RedisLimiter", "timeout", timeout, positive=True)
        check_number("RedisLimiter", "retry_interval", retry_interval, positive=False)
        check_type("RedisLimiter", "budget", budget, (RetryBudget, type(None)))
        check_callable("RedisLimiter", "clock", clock)
        store = RedisStore(
            redis_client,
            timeout=timeout,
            retry_interval=retry_interval,
            clock=clock,
            label=name,
        )
        self._redis_store = store
        super().__init__(
            budget,
            max_concurrency,
            store=store,
            scope=name,
            rate=rate,
            pacing=pacing,
            clock=clock,
            random=random,
            # Every replica must fingerprint a key alike, or they would not share its scope.
            fingerprint_key=default_fingerprint_key(name)
            if fingerprint_key is None
            else fingerprint_key,
        )

    async def _share_pace(self, ticket: Ticket, wait: float, left: float | None) -> float:
        """Book the attempt in its scope's fleet-wide pace too: N replicas reading the same
        headers together keep one pace, not N; and in the declared rate's fleet-wide window,
        so N replicas together keep one `RateLimit`. Redis down: the local booking stands."""
        booking = ticket.booking
        assert booking is not None
        store = self._redis_store
        if booking.spacing:
            shared = await store.book_pace(ticket.keys[0], wait, booking.spacing)
            wait = self._adopt(ticket, wait, shared, left)
        rate = self.rate
        if rate is not None and wait < math.inf:
            tokens = _tokens(ticket) if rate.tokens is not None else 0.0
            booked = await store.book_window(self.scope, rate, wait, tokens, left, ticket.shared)
            wait = self._adopt_window(ticket, wait, booked, left)
        return wait

    def _share_pace_sync(self, ticket: Ticket, wait: float, left: float | None) -> float:
        """`_share_pace` for synchronous callers."""
        booking = ticket.booking
        assert booking is not None
        store = self._redis_store
        if booking.spacing:
            shared = store.book_pace_sync(ticket.keys[0], wait, booking.spacing)
            wait = self._adopt(ticket, wait, shared, left)
        rate = self.rate
        if rate is not None and wait < math.inf:
            tokens = _tokens(ticket) if rate.tokens is not None else 0.0
            booked = store.book_window_sync(self.scope, rate, wait, tokens, left, ticket.shared)
            wait = self._adopt_window(ticket, wait, booked, left)
        return wait

    async def finish_ticket(self, ticket: Ticket) -> None:
        """The ticket's request is over: give back its booking in the fleet's declared window
        too, if its attempt never went on it (cancelled, or given up while it waited), so
        that it does not hold a place there until the window has passed. Shielded: a
        cancelled request still gives its place back (within the store's ``timeout``)."""
        shared = ticket.shared
        await super().finish_ticket(ticket)
        if shared is not None:
            ticket.shared = None
            with anyio.CancelScope(shield=True):
                await self._redis_store.give_back(self.scope, shared)

    def finish_ticket_sync(self, ticket: Ticket) -> None:
        """`finish_ticket` for synchronous callers."""
        shared = ticket.shared
        super().finish_ticket_sync(ticket)
        if shared is not None:
            ticket.shared = None
            self._redis_store.give_back_sync(self.scope, shared)

    def _adopt_window(
        self,
        ticket: Ticket,
        wait: float,
        booked: tuple[float, str | None] | None,
        left: float | None,
    ) -> float:
        """Take in the fleet window's answer: its booking (given back if the attempt is later
        booked again) and its wait, if longer."""
        if booked is None:
            return wait
        shared, ticket.shared = booked
        return self._adopt(ticket, wait, shared, left)

    def _adopt(
        self, ticket: Ticket, wait: float, shared: float | None, left: float | None
    ) -> float:
        if shared is None or shared <= wait:
            return wait
        if left is not None and shared >= left:
            desk = self._desk
            assert desk is not None
            desk.cancel(ticket)  # it will not go: its local booking is free again
            return math.inf
        booking = ticket.booking
        assert booking is not None
        ticket.booking = dataclasses.replace(booking, at=booking.at + (shared - wait))
        ticket.paced += shared - wait
        return shared

    @property
    def name(self) -> str:
        """The name that replicas sharing a block have in common (the store scope)."""
        return self.scope

    @property
    def key(self) -> str:
        """The Redis key that holds the block."""
        return self._redis_store.key(self.scope)

    @property
    def store(self) -> RedisStore:
        """The Redis store the block is shared through."""
        return self._redis_store

    def gate_sync(self) -> float:
        """`gate` for sync callers (needs a sync ``redis.Redis`` client)."""
        self._redis_store.require_sync()
        return super().gate_sync()

    def block_sync(self, seconds: float) -> None:
        """`block` for sync callers (needs a sync ``redis.Redis`` client)."""
        self._redis_store.require_sync()
        super().block_sync(seconds)

    def close(self) -> None:
        """Release the private connection pool made for a sync client.

        The client given to the constructor is left alone: it stays the caller's to close.
        """
        self._redis_store.close()
