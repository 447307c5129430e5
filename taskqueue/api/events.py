"""Live task events for watchers (REST Server-Sent Events, gRPC WatchTasks).

The broker's scripts publish every state change on one channel as a JSON list of
``[task_id, task_type, state]`` triples (``state`` may also be ``"progress"``). One
subscription per API process fans them out to any number of watchers, each filtered by task
id or type; a watcher too slow to keep up loses events rather than stalling the others (its
``dropped`` count says how many).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from taskqueue.broker import Broker, events_from_message
from taskqueue.health import Health, RedisGuard
from taskqueue.models import TaskEvent

log = logging.getLogger(__name__)

WATCHER_BUFFER = 1000


@attrs.define(eq=False)
class Watcher:
    task_id: str | None
    task_type: str | None
    send: trio.MemorySendChannel[TaskEvent]
    dropped: int = 0

    def wants(self, event: TaskEvent) -> bool:
        return (self.task_id is None or event.task_id == self.task_id) and (
            self.task_type is None or event.type == self.task_type
        )


class EventHub:
    def __init__(self, broker: Broker, health: Health) -> None:
        self.broker = broker
        self.health = health
        self._watchers: set[Watcher] = set()
        self.subscribed = trio.Event()

    async def run(self) -> None:
        """Subscribe (again after every Redis error) and fan events out, forever."""
        guard = RedisGuard(self.health)
        while True:
            channels = (keys.events_channel for keys in self.broker.partitions)
            async with guard, self.broker.redis.subscribe(*channels) as sub:
                self.subscribed.set()
                async for _, data in sub:
                    self.publish(data)

    def publish(self, data: str) -> None:
        if not self._watchers:
            return
        for event in events_from_message(data):
            for watcher in self._watchers:
                if watcher.wants(event):
                    try:
                        watcher.send.send_nowait(event)
                    except trio.WouldBlock:
                        watcher.dropped += 1
                    except trio.BrokenResourceError:
                        pass  # its watch is ending: the channel closed, the watcher goes next

    @asynccontextmanager
    async def watch(
        self, *, task_id: str | None = None, task_type: str | None = None
    ) -> AsyncIterator[trio.MemoryReceiveChannel[TaskEvent]]:
        """Events matching the filters, from now until the block ends."""
        send, receive = trio.open_memory_channel[TaskEvent](WATCHER_BUFFER)
        watcher = Watcher(task_id, task_type, send)
        self._watchers.add(watcher)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.discard(watcher)
            if watcher.dropped:
                log.warning("a slow watcher missed %d event(s)", watcher.dropped)
