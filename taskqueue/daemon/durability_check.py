"""Asks Redis at start whether it can honour ``redis.durable_submit``.

Only a daemon configured for durable submits runs it. A server that cannot confirm persistence
(no ``WAITAOF`` before Redis 7.2, or ``appendonly`` off) will not learn to by waiting, so the
daemon stops with one line naming the cause and the fix, rather than refusing every submit
later. Redis merely away is waited for, as everywhere; start-up does not wait for the answer.
"""

from __future__ import annotations

import trio

from taskqueue.broker import Broker
from taskqueue.health import Health, RedisGuard


class DurabilityCheck:
    name = "durability"
    drains = False

    def __init__(self, broker: Broker, *, health: Health) -> None:
        self.broker = broker
        self.health = health

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # an API-only daemon starts while Redis is away; ask once it is back
        guard = RedisGuard(self.health)
        checked = False
        while not checked:
            async with guard:
                await self.broker.check_durable_submit()
                checked = True
        await trio.sleep_forever()
