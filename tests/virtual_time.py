"""Virtual time for tests of many concurrent requests: an injected clock and sleep."""

from __future__ import annotations

import heapq
import itertools

import anyio


class VirtualTime:
    """A clock and a sleep: sleepers wake in time order once every task is blocked."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), event))
        await event.wait()

    async def run(self) -> None:
        """Move time on while anyone sleeps; returns when nobody does."""
        while True:
            await anyio.wait_all_tasks_blocked()
            if not self._sleepers:
                return
            wake, _, event = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            event.set()
