"""Task type names and what each type costs (issue 15, item 4).

A type name is ASCII letters, digits, ``.``, ``_`` and ``-`` (``"no\\u0000op"`` was accepted);
enqueue.lua holds every submitter to it, not only the Python ones. A type's bookkeeping (its
entry in the types set, its counters) goes with its last task, in the script that ends it:
20,000 types submitted and cancelled used to leave 20,006 entries, and listing pending tasks
walked every one. And the policy's ``max_task_types`` bounds how many types have tasks at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_helpers import ADMIN_TOKEN, api_server, problem
from broker_helpers import claim_one, make_dead, submit, succeeded
from cli_helpers import cli_env, run
from conftest import MakeBroker
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskqueue import TooManyTypesError
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.broker.model import Retention
from taskqueue.broker.operations import _script
from taskqueue.broker.policy import SUBMISSION_NAMES, encode_value
from taskqueue.broker.validation import task_fields
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Policy, TaskState
from taskqueue.redis import ResponseError

BAD_NAMES = ["no\u0000op", "mail\u00e9", "a:b", "a b", "a|b", ".x", "-x", "x" * 201, "\u0661"]


async def types_set(broker: Broker) -> set[str]:
    return set(await broker.redis.execute("SMEMBERS", broker.keys.types))


async def per_type_counters(broker: Broker) -> dict[str, str]:
    flat = await broker.redis.execute("HGETALL", broker.keys.counts)
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return {k: v for k, v in fields.items() if not k.startswith("total|")}


# -- names ---------------------------------------------------------------------------------


async def test_every_interface_refuses_a_type_name_outside_the_pattern(redis_url: str) -> None:
    async with (
        api_server(redis_url, server__tokens=(ADMIN_TOKEN,)) as server,
        server.client(token=ADMIN_TOKEN) as client,
    ):
        for name in BAD_NAMES:
            with pytest.raises(InvalidTaskError) as caught:
                await server.broker.enqueue(Submission(type=name))
            assert caught.value.field == "type"
            response = await client.post("/api/v1/tasks", json={"type": name})
            assert response.status_code == 422, (name, response.text)
            assert problem(response)["field"] == "type"
            batch = await client.post(
                "/api/v1/tasks/batch", json={"tasks": [{"type": "ok"}, {"type": name}]}
            )
            assert batch.status_code == 422
            assert problem(batch)["field"] == "tasks.1.type"
        assert await types_set(server.broker) == set()
        document = (await client.get("/api/v1/openapi.json")).json()
        pattern = document["components"]["schemas"]["Submission"]["properties"]["type"]["pattern"]
        assert pattern == "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


async def submit_by_grpc(stub: TaskQueueStub, *, name: str) -> object:
    return await stub.submit_task(pb.SubmitTaskRequest(type=name))


async def test_grpc_refuses_a_nul_in_a_type_name_naming_the_field(redis_url: str) -> None:
    async with grpc_server(redis_url) as server:
        with pytest.raises(GRPCError) as info:
            await grpc_call(server.h2c, lambda stub: submit_by_grpc(stub, name="no\u0000op"))
        assert info.value.status is Status.INVALID_ARGUMENT
        assert (info.value.message or "").startswith("type: ")


async def test_the_enqueue_script_refuses_a_bad_name_from_any_submitter(broker: Broker) -> None:
    """A submitter that skips the Python checks (another language, an old client) reaches
    enqueue.lua with the name as is: the script refuses it and writes nothing."""
    fallback = policy_args(broker.settings)
    good = task_fields(broker.settings, Submission(type="ok"), "id-1", now=0)
    bad = task_fields(broker.settings, Submission(type="ok"), "id-2", now=0, position=1)
    bad[1] = "no\u0000op"  # the name as another submitter could send it, unchecked
    step = _script(broker.keys, "enqueue", 0, 0, "", *fallback, *good, *bad)
    with pytest.raises(ResponseError, match="BADTYPE 1"):
        await broker.redis.run_script(step.script, step.keys, step.args)
    assert await types_set(broker) == set()
    assert await per_type_counters(broker) == {}


def policy_args(settings: BrokerSettings) -> list[str]:
    """enqueue.lua's fallback policy arguments, as the broker gives them."""
    fallback = settings.policy()
    return [encode_value(field, getattr(fallback, field)) for field in SUBMISSION_NAMES]


# -- bookkeeping goes with the last task ----------------------------------------------------


async def test_types_submitted_then_cancelled_leave_nothing_behind(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_task_types=0)
    names = [f"t{i}" for i in range(2000)]
    ids: list[str] = []
    for start in range(0, len(names), 1000):
        batch = [Submission(type=name) for name in names[start : start + 1000]]
        ids += [s.id for s in await broker.enqueue_many(batch)]
    assert len(await types_set(broker)) == 2000
    for task_id in ids:
        await broker.cancel(task_id)
    assert await types_set(broker) == set()
    assert await per_type_counters(broker) == {}
    page = await broker.list_tasks(TaskState.PENDING)
    assert (page.items, page.next_cursor) == ([], None)


