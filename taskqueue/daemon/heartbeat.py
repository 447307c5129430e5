"""The heartbeat: keeps this worker's registration alive and the leases of its tasks current.

A worker that stops beating for ``worker_timeout`` is taken for dead: the reaper (of any
worker) returns its tasks to the queue. The same round trip tells this worker which of its
tasks it no longer owns and which were asked to stop, a fallback for missed pub/sub messages.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable

import trio

from taskqueue.broker import Broker, wall_clock_ms
from taskqueue.daemon.consumer import Consumer
from taskqueue.daemon.local_peers import this_instance
from taskqueue.health import Health, RedisGuard
from taskqueue.models import Policy, WorkerInfo

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """``host-pid-xxxx``: readable in ``taskqueue workers``, unique across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Heartbeat:
    name = "heartbeat"
    drains = False

    def __init__(
        self,
        broker: Broker,
        consumer: Consumer,
        *,
        health: Health,
        interval: float,
        task_types: dict[str, str],
        type_policies: dict[str, Policy] | None = None,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.health = health
        self.interval = interval
        self.task_types = task_types
        self.type_policies = type_policies or {}
        self.on_beat = on_beat
        self.started_ms = wall_clock_ms()
        self.instance = this_instance()
        self.beats = 0
        #: Held by a beat in flight and by deregister(): a beat Redis runs after the
        #: deregistration would register this worker again, as a worker that never beats.
        self._turn = trio.Lock()
        self.deregistered = False

    def info(self) -> WorkerInfo:
        c = self.consumer
        return WorkerInfo(
            id=c.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            task_types=self.task_types,
            concurrency=c.concurrency,
            in_flight=c.in_flight,
            started_ms=self.started_ms,
            last_heartbeat_ms=0,
            processed=c.processed,
            failed=c.failed,
            instance=self.instance,
        )

    async def beat(self) -> None:
        """One heartbeat: one round trip to Redis."""
        leases = self.consumer.leases()
        sent_at = trio.current_time()
        reply = await self.broker.heartbeat(self.info(), leases)
        self.beats += 1
        self.consumer.leases_extended(leases, sent_at, reply.lost)
        if reply.lost:
            self.consumer.lease_lost(reply.lost)
        for task_id in reply.cancel_requested:
            self.consumer.request_cancel(self.consumer.worker_id, task_id)
        if self.on_beat is not None:
            self.on_beat()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat every ``interval``; reports started after the first successful beat."""
        guard = RedisGuard(self.health)
        started = False
        while True:
            async with guard:
                async with self._turn:
                    if self.deregistered:
                        break
                    if not started:
                        # Submissions of our types that leave a field unset get these (unless
                        # an operator set them live); the beat then marks the types served.
                        await self.broker.set_type_policies(self.type_policies)
                    await self.beat()
                guard.succeeded()
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(self.interval)
        await trio.sleep_forever()  # deregistered: until the daemon's nursery is cancelled

    async def deregister(self) -> None:
        """Remove the registration, so ``workers`` stops listing this worker at once."""
        with trio.move_on_after(5):
            async with self._turn:
                self.deregistered = True
                async with RedisGuard(self.health):
                    await self.broker.deregister(self.consumer.worker_id)
