"""Writes the daemon's ``[task]`` settings to the config layer of the queue policy in Redis,
where the enqueue script applies them to every submitter, not only to this daemon's API.

A daemon with a worker holds start-up until it has written (its heartbeat waits for Redis
anyway), so a submitter that sees the worker also sees the policy; an API-only daemon must start
while Redis is away, so there it reports started at once and writes as soon as Redis answers.

Only the config layer is written: a value an operator set live stays in force across restarts
until it is unset (see :mod:`taskqueue.broker.policy`).
"""

from __future__ import annotations

import trio

from taskqueue.broker import Broker
from taskqueue.health import Health, RedisGuard


class PolicyWriter:
    name = "policy"
    drains = False

    def __init__(self, broker: Broker, *, health: Health, hold_start: bool) -> None:
        self.broker = broker
        self.health = health
        self.hold_start = hold_start
        #: Set once the configuration's policy is in Redis.
        self.written = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        guard = RedisGuard(self.health)
        if not self.hold_start:
            task_status.started()
        while not self.written.is_set():
            async with guard:
                await self.broker.write_config_policy()
                self.written.set()
        if self.hold_start:
            task_status.started()
        await trio.sleep_forever()
