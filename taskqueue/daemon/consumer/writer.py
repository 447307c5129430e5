"""The coalescing writer: what the consumer has to tell Redis, in as few round trips as it takes.

Items are added without waiting; one loop writes everything gathered so far in one call, and
whatever arrives while that call is on its way goes in the next. A burst of N items costs one
round trip per batch, not N. Outcomes are appended (each must be written); progress is keyed
by task (a newer value replaces one not written yet, so a processor reporting in a tight loop
costs one write per round trip, not one per call).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

from taskqueue.health import RedisGuard

T = TypeVar("T")


class CoalescingWriter(Generic[T]):
    """Gathers items and writes them in batches with ``write``, one call per batch.

    Use a writer one way: :meth:`append` (every item is written, in order) or :meth:`put`
    (only the newest item of each key is).

    A batch whose write fails with a Redis error is kept and written again after the guard's
    backoff, ahead of the items that came meanwhile (where one of those has the same key, the
    newer item wins, in the older one's place). Any other error propagates out of :meth:`run`.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[object]], guard: RedisGuard) -> None:
        self._write = write
        self._guard = guard
        self._pending: dict[Hashable, T] = {}
        self._in_flight = 0
        self._ready = trio.Event()
        self._closed = False
        self._written = trio.Event()
        self._seq = itertools.count()

    def __len__(self) -> int:
        """How many items are not written yet (including a batch on its way)."""
        return len(self._pending) + self._in_flight

    def append(self, item: T) -> None:
        """Queue ``item`` to be written after those queued before it."""
        self._pending[next(self._seq)] = item
        self._ready.set()

    def put(self, key: Hashable, item: T) -> None:
        """Queue ``item``, replacing the item of ``key`` not written yet, if any."""
        self._pending[key] = item
        self._ready.set()

    def close(self) -> None:
        """No more items: :meth:`run` returns once the pending ones are written."""
        self._closed = True
        self._ready.set()

    async def wait_written(self) -> None:
        """Wait until :meth:`close` was called and every item has been written."""
        await self._written.wait()

    async def run(self) -> None:
        """Write batches until closed and drained.

        Cancellation points: waiting for items, the write, and the backoff after a failed one.
        Cancelled during a write, the batch counts as not written and is kept (in
        :meth:`__len__`) but not retried: cancelling the loop abandons what is pending.
        """
        while True:
            if not self._pending:
                if self._closed:
                    self._written.set()
                    return
                await self._ready.wait()
                self._ready = trio.Event()
                continue
            batch, self._pending = self._pending, {}
            self._in_flight = len(batch)
            written = False
            try:
                async with self._guard:
                    await self._write(list(batch.values()))
                    written = True
            finally:
                self._in_flight = 0
                if not written:
                    self._pending = batch | self._pending
