"""The trimmer: deletes finished records past their retention, so Redis memory stays bounded.

Each finished state keeps its records for an age and up to a count (``[retention]``); a dead
letter dropped for either is counted (``total|dead_dropped`` in Redis, and
``taskqueue_records_trimmed_total`` here). Trimming is a service of its own, off the path
of reports and claims: a call deletes up to :data:`BATCH` records, and a full batch is
followed at once by the next, so trimming keeps up with any rate tasks finish at; an empty
one waits ``interval``. Every daemon runs one; the script is atomic, so several at once
share the work.
"""

from __future__ import annotations

import logging

import trio

from taskqueue.broker import Broker
from taskqueue.health import Health, RedisGuard
from taskqueue.metrics import Metrics

log = logging.getLogger(__name__)

#: Records one call may delete: a few milliseconds of Redis time at most.
BATCH = 1000


class Trimmer:
    name = "trimmer"
    drains = False

    def __init__(
        self,
        broker: Broker,
        *,
        health: Health,
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.broker = broker
        self.health = health
        self.interval = interval
        self.metrics = metrics
        self.trimmed = 0

    async def trim_once(self) -> int:
        """One call; how many records it deleted."""
        result = await self.broker.trim(BATCH)
        if self.metrics is not None:
            self.metrics.trimmed(result)
        if result.dead:
            log.warning(
                "dropped %d dead letter(s) past their retention (retention.dead, "
                "retention.dead_max)",
                result.dead,
            )
        self.trimmed += result.total
        return result.total

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        guard = RedisGuard(self.health)
        task_status.started()
        while True:
            async with guard:
                full = await self.trim_once() >= BATCH
                guard.succeeded()
                if full:
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.sleep(self.interval)
