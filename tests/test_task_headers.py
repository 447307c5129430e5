"""Task headers: metadata submitted with a task apart from its payload, kept on the task and
across retries, handed to its processor as ``ctx.headers``, and shown by every reader; bad
ones refused with the field named on every interface."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
from api_helpers import api_server, problem
from broker_helpers import TYPE, claim_one, failed, submit
from conftest import FakeClock
from daemon_helpers import wait_for_state
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from invariants import assert_invariants

from taskqueue import Client, InvalidTaskError, SyncClient
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Broker, Submission
from taskqueue.cli.views import task_details
from taskqueue.daemon.runtime import Mode
from taskqueue.models import (
    MAX_HEADER_VALUE_LENGTH,
    MAX_HEADERS,
    MAX_HEADERS_BYTES,
    Task,
    TaskState,
)
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.testing import run_processor

HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "x-tenant": "7",
}

#: Each bad headers value, with a word the error must say about it.
BAD_HEADERS: list[tuple[Any, str]] = [
    ({"bad name": "v"}, "'bad name'"),
    ({"-dash-first": "v"}, "'-dash-first'"),
    ({"ok": 5}, "Expected str"),
    ({"ok": "x" * (MAX_HEADER_VALUE_LENGTH + 1)}, str(MAX_HEADER_VALUE_LENGTH)),
    ({f"h{i}": "v" for i in range(MAX_HEADERS + 1)}, str(MAX_HEADERS)),
    ({f"h{i}": "v" * 400 for i in range(30)}, str(MAX_HEADERS_BYTES)),
    ("text", "Expected object"),
]


#: What the ``test.headers`` processor saw, per task id.
seen: dict[str, dict[str, str]] = {}


async def show_headers(ctx: TaskContext) -> dict[str, str]:
    seen[ctx.id] = ctx.headers
    return ctx.headers


@hookimpl
def taskqueue_register_processors(registry: ProcessorRegistry) -> None:
    registry.add("test.headers", show_headers)


# -- the broker -------------------------------------------------------------------------------


async def test_headers_are_stored_claimed_and_kept_across_a_retry(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, headers=HEADERS, max_retries=1)
    assert (await broker.get(task_id)).headers == HEADERS
    first = await claim_one(broker)
    assert first.headers == HEADERS
    assert await broker.report([failed(first)]) == [TaskState.SCHEDULED]
    clock.advance(3600)
    await broker.promote()
    second = await claim_one(broker)
    assert (second.attempt, second.headers) == (2, HEADERS)
    await assert_invariants(broker)


async def test_a_task_without_headers_has_none_and_stores_no_field(broker: Broker) -> None:
    task_id = await submit(broker)
    assert (await claim_one(broker)).headers == {}
    assert (await broker.get(task_id)).headers == {}
    assert await broker.redis.execute("HEXISTS", broker.keys.task(task_id), "headers") == 0
    empty = await submit(broker, headers={})
    assert await broker.redis.execute("HEXISTS", broker.keys.task(empty), "headers") == 0


async def test_headers_in_a_batch_belong_each_to_its_own_task(broker: Broker) -> None:
    batch = [Submission(type=TYPE, headers={"n": str(n)}) for n in range(5)]
    submitted = await broker.enqueue_many([*batch, Submission(type=TYPE)])
    tasks = [await broker.get(s.id) for s in submitted]
    assert [t.headers for t in tasks] == [{"n": str(n)} for n in range(5)] + [{}]


@pytest.mark.parametrize(("headers", "said"), BAD_HEADERS)
async def test_bad_headers_are_refused_naming_the_field_and_nothing_is_written(
    broker: Broker, headers: Any, said: str
) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        await broker.enqueue(Submission(type=TYPE, headers=headers))
    assert caught.value.field == "headers"
    assert said in str(caught.value)
    assert await broker.redis.execute("KEYS", "*task:*") == []


def test_taskqueue_status_shows_the_headers() -> None:
    task = Task(id="t1", type=TYPE, headers={"x-tenant": "7"})
    assert ("header x-tenant", "7") in list(task_details(task, 0).pairs)
    assert not any(
        name.startswith("header") for name, _ in task_details(Task(id="t2", type=TYPE), 0).pairs
    )


async def test_run_processor_hands_its_headers_to_the_processor() -> None:
    run = await run_processor(show_headers, "test.headers", headers={"a": "1"})
    assert run.value == {"a": "1"}


# -- the clients ------------------------------------------------------------------------------


async def test_the_trio_client_submits_headers(redis_url: str) -> None:
    async with Client(redis_url) as client:
        submitted = await client.submit(TYPE, 1, headers=HEADERS)
        assert (await client.get(submitted.id)).headers == HEADERS
        with pytest.raises(InvalidTaskError) as caught:
            await client.submit(TYPE, headers={"no spaces": "v"})
        assert caught.value.field == "headers"


async def test_the_sync_client_submits_headers(redis_url: str) -> None:
    def use() -> tuple[dict[str, str], str | None]:
        with SyncClient(redis_url) as client:
            submitted = client.submit(TYPE, 1, headers=HEADERS)
            try:
                client.submit(TYPE, headers={"ok": 5})  # type: ignore[dict-item]
            except InvalidTaskError as exc:
                return client.get(submitted.id).headers, exc.field
            return client.get(submitted.id).headers, None

    assert await trio.to_thread.run_sync(use) == (HEADERS, "headers")


# -- the APIs and a worker --------------------------------------------------------------------


async def test_rest_submits_and_shows_headers_and_a_worker_hands_them_to_the_processor(
    redis_url: str,
) -> None:
    seen.clear()
    async with (
        api_server(redis_url, mode=Mode.RUN, plugins=(sys.modules[__name__],)) as server,
        server.client() as client,
    ):
        response = await client.post(
            "/api/v1/tasks", json={"type": "test.headers", "headers": HEADERS}
        )
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        await wait_for_state(server.broker, task_id, TaskState.SUCCEEDED)
        assert seen[task_id] == HEADERS
        document = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert (document["headers"], document["result"]) == (HEADERS, HEADERS)
        listed = (await client.get("/api/v1/tasks", params={"state": "succeeded"})).json()
        assert [t["headers"] for t in listed["tasks"]] == [HEADERS]

        for headers, said in BAD_HEADERS:
            refused = await client.post("/api/v1/tasks", json={"type": TYPE, "headers": headers})
            assert refused.status_code == 422, refused.text
            body = problem(refused)
            assert "headers" in body["detail"] and said in body["detail"], body
        batch = await client.post(
            "/api/v1/tasks/batch",
            json={"tasks": [{"type": TYPE}, {"type": TYPE, "headers": {"bad name": "v"}}]},
        )
        assert batch.status_code == 422 and "tasks.1.headers" in batch.text, batch.text


async def test_grpc_submits_and_shows_headers_one_at_a_time_and_in_batches(
    redis_url: str,
) -> None:
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> tuple[pb.Task, list[pb.Task]]:
            one = await stub.submit_task(pb.SubmitTaskRequest(type=TYPE, headers=HEADERS))
            batch = await stub.submit_tasks(
                pb.SubmitTasksRequest(
                    tasks=[pb.SubmitTaskRequest(type=TYPE, headers={"n": str(n)}) for n in range(3)]
                )
            )
            return (
                await stub.get_task(pb.GetTaskRequest(id=one.id)),
                [await stub.get_task(pb.GetTaskRequest(id=t.id)) for t in batch.results],
            )

        one, batch = await grpc_call(grpc.h2c, use)
        assert one.headers == HEADERS
        assert [t.headers for t in batch] == [{"n": str(n)} for n in range(3)]

        for request in (
            pb.SubmitTaskRequest(type=TYPE, headers={"bad name": "v"}),
            pb.SubmitTaskRequest(type=TYPE, headers={f"h{i}": "v" for i in range(40)}),
        ):

            async def refused(stub: TaskQueueStub, request: pb.SubmitTaskRequest = request) -> None:
                await stub.submit_task(request)

            with pytest.raises(GRPCError) as caught:
                await grpc_call(grpc.h2c, refused)
            assert caught.value.status is Status.INVALID_ARGUMENT
            assert "headers" in str(caught.value.message)

        async def refused_in_batch(stub: TaskQueueStub) -> None:
            await stub.submit_tasks(
                pb.SubmitTasksRequest(
                    tasks=[pb.SubmitTaskRequest(type=TYPE, headers={"bad name": "v"})]
                )
            )

        with pytest.raises(GRPCError) as caught:
            await grpc_call(grpc.h2c, refused_in_batch)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert "headers" in str(caught.value.message)
