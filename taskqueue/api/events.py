"""Live task events for watchers (REST Server-Sent Events, gRPC WatchTasks).

The broker's scripts publish every state change on one channel as a JSON list of
``[task_id, task_type, state]`` triples (``state`` may also be ``"progress"``). One
subscription per API process fans them out to any number of watchers, each filtered by task
id or type; a watcher too slow to keep up loses events rather than stalling the others (its
``dropped`` count says how many).

The subscription is held only while someone watches: every submitted, claimed and finished
task publishes an event, and an API process that nobody watches would otherwise read and
decode all of them (a few percent of its time under a submit load, and Redis's output to
every API process). The first watcher starts it and waits until it is live; the last one to
leave ends it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from taskqueue.broker import Broker, events_from_message
from taskqueue.health import Health, RedisGuard
from taskqueue.models import TaskEvent

log = logging.getLogger(__name__)

WATCHER_BUFFER = 1000
#: How long a new watch waits for the subscription to be live: past it (Redis is away), the
#: watch starts anyway and its events begin when the subscription does.
SUBSCRIBE_WAIT: Final = 5.0


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
    """Fans the task events of one Redis subscription out to watchers; :meth:`run` holds the
    subscription while :meth:`watch` blocks are open."""

    def __init__(
        self, broker: Broker, health: Health, *, subscribe_wait: float = SUBSCRIBE_WAIT
    ) -> None:
        self.broker = broker
        self.health = health
        self.subscribe_wait = subscribe_wait
        #: Watchers whose events flow (the subscription was live when they started).
        self._watchers: set[Watcher] = set()
        #: Watches that wait for the subscription to be live.
        self._starting = 0
        self._wanted = trio.Event()  # set when a watch starts: run() subscribes
        self._live = trio.Event()  # set while the subscription is live; replaced when it ends
        self._subscription = trio.CancelScope()

    @property
    def subscribed(self) -> bool:
        """Whether the subscription is live now."""
        return self._live.is_set()

    async def run(self) -> None:
        """Subscribe while anyone watches (again after every Redis error) and fan events out,
        forever."""
        guard = RedisGuard(self.health)
        while True:
            while not (self._watchers or self._starting):
                self._wanted = trio.Event()
                await self._wanted.wait()
            channels = [keys.events_channel for keys in self.broker.partitions]
            with trio.CancelScope() as self._subscription:
                async with guard, self.broker.redis.subscribe(*channels) as sub:
                    guard.succeeded()
                    self._live.set()
                    async for _, data in sub:
                        self.publish(data)
            if self._live.is_set():
                self._live = trio.Event()

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
        """Events matching the filters, from now until the block ends. Entering waits until
        the subscription is live (at most ``subscribe_wait``), so nothing published after it
        is missed."""
        send, receive = trio.open_memory_channel[TaskEvent](WATCHER_BUFFER)
        watcher = Watcher(task_id, task_type, send)
        self._starting += 1
        self._wanted.set()
        try:
            try:
                with trio.move_on_after(self.subscribe_wait):
                    await self._live.wait()
            finally:
                self._starting -= 1
            self._watchers.add(watcher)
            async with receive:
                yield receive
        finally:
            self._watchers.discard(watcher)
            if not (self._watchers or self._starting):
                self._live = trio.Event()  # a watch starting from now waits for a new one
                self._subscription.cancel()
            if watcher.dropped:
                log.warning("a slow watcher missed %d event(s)", watcher.dropped)
