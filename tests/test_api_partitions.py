"""The APIs over a namespace of several partitions: what REST and gRPC submit lands in every
partition, and every read, listing and cancel finds it there."""

from __future__ import annotations

import functools

from api_helpers import ApiServer, api_server, problem
from grpc_helpers import GrpcServer, grpc_call, grpc_server

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker.partitions import partition_of

PARTITIONS = 3


async def test_rest_submits_reads_lists_and_cancels_across_partitions(redis_url: str) -> None:
    server: ApiServer
    async with (
        api_server(redis_url, redis__partitions=PARTITIONS) as server,
        server.client() as client,
    ):
        ids = []
        for n in range(9):
            reply = await client.post("/api/v1/tasks", json={"type": "echo", "payload": n})
            assert reply.status_code == 201, reply.text
            assert reply.json()["payload"] == n  # the view read in the same round trip
            ids.append(reply.json()["id"])
        assert {partition_of(i, PARTITIONS) for i in ids} == set(range(PARTITIONS))
        keyed = await client.post(
            "/api/v1/tasks", json={"type": "echo"}, headers={"Idempotency-Key": "order-9"}
        )
        by_key = await client.get("/api/v1/tasks/by-idempotency-key", params={"key": "order-9"})
        assert by_key.json()["id"] == keyed.json()["id"]
        for task_id in ids:
            got = await client.get(f"/api/v1/tasks/{task_id}")
            assert got.status_code == 200, got.text
        seen: list[str] = []
        params = {"state": "pending", "limit": "2"}
        while True:
            page = (await client.get("/api/v1/tasks", params=params)).json()
            seen += [t["id"] for t in page["tasks"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert sorted(seen) == sorted([*ids, keyed.json()["id"]])
        crafted = await client.get(
            "/api/v1/tasks", params={"state": "pending", "cursor": f"{PARTITIONS}|"}
        )
        assert crafted.status_code == 422
        assert "cursor" in problem(crafted)["detail"]
        cancelled = await client.post(f"/api/v1/tasks/{ids[-1]}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        stats = (await client.get("/api/v1/queues")).json()
        assert stats["by_state"]["pending"] == 9
        assert stats["by_state"]["cancelled"] == 1


async def test_grpc_batches_spread_and_list_across_partitions(redis_url: str) -> None:
    server: GrpcServer
    async with grpc_server(redis_url, redis__partitions=PARTITIONS) as server:

        async def submit(stub: TaskQueueStub) -> list[str]:
            ids = []
            for _ in range(PARTITIONS):
                request = pb.SubmitTasksRequest(
                    tasks=[pb.SubmitTaskRequest(type="echo", payload_json=str(n)) for n in range(4)]
                )
                ids += [r.id for r in (await stub.submit_tasks(request)).results]
            return ids

        ids = await grpc_call(server.h2c, submit)
        assert [ids.count(i) for i in ids] == [1] * 12
        assert {partition_of(i, PARTITIONS) for i in ids} == set(range(PARTITIONS))

        async def list_all(stub: TaskQueueStub) -> list[str]:
            seen: list[str] = []
            cursor = ""
            while True:
                page = await stub.list_tasks(
                    pb.ListTasksRequest(state=pb.TaskState.PENDING, limit=5, cursor=cursor)
                )
                seen += [t.id for t in page.tasks]
                if not page.next_cursor:
                    return seen
                cursor = page.next_cursor

        assert sorted(await grpc_call(server.h2c, list_all)) == sorted(ids)
        task = await grpc_call(server.h2c, functools.partial(get_task, task_id=ids[-1]))
        assert task.payload_json == "3"


async def get_task(stub: TaskQueueStub, *, task_id: str) -> pb.Task:
    return await stub.get_task(pb.GetTaskRequest(id=task_id))
