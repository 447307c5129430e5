"""The event hub both watch APIs share (REST's Server-Sent Events, gRPC's WatchTasks): a watch
that ends while an event is being fanned out must not take the hub down with it, and the
hub's subscription lives only while someone watches."""

from __future__ import annotations

import json

import trio
import trio.testing
from daemon_helpers import free_port, wait_until

from taskqueue.api.events import EventHub
from taskqueue.broker import Broker
from taskqueue.health import Health
from taskqueue.models import Submission, TaskEvent
from taskqueue.redis import Redis


async def test_an_event_for_a_watch_that_is_ending_is_dropped(broker: Broker) -> None:
    """Leaving ``watch()`` closes the watcher's channel and checkpoints before the watcher is
    removed; an event published then (the hub's task runs in that checkpoint) reached a closed
    channel and raised BrokenResourceError out of the hub, ending the API server."""
    hub = EventHub(broker, Health(), subscribe_wait=0)  # no subscription: events come by hand
    message = json.dumps([["t-1", "email", "pending"]])
    async with hub.watch() as leaving, hub.watch() as staying:
        await leaving.aclose()  # what leaving its block does first
        hub.publish(message)
        assert staying.receive_nowait() == TaskEvent("t-1", "email", "pending")


def live(hub: EventHub) -> bool:
    """Whether the hub's subscription is live (a call: mypy would narrow the property)."""
    return hub.subscribed


async def subscribers(redis: Redis, broker: Broker) -> int:
    """How many connections Redis has subscribed to the namespace's event channel."""
    (channel,) = [keys.events_channel for keys in broker.partitions]
    _, count = await redis.execute("PUBSUB", "NUMSUB", channel)
    return int(count)


async def test_the_hub_subscribes_only_while_someone_watches(broker: Broker, redis: Redis) -> None:
    """Nobody watching, the process reads no events; the first watch starts the subscription
    and sees what is submitted right after it starts; the last one to leave ends it."""
    hub = EventHub(broker, Health())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        await trio.testing.wait_all_tasks_blocked()
        assert await subscribers(redis, broker) == 0
        assert not live(hub)

        async with hub.watch(task_type="email") as first, hub.watch() as second:
            assert live(hub)
            assert await subscribers(redis, broker) == 1  # one subscription, however many watch
            submitted = await broker.enqueue(Submission(type="email"))
            with trio.fail_after(5):
                assert await first.receive() == TaskEvent(submitted.id, "email", "pending")
                assert await second.receive() == TaskEvent(submitted.id, "email", "pending")

        async def unsubscribed() -> bool:
            return await subscribers(redis, broker) == 0

        await wait_until(unsubscribed, "the hub ended its subscription")
        assert not live(hub)

        async with hub.watch() as again:  # and subscribes again for the next one
            submitted = await broker.enqueue(Submission(type="report"))
            with trio.fail_after(5):
                assert await again.receive() == TaskEvent(submitted.id, "report", "pending")
        nursery.cancel_scope.cancel()


async def test_a_watch_that_leaves_while_starting_ends_the_subscription(
    broker: Broker, redis: Redis
) -> None:
    """A watch cancelled before the subscription was live (its client went away) still counts
    as leaving: the hub does not stay subscribed for nobody."""
    hub = EventHub(broker, Health())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        with trio.CancelScope() as scope:
            scope.cancel()
            async with hub.watch():
                raise AssertionError("a cancelled watch does not start")  # pragma: no cover

        async def unsubscribed() -> bool:
            await trio.testing.wait_all_tasks_blocked()
            return await subscribers(redis, broker) == 0 and not live(hub)

        await wait_until(unsubscribed, "the hub ended (or never made) its subscription")
        async with hub.watch() as watching:
            submitted = await broker.enqueue(Submission(type="email"))
            with trio.fail_after(5):
                assert await watching.receive() == TaskEvent(submitted.id, "email", "pending")
        nursery.cancel_scope.cancel()


async def test_a_watch_starts_without_redis_after_its_wait(broker: Broker) -> None:
    """Redis away: a watch does not hang on the subscription, it starts after
    ``subscribe_wait`` (its events begin when the subscription does)."""
    unreachable = Broker(Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"))
    hub = EventHub(unreachable, Health(), subscribe_wait=0.2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        with trio.fail_after(5):
            async with hub.watch():
                assert not live(hub)
        nursery.cancel_scope.cancel()
    await unreachable.redis.aclose()
