"""Workflows over both APIs: a DAG submitted in one call by index, its dependents and inputs
in the task documents, the whole workflow in one read, and bad dependencies refused."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import api_server, problem
from broker_helpers import claim_one, succeeded
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue.api.grpc import TaskQueueStub, pb

CHORD = [
    {"type": "echo", "payload": 1},
    {"type": "echo", "payload": 2},
    {"type": "echo", "payload": "sum", "depends_on": [0, 1]},
]


async def test_rest_submits_a_chord_and_shows_its_links_inputs_and_workflow(
    redis_url: str,
) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        response = await client.post("/api/v1/tasks/batch", json={"tasks": CHORD})
        assert response.status_code == 201, response.text
        first, second, callback = [t["id"] for t in response.json()["tasks"]]
        assert [t["state"] for t in response.json()["tasks"]] == ["pending", "pending", "blocked"]

        task = (await client.get(f"/api/v1/tasks/{callback}")).json()
        assert (task["state"], task["depends_on"], task["waiting_for"]) == (
            "blocked",
            [first, second],
            [first, second],
        )
        assert (await client.get(f"/api/v1/tasks/{first}")).json()["dependents"] == [callback]

        broker = server.broker
        for _ in range(2):
            running = await claim_one(broker, "echo")
            await broker.report([succeeded(running, running.payload * 10)])
        task = (await client.get(f"/api/v1/tasks/{callback}")).json()
        assert (task["state"], task["inputs"]) == ("pending", [10, 20])

        flow = (await client.get(f"/api/v1/tasks/{second}/workflow")).json()
        assert flow["tasks"][0]["id"] == second
        assert {t["id"] for t in flow["tasks"]} == {first, second, callback}
        assert (flow["by_state"]["succeeded"], flow["by_state"]["pending"]) == (2, 1)
        assert flow["complete"] is True


@pytest.mark.parametrize(
    ("tasks", "field", "words"),
    [
        ([{"type": "echo", "depends_on": [1]}], "tasks.1.depends_on.0", "earlier task"),
        ([{"type": "echo", "depends_on": ["nope"]}], "tasks.1.depends_on.0", "does not exist"),
        ([{"type": "echo", "depends_on": [0, 1.5]}], "tasks.1.depends_on.1", ""),
        (
            [{"type": "echo", "depends_on": [0], "on_dependency_failure": "maybe"}],
            "tasks.1.on_dependency_failure",
            "cancel, run",
        ),
    ],
)
async def test_rest_refuses_bad_dependencies_naming_the_field(
    redis_url: str, tasks: list[dict[str, Any]], field: str, words: str
) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        batch = [{"type": "echo"}, *tasks]  # the second task is at fault
        response = await client.post("/api/v1/tasks/batch", json={"tasks": batch})
        body = problem(response)
        assert response.status_code in (400, 422), body
        assert field in body["detail"] or body.get("field") == field, body
        assert words in body["detail"], body
        assert (await server.broker.stats()).totals.get("submitted", 0) == 0


async def test_rest_workflow_of_an_unknown_task_is_404(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        response = await client.get("/api/v1/tasks/0190-none/workflow")
        assert response.status_code == 404
        assert "0190-none" in problem(response)["detail"]


async def test_grpc_submits_dependencies_by_index_and_reads_the_workflow(
    redis_url: str,
) -> None:
    async with grpc_server(redis_url) as server:

        async def use(stub: TaskQueueStub) -> tuple[Any, Any, Any]:
            batch = await stub.submit_tasks(
                pb.SubmitTasksRequest(
                    tasks=[
                        pb.SubmitTaskRequest(type="echo"),
                        pb.SubmitTaskRequest(
                            type="echo",
                            depends_on=[pb.Dependency(index=0)],
                            on_dependency_failure=pb.DependencyFailure.RUN,
                        ),
                    ]
                )
            )
            parent, child = (r.id for r in batch.results)
            task = await stub.get_task(pb.GetTaskRequest(id=child))
            flow = await stub.get_workflow(pb.GetWorkflowRequest(id=parent))
            return batch, task, flow

        batch, task, flow = await grpc_call(server.h2c, use)
        parent, child = (r.id for r in batch.results)
        assert [r.state for r in batch.results] == [pb.TaskState.PENDING, pb.TaskState.BLOCKED]
        assert (task.depends_on, task.waiting_for) == ([parent], [parent])
        assert task.on_dependency_failure == pb.DependencyFailure.RUN
        assert [t.id for t in flow.tasks] == [parent, child]
        assert flow.tasks[0].dependents == [child]
        assert flow.by_state["blocked"] == 1 and flow.complete


async def test_grpc_refuses_an_unknown_dependency_naming_the_field(redis_url: str) -> None:
    async with grpc_server(redis_url) as server:

        async def use(stub: TaskQueueStub) -> object:
            request = pb.SubmitTaskRequest(type="echo", depends_on=[pb.Dependency(task_id="x")])
            return await stub.submit_task(request)

        with pytest.raises(GRPCError) as caught:
            await grpc_call(server.h2c, use)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert "depends_on[0]" in (caught.value.message or "")
        assert "does not exist" in (caught.value.message or "")


async def test_unique_submissions_over_rest_and_grpc_return_the_live_task(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        body = {"type": "echo", "payload": {"n": 1}, "unique": True}
        first = (await client.post("/api/v1/tasks", json=body)).json()
        again = await client.post("/api/v1/tasks", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first["id"]  # 200, not 201: nothing was added
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> Any:
            request = pb.SubmitTaskRequest(type="echo", payload_json='{"n": 1}', unique=True)
            return await stub.submit_task(request)

        reply = await grpc_call(grpc.h2c, use)
        assert (reply.id, reply.created) == (first["id"], False)