async def test_a_type_leaves_with_its_last_task_however_it_ends(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(retention=Retention(dead=0, dead_max=1))
    await submit(broker, "done")
    await broker.report([succeeded(await claim_one(broker, "done"))])
    await submit(broker, "later", delay=60)
    await broker.cancel((await broker.list_tasks(TaskState.SCHEDULED)).items[0].id)
    await make_dead(broker, 1, "purged")
    await make_dead(broker, 2, "trimmed")  # dead_max=1: the trimmer drops one of them
    assert await types_set(broker) == {"purged", "trimmed"}
    await broker.purge_dead("purged")
    assert await types_set(broker) == {"trimmed"}
    await broker.trim()
    assert await types_set(broker) == {"trimmed"}  # one dead letter left: it still has a task
    await broker.purge_dead()
    assert await types_set(broker) == set()
    assert await per_type_counters(broker) == {}


async def test_the_trimmer_sweeps_types_an_older_version_left_behind(broker: Broker) -> None:
    await submit(broker, "alive")
    stale = [f"gone{i}" for i in range(50)]
    await broker.redis.execute("SADD", broker.keys.types, *stale)
    result = await broker.trim()
    assert result.types_dropped == 50
    assert await types_set(broker) == {"alive"}


# -- a bound on how many ---------------------------------------------------------------------


async def test_past_max_task_types_a_new_type_is_refused_and_an_old_one_is_not(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(max_task_types=2))
    first = await submit(broker, "a")
    await submit(broker, "b")
    with pytest.raises(TooManyTypesError, match="max_task_types is 2") as caught:
        await submit(broker, "c")
    assert caught.value.task_type == "c"
    with pytest.raises(TooManyTypesError):  # a batch counts its own new types
        await broker.enqueue_many([Submission(type="a"), Submission(type="c")])
    await submit(broker, "a")  # a type with tasks is no new type
    await broker.cancel((await broker.list_tasks(TaskState.PENDING, task_type="b")).items[0].id)
    await submit(broker, "c")  # b has no task left: room for c
    assert await types_set(broker) == {"a", "c"}
    await broker.cancel(first)
    await broker.set_policy(Policy(max_task_types=0))
    for name in ("d", "e", "f"):
        await submit(broker, name)


async def test_a_retried_submission_is_answered_even_at_the_limit(broker: Broker) -> None:
    """A retry whose idempotency key names an existing task adds nothing, so it is answered
    with that task even when its type has no tasks left and the limit is reached."""
    await broker.set_policy(Policy(max_task_types=1))
    first = await broker.enqueue(Submission(type="a", idempotency_key="k"))
    await broker.report([succeeded(await claim_one(broker, "a"))])
    await submit(broker, "b")
    again = await broker.enqueue(Submission(type="a", idempotency_key="k"))
    assert (again.id, again.created) == (first.id, False)
    with pytest.raises(TooManyTypesError):
        await submit(broker, "a")


async def test_max_task_types_is_global_only(broker: Broker) -> None:
    with pytest.raises(InvalidTaskError, match="global setting") as caught:
        await broker.set_policy(Policy(max_task_types=5), "a")
    assert caught.value.field == "max_task_types"


async def test_the_apis_answer_too_many_types_clearly(redis_url: str) -> None:
    async with (
        api_server(redis_url, server__tokens=(ADMIN_TOKEN,), task__max_task_types=1) as server,
        server.client(token=ADMIN_TOKEN) as client,
    ):
        assert (await client.post("/api/v1/tasks", json={"type": "a"})).status_code == 201
        response = await client.post("/api/v1/tasks", json={"type": "b"})
        assert response.status_code == 429, response.text
        body = problem(response)
        assert body["title"] == "Too many task types"
        assert body["field"] == "type"
        assert "max_task_types is 1" in body["detail"]
    async with grpc_server(redis_url, task__max_task_types=1) as grpc:
        with pytest.raises(GRPCError) as info:
            await grpc_call(grpc.h2c, lambda stub: submit_by_grpc(stub, name="c"))
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        assert "max_task_types is 1" in (info.value.message or "")


def test_the_cli_says_why_a_new_type_is_refused(redis_url: str, tmp_path: Path) -> None:
    env = cli_env(redis_url, "types-cli")
    assert run(env, "policy", "set", "max_task_types=1").code == 0
    assert run(env, "submit", "a").code == 0
    refused = run(env, "submit", "b")
    assert refused.code == 1, refused
    assert "task type 'b' has no tasks, and 1 task types already do" in refused.error
    assert "max_task_types is 1" in refused.error
