"""The daemon's one pub/sub subscription: wake-ups for the consumer and the scheduler, cancel
requests for running tasks, and the tasks handed off to this daemon's worker.

A namespace of several partitions has the channels of each; all are subscribed at once.

Pub/sub loses messages while disconnected, so after every (re)subscription everyone is woken
as if a message had come: a spurious claim costs one round trip, a missed one a stuck task.
A hand-off lost that way comes back with the consumer's next claim (see broker/lua/_lib.lua).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from taskqueue.broker import Broker
from taskqueue.health import Health, RedisGuard

log = logging.getLogger(__name__)


class Notifications:
    """Dispatches messages to callbacks registered by the other services."""

    name = "notifications"
    drains = False

    def __init__(self, broker: Broker, health: Health) -> None:
        self.broker = broker
        self.health = health
        #: Called with the task types that became pending (None: "anything may have").
        self.on_wake: list[Callable[[frozenset[str] | None], None]] = []
        #: Called with the epoch ms of a newly scheduled task.
        self.on_scheduled: list[Callable[[int], None]] = []
        #: Called with (worker id, task id) for each cancel request.
        self.on_cancel: list[Callable[[str, str], None]] = []
        self._hand_offs: tuple[str, Callable[[str], None]] | None = None
        self.subscribed = trio.Event()

    def watch_hand_offs(self, worker_id: str, receive: Callable[[str], None]) -> None:
        """Pass each message of ``worker_id``'s channel (a task handed off to it) to
        ``receive``; called before :meth:`run`."""
        self._hand_offs = (worker_id, receive)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reports started at once: an API-only daemon must start (and say it is not ready)
        while Redis is away; the consumer's safety-net recheck covers a late subscription."""
        partitions = self.broker.partitions
        wake = {keys.wake_channel for keys in partitions}
        channels = [*wake, *(keys.cancel_channel for keys in partitions)]
        handed: set[str] = set()
        if self._hand_offs is not None:
            worker_id, receive = self._hand_offs
            handed = {keys.worker_channel(worker_id) for keys in partitions}
            channels += handed
        guard = RedisGuard(self.health)
        task_status.started()
        while True:
            async with guard, self.broker.redis.subscribe(*channels) as sub:
                guard.succeeded()
                self._wake_all()
                self.subscribed.set()
                async for channel, data in sub:
                    if channel in wake:
                        self._dispatch_wake(data)
                    elif channel in handed:
                        receive(data)
                    else:
                        worker_id, _, task_id = data.partition(" ")
                        for callback in self.on_cancel:
                            callback(worker_id, task_id)

    def _wake_all(self) -> None:
        for callback in self.on_wake:
            callback(None)
        for at in self.on_scheduled:
            at(0)

    def _dispatch_wake(self, data: str) -> None:
        types = set()
        for item in data.split(","):
            if item.startswith("@"):
                for callback in self.on_scheduled:
                    callback(int(item[1:]))
            else:
                types.add(item)
        if types:
            frozen = frozenset(types)
            for wake in self.on_wake:
                wake(frozen)
