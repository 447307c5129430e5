"""WatchTasks, the server-streaming call: what it streams, and every way it ends (client
cancel, deadline, daemon shutdown), each time with the server-side handler finished."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from daemon_helpers import submit
from grpc_helpers import (
    TASKQUEUE_SERVICE,
    GrpcServer,
    RawResponse,
    closing,
    grpc_call,
    grpc_server,
    raw_call,
    raw_stream,
    wait_for_watchers,
)
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.api.grpc.framing import frame

WATCH = TASKQUEUE_SERVICE + "WatchTasks"


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[GrpcServer]:
    async with grpc_server(redis_url) as server:
        yield server


def events_in(response: RawResponse) -> list[pb.TaskEvent]:
    """The complete TaskEvent messages received so far."""
    events, data = [], response.data
    while len(data) >= 5:
        _, length = struct.unpack_from(">?I", data)
        if len(data) < 5 + length:
            break
        events.append(pb.TaskEvent().parse(data[5 : 5 + length]))
        data = data[5 + length :]
    return events


def has_events(count: int) -> Any:
    return lambda response: len(events_in(response)) >= count


async def test_watch_streams_the_state_changes_of_one_task(server: GrpcServer) -> None:
    watched = await submit(server.broker, "email")
    other = await submit(server.broker, "email")
    request = frame(bytes(pb.WatchTasksRequest(task_id=watched)))
    async with raw_stream(server.h2c, WATCH, request) as stream:
        await wait_for_watchers(server, 1)
        await server.broker.cancel(other)
        await server.broker.cancel(watched)
        with trio.fail_after(5):
            response = await stream.read(until=has_events(1))
        assert [(e.task_id, e.type, e.state) for e in events_in(response)] == [
            (watched, "email", pb.TaskState.CANCELLED)
        ]
        await stream.cancel()
        await wait_for_watchers(server, 0)


async def test_watch_by_type_reports_claims_and_progress(server: GrpcServer) -> None:
    request = frame(bytes(pb.WatchTasksRequest(type="report")))
    async with raw_stream(server.h2c, WATCH, request) as stream:
        await wait_for_watchers(server, 1)
        task_id = await submit(server.broker, "report")
        await submit(server.broker, "email")
        (claimed,) = await server.broker.claim("w1", ["report"], 1)
        await server.broker.set_progress(task_id, claimed.attempt, {"done": 1})
        with trio.fail_after(5):
            response = await stream.read(until=has_events(3))
        assert [(e.state, e.progress) for e in events_in(response)] == [
            (pb.TaskState.PENDING, False),
            (pb.TaskState.ACTIVE, False),
            (pb.TaskState.ACTIVE, True),
        ]
        await stream.cancel()
    await wait_for_watchers(server, 0)


async def test_the_server_ends_a_watch_at_its_deadline(server: GrpcServer) -> None:
    request = frame(bytes(pb.WatchTasksRequest()))
    started = trio.current_time()
    response = await raw_call(server.h2c, WATCH, request, headers={"grpc-timeout": "300m"})
    assert response.grpc_status == Status.DEADLINE_EXCEEDED.value
    assert response.grpc_message == "deadline exceeded (grpc-timeout 300m)"
    assert 0.3 <= trio.current_time() - started < 3
    await wait_for_watchers(server, 0)


async def test_the_server_enforces_a_unary_deadline(server: GrpcServer) -> None:
    request = frame(bytes(pb.GetQueueStatsRequest()))
    response = await raw_call(
        server.h2c, TASKQUEUE_SERVICE + "GetQueueStats", request, headers={"grpc-timeout": "1n"}
    )
    assert response.grpc_status == Status.DEADLINE_EXCEEDED.value


async def test_a_daemon_shutdown_ends_a_watch_cleanly(server: GrpcServer) -> None:
    request = frame(bytes(pb.WatchTasksRequest()))
    async with raw_stream(server.h2c, WATCH, request) as stream:
        await wait_for_watchers(server, 1)
        server.context.shutdown.set()
        with trio.fail_after(5):
            response = await stream.read()
    assert response.grpc_status == Status.OK.value
    assert response.grpc_message == "the server is shutting down"
    await wait_for_watchers(server, 0)


async def test_a_grpclib_client_cancels_a_watch_and_keeps_using_its_channel(
    server: GrpcServer,
) -> None:
    async def watch_then_call(stub: TaskQueueStub) -> pb.QueueStats:
        received = asyncio.Event()

        async def hold_watch() -> None:
            async with closing(stub.watch_tasks(pb.WatchTasksRequest())) as events:
                async for _ in events:
                    received.set()
                    await asyncio.sleep(3600)  # hold the stream open until cancelled

        watcher = asyncio.ensure_future(hold_watch())
        while not received.is_set():
            await stub.submit_task(pb.SubmitTaskRequest(type="email"))
            await asyncio.sleep(0.1)
        watcher.cancel()  # a cancelled call resets its stream
        await asyncio.gather(watcher, return_exceptions=True)
        return await stub.get_queue_stats(pb.GetQueueStatsRequest())

    stats = await grpc_call(server.h2c, watch_then_call)
    assert stats.by_state["pending"] >= 1
    await wait_for_watchers(server, 0)


async def test_a_grpclib_deadline_ends_a_watch(server: GrpcServer) -> None:
    async def watch(stub: TaskQueueStub) -> None:
        async for _ in stub.watch_tasks(pb.WatchTasksRequest(), timeout=0.3):
            pass

    # Whichever side notices first: the server's DEADLINE_EXCEEDED or the client's own timer.
    with pytest.raises((GRPCError, asyncio.TimeoutError)) as info:
        await grpc_call(server.h2c, watch)
    if isinstance(info.value, GRPCError):
        assert info.value.status is Status.DEADLINE_EXCEEDED
    await wait_for_watchers(server, 0)
