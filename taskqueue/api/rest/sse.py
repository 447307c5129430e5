"""``GET /api/v1/events``: task state changes as Server-Sent Events.

The stream opens with a comment line (``: watching``) once the watch is live, so a client that
waits for it misses nothing submitted afterwards. Each change is one event::

    event: task
    data: {"task_id": "…", "type": "email.send", "state": "succeeded"}

A comment every 15 s keeps proxies from closing an idle stream. The stream ends when the
server shuts down; a watcher too slow to keep up loses events rather than stalling others
(see :mod:`taskqueue.api.events`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Final

import msgspec
import trio

from taskqueue.api.events import EventHub
from taskqueue.api.rest.inputs import NonEmpty
from taskqueue.api.rest.routing import API_PREFIX, Access, Call, Operation, Param, Reply, RouteTable
from taskqueue.api.rest.send import StreamingResponse
from taskqueue.models import TaskEvent

routes = RouteTable()

KEEPALIVE_SECONDS: Final = 15.0
#: How often an idle stream checks for shutdown. Polling keeps every cancel scope inside one
#: step of the generator (trio forbids a scope spanning a ``yield``), at a negligible cost.
POLL_SECONDS: Final = 0.5

_encode = msgspec.json.Encoder().encode


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/events",
        operation_id="watchTasks",
        summary="Watch task state changes (Server-Sent Events)",
        description="A `text/event-stream` of `task` events, each a TaskEvent as JSON, "
        "from now on; filtered by task id and/or type. Starts with the comment `: watching` "
        "once live; a comment every 15 s while idle; ends when the server shuts down.",
        tag="tasks",
        access=Access.READ,
        query=(
            Param("task_id", NonEmpty, "Only this task's events."),
            Param("type", NonEmpty, "Only events of this task type."),
        ),
        replies={200: Reply("The event stream.", TaskEvent, "text/event-stream")},
        uses_redis=False,
    )
)
async def watch(call: Call) -> StreamingResponse:
    stream = event_stream(
        call.api.events,
        call.api.context.shutdown,
        task_id=call.query.get("task_id"),
        task_type=call.query.get("type"),
    )
    return StreamingResponse(
        stream,
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def event_stream(
    events: EventHub,
    shutdown: trio.Event,
    *,
    task_id: str | None,
    task_type: str | None,
    keepalive: float = KEEPALIVE_SECONDS,
) -> AsyncGenerator[bytes, None]:
    async with events.watch(task_id=task_id, task_type=task_type) as receive:
        yield b": watching\n\n"
        idle = 0.0
        while not shutdown.is_set():
            event: TaskEvent | None = None
            with trio.move_on_after(POLL_SECONDS):
                event = await receive.receive()
            if event is not None:
                idle = 0.0
                yield sse_event(event)
                continue
            idle += POLL_SECONDS
            if idle >= keepalive:
                idle = 0.0
                yield b": keepalive\n\n"


def sse_event(event: TaskEvent) -> bytes:
    data = _encode(event).decode()
    return f"event: task\ndata: {data}\n\n".encode()
