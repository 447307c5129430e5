"""Fair-share groups through REST and gRPC: a submission names its group, every read shows it,
and a bad name is refused naming the field."""

from __future__ import annotations

import pytest
from api_helpers import api_server, problem
from broker_helpers import TYPE
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import TaskQueueStub, pb


async def test_rest_stores_the_group_and_refuses_a_bad_one(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        created = await client.post("/api/v1/tasks", json={"type": TYPE, "group": "tenant-a"})
        assert created.status_code == 201, created.text
        assert created.json()["group"] == "tenant-a"
        fetched = await client.get(f"/api/v1/tasks/{created.json()['id']}")
        assert fetched.json()["group"] == "tenant-a"
        batch = await client.post(
            "/api/v1/tasks/batch", json={"tasks": [{"type": TYPE, "group": "b"}, {"type": TYPE}]}
        )
        ids = [t["id"] for t in batch.json()["tasks"]]
        read = [(await client.get(f"/api/v1/tasks/{i}")).json()["group"] for i in ids]
        assert read == ["b", None], batch.text

        refused = await client.post("/api/v1/tasks", json={"type": TYPE, "group": "a b"})
        assert refused.status_code == 422
        assert problem(refused)["field"] == "group", refused.text
        wrong_type = await client.post("/api/v1/tasks", json={"type": TYPE, "group": 7})
        assert wrong_type.status_code == 422 and "group" in wrong_type.text, wrong_type.text


@pytest.mark.parametrize("batch", [False, True])
async def test_grpc_stores_the_group_and_refuses_a_bad_one(redis_url: str, batch: bool) -> None:
    async with grpc_server(redis_url) as grpc:

        async def submit(stub: TaskQueueStub, group: str) -> str:
            request = pb.SubmitTaskRequest(type=TYPE, group=group)
            if batch:
                reply = await stub.submit_tasks(pb.SubmitTasksRequest(tasks=[request]))
                return reply.results[0].id
            return (await stub.submit_task(request)).id

        async def use(stub: TaskQueueStub) -> tuple[pb.Task, pb.Task]:
            grouped = await submit(stub, "tenant-a")
            plain = await submit(stub, "")
            return (
                await stub.get_task(pb.GetTaskRequest(id=grouped)),
                await stub.get_task(pb.GetTaskRequest(id=plain)),
            )

        grouped, plain = await grpc_call(grpc.h2c, use)
        assert (grouped.group, plain.group) == ("tenant-a", None)

        async def refused(stub: TaskQueueStub) -> str:
            return await submit(stub, "a b")

        with pytest.raises(GRPCError) as caught:
            await grpc_call(grpc.h2c, refused)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert "group" in str(caught.value.message), caught.value.message
