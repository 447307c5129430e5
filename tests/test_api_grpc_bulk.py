"""gRPC: CancelTasks and PurgeTasks with the generated grpclib stub, through real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from broker_helpers import claim, make_dead, submit_many, succeeded
from grpc_helpers import GrpcServer, grpc_call, guarded_grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from invariants import assert_invariants

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.models import TaskState


@pytest.fixture
async def server(redis_url: str, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    """A server with an admin token ``admin-token`` and a read-only token ``reader``."""
    async with guarded_grpc_server(redis_url, tmp_path) as server:
        yield server


async def test_cancel_tasks_cancels_a_types_waiting_tasks(server: GrpcServer) -> None:
    broker = server.broker
    await submit_many(broker, 30, "kind.a")
    await submit_many(broker, 10, "kind.a", delay=60)
    kept = await submit_many(broker, 4, "kind.b")
    running = await claim(broker, 2, ("kind.a",))

    async def cancel(stub: TaskQueueStub) -> list[pb.CancelTasksResponse]:
        scheduled = await stub.cancel_tasks(
            pb.CancelTasksRequest(type="kind.a", states=[pb.TaskState.SCHEDULED])
        )
        rest = await stub.cancel_tasks(pb.CancelTasksRequest(type="kind.a", include_active=True))
        return [scheduled, rest]

    scheduled, rest = await grpc_call(server.h2c, cancel, token="admin-token")

    assert scheduled == pb.CancelTasksResponse(cancelled=10, scheduled=10)
    assert rest == pb.CancelTasksResponse(cancelled=28, pending=28, requested=2)
    assert all([(await broker.get(t.id)).cancel_requested for t in running])
    assert {(await broker.get(i)).state for i in kept} == {TaskState.PENDING}
    await assert_invariants(broker)


async def test_purge_tasks_deletes_a_finished_state(server: GrpcServer) -> None:
    broker = server.broker
    await submit_many(broker, 5, "kind.a")
    await broker.report([succeeded(t) for t in await claim(broker, 5, ("kind.a",))])
    await make_dead(broker, 2, "kind.b")

    async def purge(stub: TaskQueueStub) -> list[int]:
        replies = [
            await stub.purge_tasks(pb.PurgeTasksRequest(state=pb.TaskState.SUCCEEDED, type="x")),
            await stub.purge_tasks(pb.PurgeTasksRequest(state=pb.TaskState.SUCCEEDED)),
            await stub.purge_tasks(pb.PurgeTasksRequest(state=pb.TaskState.DEAD, type="kind.b")),
        ]
        return [r.purged for r in replies]

    assert await grpc_call(server.h2c, purge, token="admin-token") == [0, 5, 2]
    stats = await broker.stats()
    assert (stats.by_state[TaskState.SUCCEEDED], stats.by_state[TaskState.DEAD]) == (0, 0)
    await assert_invariants(broker)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CancelTasksRequest(), "type"),
        (pb.CancelTasksRequest(type="bad type"), "type"),
        (pb.CancelTasksRequest(type="a", states=[pb.TaskState.ACTIVE]), "states"),
        (pb.CancelTasksRequest(type="a", states=[pb.TaskState.UNSPECIFIED]), "states"),
        (pb.PurgeTasksRequest(), "state"),
        (pb.PurgeTasksRequest(state=pb.TaskState.PENDING), "state"),
        (pb.PurgeTasksRequest(state=pb.TaskState.DEAD, type="bad type"), "type"),
    ],
)
async def test_bulk_calls_name_the_invalid_field(
    server: GrpcServer, request_: pb.CancelTasksRequest | pb.PurgeTasksRequest, field: str
) -> None:
    async def call(stub: TaskQueueStub) -> object:
        if isinstance(request_, pb.CancelTasksRequest):
            return await stub.cancel_tasks(request_)
        return await stub.purge_tasks(request_)

    with pytest.raises(GRPCError) as info:
        await grpc_call(server.h2c, call, token="admin-token")
    assert info.value.status is Status.INVALID_ARGUMENT
    assert info.value.message and field in info.value.message


async def test_bulk_calls_want_an_admin_token(server: GrpcServer) -> None:
    await submit_many(server.broker, 3, "kind.a")

    async def cancel(stub: TaskQueueStub) -> object:
        return await stub.cancel_tasks(pb.CancelTasksRequest(type="kind.a"))

    async def purge(stub: TaskQueueStub) -> object:
        return await stub.purge_tasks(pb.PurgeTasksRequest(state=pb.TaskState.CANCELLED))

    for call in (cancel, purge):
        with pytest.raises(GRPCError) as info:
            await grpc_call(server.h2c, call, token="reader")
        assert info.value.status is Status.PERMISSION_DENIED
    assert (await server.broker.stats()).by_state[TaskState.PENDING] == 3
