"""Debounce: submissions with one key collapse into one waiting task that starts once they stop
(a window after the last), never later than ``max_wait`` after the first; the reply says
whether each created, replaced or joined the task. Driven on the broker's fake clock, with
the scheduler's sweep run by hand, and through REST."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import api_server, problem
from broker_helpers import TYPE, failed
from conftest import FakeClock
from grpc_helpers import grpc_call, grpc_server
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from invariants import assert_invariants

from taskqueue import InvalidTaskError
from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Broker, Submission
from taskqueue.models import Debounce, TaskState, validated


def debounced(payload: Any, *, task_type: str = TYPE, **debounce: Any) -> Submission:
    settings: dict[str, Any] = {"key": "user-7", "window": 0.5, "max_wait": 1.0, **debounce}
    return Submission(type=task_type, payload=payload, debounce=Debounce(**settings))


async def run_due(broker: Broker) -> list[Any]:
    """Promote what is due and claim it: the payloads of the tasks that start now."""
    await broker.promote()
    claimed = await broker.claim("w1", [TYPE], 100)
    return [task.payload for task in claimed]


async def test_a_stream_of_submissions_runs_once_per_max_wait_with_the_last_payload(
    broker: Broker, clock: FakeClock
) -> None:
    # 100 submissions over 2 s, one every 20 ms, window 0.5 s, max_wait 1 s.
    started: list[Any] = []
    outcomes = []
    last_submitted: dict[str, int] = {}
    for n in range(100):
        submitted = await broker.enqueue(debounced(n))
        outcomes.append(submitted.debounced)
        last_submitted[submitted.id] = n
        assert submitted.state is TaskState.SCHEDULED
        clock.advance(ms=20)
        started += await run_due(broker)
    clock.advance(1)
    started += await run_due(broker)
    assert 2 <= len(started) <= 3, started
    # Each task ran with the last payload submitted to it, and the very last one won.
    assert started == sorted(last_submitted.values())
    assert started[-1] == 99
    assert outcomes.count("created") == len(started)
    assert set(outcomes) == {"created", "replaced"}
    await assert_invariants(broker)


async def test_the_task_starts_a_window_after_the_last_submission_when_they_stop(
    broker: Broker, clock: FakeClock
) -> None:
    first = await broker.enqueue(debounced("a", max_wait=None))
    clock.advance(0.4)
    second = await broker.enqueue(debounced("b", max_wait=None))
    assert (second.id, second.created, second.debounced) == (first.id, False, "replaced")
    clock.advance(0.4)  # 0.8 s after the first: its own window has passed, not the second's
    assert await run_due(broker) == []
    clock.advance(0.1)
    assert await run_due(broker) == ["b"]
    # It started: the next submission makes a new task.
    third = await broker.enqueue(debounced("c"))
    assert (third.created, third.debounced) == (True, "created") and third.id != first.id
    await assert_invariants(broker)


async def test_keep_first_keeps_the_first_payload(broker: Broker, clock: FakeClock) -> None:
    first = await broker.enqueue(debounced("first", keep="first"))
    assert first.debounced == "created"
    joined = await broker.enqueue(debounced("second", keep="first"))
    assert (joined.id, joined.debounced) == (first.id, "joined")
    clock.advance(1)
    assert await run_due(broker) == ["first"]


async def test_a_key_is_its_types_and_one_batch_collapses_too(
    broker: Broker, clock: FakeClock
) -> None:
    results = await broker.enqueue_many(
        [debounced(1), debounced(2), debounced(3, task_type="other.type")]
    )
    assert [r.debounced for r in results] == ["created", "replaced", "created"]
    assert results[0].id == results[1].id != results[2].id
    assert (await broker.get(results[0].id)).payload == 2
    await assert_invariants(broker)


async def test_a_cancelled_debounced_task_is_not_joined(broker: Broker) -> None:
    first = await broker.enqueue(debounced(1))
    assert await broker.cancel(first.id) == "cancelled"
    again = await broker.enqueue(debounced(2))
    assert (again.created, again.debounced) == (True, "created") and again.id != first.id


async def test_joining_a_task_whose_max_wait_passed_long_ago_starts_it_at_once(
    broker: Broker, clock: FakeClock
) -> None:
    # No sweep ran for two minutes (the schedulers were down): the task is still scheduled.
    first = await broker.enqueue(debounced(1))
    clock.advance(120)
    joined = await broker.enqueue(debounced(2))
    assert (joined.id, joined.debounced) == (first.id, "replaced")
    assert await run_due(broker) == [2]
    await assert_invariants(broker)


async def test_a_retry_waiting_out_its_backoff_is_not_joined(
    broker: Broker, clock: FakeClock
) -> None:
    first = await broker.enqueue(debounced(1))
    clock.advance(1)
    await broker.promote()
    (running,) = await broker.claim("w1", [TYPE], 1)
    await broker.report([failed(running)])
    assert (await broker.get(first.id)).state is TaskState.SCHEDULED  # its retry's backoff
    again = await broker.enqueue(debounced(2))
    assert (again.created, again.debounced) == (True, "created") and again.id != first.id
    assert (await broker.get(first.id)).payload == 1
    await assert_invariants(broker)


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"delay": 5}, "delay", "debounce"),
    ({"idempotency_key": "k"}, "idempotency_key", "debounce"),
    ({"unique": True}, "unique", "debounce"),
    ({"depends_on": ["x"]}, "depends_on", "debounce"),
    ({"debounce": {"key": "k", "window": 2, "max_wait": 1}}, "at least", "debounce.max_wait"),
    ({"debounce": {"key": "k", "window": 0}}, "window", "debounce.window"),
    ({"debounce": {"key": "", "window": 1}}, "key", "debounce.key"),
    ({"debounce": {"key": "k", "window": 1, "keep": "middle"}}, "keep", "debounce.keep"),
    ({"debounce": {"key": "k", "window": 1, "wait": 3}}, "wait", "debounce"),
]


@pytest.mark.parametrize(("fields", "said", "field"), BAD)
async def test_a_bad_debounce_is_refused_naming_the_field(
    broker: Broker, fields: dict[str, Any], said: str, field: str
) -> None:
    document = {"type": TYPE, "debounce": {"key": "k", "window": 1}, **fields}
    with pytest.raises(InvalidTaskError) as caught:
        await broker.enqueue(validated(document, Submission))
    assert said in str(caught.value)
    assert caught.value.field is not None and caught.value.field.startswith(field)
    assert await broker.redis.execute("KEYS", "*") == []


async def test_rest_debounces_and_says_what_each_submission_did(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        body = {"type": TYPE, "payload": 1, "debounce": {"key": "k", "window": 60}}
        first = await client.post("/api/v1/tasks", json=body)
        assert first.status_code == 201, first.text
        assert (first.json()["debounced"], first.json()["state"]) == ("created", "scheduled")
        second = await client.post("/api/v1/tasks", json={**body, "payload": 2})
        assert second.status_code == 200, second.text
        assert (second.json()["id"], second.json()["debounced"]) == (first.json()["id"], "replaced")
        assert second.json()["payload"] == 2
        batch = await client.post("/api/v1/tasks/batch", json={"tasks": [body, {"type": TYPE}]})
        assert [t.get("debounced") for t in batch.json()["tasks"]] == ["replaced", None]

        refused = await client.post(
            "/api/v1/tasks", json={**body, "debounce": {"key": "k", "window": 2, "max_wait": 1}}
        )
        assert refused.status_code == 422
        assert problem(refused)["field"] == "debounce.max_wait", refused.text
        unknown = await client.post(
            "/api/v1/tasks", json={**body, "debounce": {"key": "k", "windw": 2}}
        )
        assert unknown.status_code == 422 and "windw" in unknown.text, unknown.text


async def test_grpc_debounces_one_at_a_time_and_in_batches(redis_url: str) -> None:
    debounce = pb.Debounce(key="k", window_seconds=60, max_wait_seconds=120)
    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> tuple[list[pb.SubmitTaskResponse], pb.Task]:
            one = await stub.submit_task(
                pb.SubmitTaskRequest(type=TYPE, payload_json="1", debounce=debounce)
            )
            two = await stub.submit_task(
                pb.SubmitTaskRequest(type=TYPE, payload_json="2", debounce=debounce)
            )
            batch = await stub.submit_tasks(
                pb.SubmitTasksRequest(
                    tasks=[
                        pb.SubmitTaskRequest(type=TYPE, payload_json="3", debounce=debounce),
                        pb.SubmitTaskRequest(type=TYPE),
                    ]
                )
            )
            return [one, two, *batch.results], await stub.get_task(pb.GetTaskRequest(id=one.id))

        replies, task = await grpc_call(grpc.h2c, use)
        assert [r.debounced for r in replies] == ["created", "replaced", "replaced", ""]
        assert replies[0].id == replies[1].id == replies[2].id != replies[3].id
        assert (task.payload_json, task.state) == ("3", pb.TaskState.SCHEDULED)

        async def refused(stub: TaskQueueStub) -> None:
            bad = pb.Debounce(key="k", window_seconds=2, max_wait_seconds=1)
            await stub.submit_task(pb.SubmitTaskRequest(type=TYPE, debounce=bad))

        with pytest.raises(GRPCError) as caught:
            await grpc_call(grpc.h2c, refused)
        assert caught.value.status is Status.INVALID_ARGUMENT
        assert "debounce.max_wait_seconds" in str(caught.value.message), caught.value.message
