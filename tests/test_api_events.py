"""The event hub both watch APIs share (REST's Server-Sent Events, gRPC's WatchTasks): a watch
that ends while an event is being fanned out must not take the hub down with it."""

from __future__ import annotations

import json

from taskqueue.api.events import EventHub
from taskqueue.broker import Broker
from taskqueue.health import Health
from taskqueue.models import TaskEvent


async def test_an_event_for_a_watch_that_is_ending_is_dropped(broker: Broker) -> None:
    """Leaving ``watch()`` closes the watcher's channel and checkpoints before the watcher is
    removed; an event published then (the hub's task runs in that checkpoint) reached a closed
    channel and raised BrokenResourceError out of the hub, ending the API server."""
    hub = EventHub(broker, Health())
    message = json.dumps([["t-1", "email", "pending"]])
    async with hub.watch() as leaving, hub.watch() as staying:
        await leaving.aclose()  # what leaving its block does first
        hub.publish(message)
        assert staying.receive_nowait() == TaskEvent("t-1", "email", "pending")
