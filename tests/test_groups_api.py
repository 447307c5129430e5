"""Fair-share groups through REST and gRPC: a submission names its group, every read shows it,
and a bad name is refused naming the field."""

from __future__ import annotations

import pytest
from api_helpers import api_server, problem
from broker_helpers import TYPE
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue import Client, SyncClient
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Broker, Submission
from taskqueue.metrics import Metrics


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


async def fill_groups(broker: Broker, backlog: dict[str, int]) -> None:
    await broker.enqueue_many(
        [Submission(type=TYPE, group=g) for g, n in backlog.items() for _ in range(n)]
    )


async def test_rest_and_grpc_queue_stats_name_the_top_groups(redis_url: str) -> None:
    async with grpc_server(redis_url) as grpc, api_server(redis_url) as server:
        await fill_groups(server.broker, {"a": 3, "b": 5})
        async with server.client() as client:
            document = (await client.get("/api/v1/queues")).json()
        assert document["groups"] == [
            {
                "type": TYPE,
                "groups_pending": 2,
                "groups_active": 0,
                "top": [
                    {"group": "b", "pending": 5, "active": 0},
                    {"group": "a", "pending": 3, "active": 0},
                ],
            }
        ]

        async def read(stub: TaskQueueStub) -> pb.QueueStats:
            return await stub.get_queue_stats(pb.GetQueueStatsRequest())

        (groups,) = (await grpc_call(grpc.h2c, read)).groups
        assert (groups.type, groups.groups_pending, groups.groups_active) == (TYPE, 2, 0)
        assert [(t.group, t.pending, t.active) for t in groups.top] == [("b", 5, 0), ("a", 3, 0)]


async def test_metrics_name_only_the_top_ten_groups(broker: Broker) -> None:
    await fill_groups(broker, {f"tenant-{n:03}": n + 1 for n in range(200)})

    metrics = Metrics(process_metrics=False)
    metrics.watch_worker(lambda: 0, 10, [TYPE])
    await metrics.refresh(broker)
    text = metrics.render().decode()

    named = [line for line in text.splitlines() if line.startswith("taskqueue_group_pending{")]
    assert len(named) == 10
    assert f'taskqueue_group_pending{{group="tenant-199",type="{TYPE}"}} 200.0' in text
    assert f'taskqueue_groups{{state="pending",type="{TYPE}"}} 200.0' in text


async def test_a_group_limit_is_set_per_type_over_rest_and_grpc(redis_url: str) -> None:
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> None:
            live = pb.Policy(group_concurrency=2)
            scope = await stub.set_policy(pb.SetPolicyRequest(type="tenant.job", live=live))
            assert scope.effective.group_concurrency == 2
            with pytest.raises(GRPCError) as invalid:
                await stub.set_policy(
                    pb.SetPolicyRequest(type="tenant.job", live=pb.Policy(group_concurrency=0))
                )
            assert invalid.value.status is Status.INVALID_ARGUMENT
            assert "live.group_concurrency" in (invalid.value.message or "")

        await grpc_call(grpc.h2c, use)

    async with api_server(redis_url) as server, server.client() as client:
        shown = (await client.get("/api/v1/policy/tenant.job")).json()
        assert shown["live"] == {"group_concurrency": 2}
        refused = await client.put("/api/v1/policy", json={"group_concurrency": 3})
        assert refused.status_code == 422, refused.text
        assert problem(refused)["field"] == "group_concurrency", refused.text
        changed = await client.put("/api/v1/policy/tenant.job", json={"group_concurrency": 1})
        assert changed.status_code == 200, changed.text

        broker = server.broker
        await broker.enqueue_many(
            [Submission(type="tenant.job", group=g) for g in ("a", "b") for _ in range(3)]
        )
        claimed = await broker.claim("w1", ["tenant.job"], 6)
        assert sorted([(await broker.get(t.id)).group or "" for t in claimed]) == ["a", "b"]


async def test_both_python_clients_submit_to_a_group(redis_url: str) -> None:
    async with Client(redis_url) as client:
        submitted = await client.submit(TYPE, {"n": 1}, group="acme")
        assert (await client.get(submitted.id)).group == "acme"
    with SyncClient(redis_url) as sync:
        assert sync.get(sync.submit(TYPE, group="globex").id).group == "globex"


async def test_a_group_rate_limit_is_set_per_type_over_rest_and_grpc(redis_url: str) -> None:
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> None:
            live = pb.Policy(group_rate_limit="10/min")
            scope = await stub.set_policy(pb.SetPolicyRequest(type="tenant.rated", live=live))
            assert scope.effective.group_rate_limit == "10/min"
            with pytest.raises(GRPCError) as invalid:
                await stub.set_policy(
                    pb.SetPolicyRequest(type="tenant.rated", live=pb.Policy(group_rate_limit="ten"))
                )
            assert invalid.value.status is Status.INVALID_ARGUMENT
            assert "live.group_rate_limit" in (invalid.value.message or "")

        await grpc_call(grpc.h2c, use)

    async with api_server(redis_url) as server, server.client() as client:
        shown = (await client.get("/api/v1/policy/tenant.rated")).json()
        assert shown["live"] == {"group_rate_limit": "10/min"}
        refused = await client.put("/api/v1/policy/tenant.rated", json={"group_rate_limit": "1/0s"})
        assert refused.status_code == 422, refused.text
        assert problem(refused)["field"] == "group_rate_limit", refused.text
        changed = await client.put("/api/v1/policy/tenant.rated", json={"group_rate_limit": "1/h"})
        assert changed.status_code == 200, changed.text

        broker = server.broker
        await broker.enqueue_many(
            [Submission(type="tenant.rated", group=g) for g in ("a", "b") for _ in range(3)]
        )
        claimed = await broker.claim("w1", ["tenant.rated"], 6)
        assert sorted([(await broker.get(t.id)).group or "" for t in claimed]) == ["a", "b"]
        assert await broker.claim("w1", ["tenant.rated"], 6) == []  # both rest for an hour
