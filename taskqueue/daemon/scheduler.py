"""The scheduler: moves delayed tasks and retries whose backoff has elapsed to their queues,
and ends the waiting tasks whose deadline passed (``expired``).

It sleeps until the next scheduled task or deadline is due; a newly submitted one that is due
earlier wakes it through the notifications service, so delays and deadlines are kept to the
millisecond rather than to a polling interval.
"""

from __future__ import annotations

import math

import trio

from taskqueue.broker import Broker
from taskqueue.health import Health, RedisGuard

PROMOTE_BATCH = 1000
#: The longest it sleeps with nothing scheduled (a safety net: wake-ups come by message).
IDLE_SLEEP = 30.0


class Scheduler:
    name = "scheduler"
    drains = False

    def __init__(self, broker: Broker, *, health: Health) -> None:
        self.broker = broker
        self.health = health
        self._next_due_ms: float = 0
        self._wakeup = trio.Event()
        self.promoted = 0

    def scheduled(self, at_ms: int) -> None:
        """A task was scheduled for ``at_ms`` (0: something may have changed)."""
        if at_ms < self._next_due_ms:
            self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        guard = RedisGuard(self.health)
        task_status.started()
        while True:
            # A fresh event, and "wake me for anything", before asking Redis: a task scheduled
            # while the promote runs must not be missed.
            self._wakeup = trio.Event()
            self._next_due_ms = math.inf
            delay = 0.0
            async with guard:
                result = await self.broker.promote(PROMOTE_BATCH)
                guard.succeeded()
                self.promoted += result.promoted
                if result.promoted >= PROMOTE_BATCH:
                    continue
                if result.next_due_ms is None:
                    self._next_due_ms = math.inf
                    delay = IDLE_SLEEP
                else:
                    self._next_due_ms = result.next_due_ms
                    delay = max(0.0, (result.next_due_ms - self.broker.clock()) / 1000)
                with trio.move_on_after(min(delay, IDLE_SLEEP)):
                    await self._wakeup.wait()
