"""The reaper: returns the tasks of dead workers and forgets the workers.

A lease expires ``worker_timeout`` after its worker's last heartbeat; then the attempt counts
as failed and the task is retried (or dead-lettered). A worker of this host whose process is
gone (:mod:`taskqueue.daemon.local_peers`) does not wait for that: its leases expire on the
next pass, the first one at start-up included. Every daemon runs a reaper; the Lua scripts
are atomic, so several reaping at once is safe and costs a few cheap commands.
"""

from __future__ import annotations

import logging

import trio

from taskqueue.broker import Broker
from taskqueue.daemon.local_peers import dead_peers, this_instance
from taskqueue.health import Health, RedisGuard
from taskqueue.metrics import Metrics

log = logging.getLogger(__name__)


class Reaper:
    name = "reaper"
    drains = False

    def __init__(
        self,
        broker: Broker,
        *,
        health: Health,
        interval: float,
        metrics: Metrics | None = None,
        instance: str | None = None,
    ) -> None:
        """``instance`` is this process's (:func:`~taskqueue.daemon.local_peers.this_instance`
        by default): the workers of this host it judges by their process."""
        self.broker = broker
        self.health = health
        self.interval = interval
        self.metrics = metrics
        self.instance = instance if instance is not None else this_instance()
        self.reaped = 0
        self.workers_removed = 0

    async def reap_once(self) -> None:
        if self.instance is not None:
            await self.expire_dead_peers()
        result = await self.broker.reap()
        if self.metrics is not None:
            self.metrics.reaped(result.reaped, len(result.workers_removed))
            for task in result.outcomes:
                self.metrics.lease_expired(task.type, task.priority, task.state)
        if result.reaped:
            self.reaped += result.reaped
            log.warning("returned %d task(s) whose lease expired", result.reaped)
        if result.workers_removed:
            self.workers_removed += len(result.workers_removed)
            log.warning("removed dead worker(s): %s", ", ".join(result.workers_removed))

    async def expire_dead_peers(self) -> None:
        """Expire the leases of this host's workers whose process is gone."""
        dead = dead_peers(await self.broker.workers(), self.instance)
        if dead:
            leases = await self.broker.expire_workers(dead)
            log.warning(
                "worker(s) of this host died: %s; returning their %d task(s) now",
                ", ".join(dead),
                leases,
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        guard = RedisGuard(self.health)
        task_status.started()
        while True:
            async with guard:
                await self.reap_once()
                guard.succeeded()
                await trio.sleep(self.interval)
