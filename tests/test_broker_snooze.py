"""Snoozed attempts in finish.lua: the task waits without spending its attempt, counted on the
task, up to its type's max_snoozes (policy), then dead-lettered."""

from __future__ import annotations

from api_helpers import api_server
from broker_helpers import TYPE, claim_one, submit
from conftest import FakeClock, MakeBroker
from grpc_helpers import grpc_call, grpc_server
from invariants import assert_invariants

from taskqueue.api.grpc import TaskQueueStub, pb
from taskqueue.broker import Broker, Report
from taskqueue.cli.views import task_details
from taskqueue.models import ClaimedTask, Policy, Task, TaskState
from taskqueue.outcomes import OutcomeKind


def snoozed(task: ClaimedTask, seconds: float) -> Report:
    return Report(
        task_id=task.id,
        attempt=task.attempt,
        kind=OutcomeKind.SNOOZED,
        snooze_ms=round(seconds * 1000),
    )


async def test_a_snooze_schedules_the_task_later_and_gives_its_attempt_back(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker, max_retries=0)
    task = await claim_one(broker)
    assert await broker.report([snoozed(task, 30)]) == [TaskState.SCHEDULED]
    stored = await broker.get(task_id)
    assert (stored.state, stored.attempt, stored.snoozes) == (TaskState.SCHEDULED, 0, 1)
    assert stored.ready_ms == clock() + 30_000
    await assert_invariants(broker)

    clock.advance(29.999)
    await broker.promote()
    assert await broker.claim("w1", [TYPE], 1) == []  # not before its time
    clock.advance(0.001)
    await broker.promote()
    again = await claim_one(broker)
    assert again.attempt == 1  # the same attempt once more: with no retries, it may still run
    await assert_invariants(broker)


async def test_a_zero_snooze_queues_the_task_at_once(broker: Broker) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    assert await broker.report([snoozed(task, 0)]) == [TaskState.PENDING]
    assert (await claim_one(broker)).id == task_id


async def test_three_snoozes_then_success_end_with_one_attempt_and_three_snoozes(
    broker: Broker, clock: FakeClock
) -> None:
    task_id = await submit(broker)
    for _ in range(3):
        task = await claim_one(broker)
        await broker.report([snoozed(task, 1)])
        clock.advance(1)
        await broker.promote()
    task = await claim_one(broker)
    await broker.report(
        [Report(task_id=task.id, attempt=task.attempt, kind=OutcomeKind.SUCCEEDED, result=1)]
    )
    done = await broker.get(task_id)
    assert (done.state, done.attempt, done.snoozes, done.result) == (TaskState.SUCCEEDED, 1, 3, 1)
    await assert_invariants(broker)


async def test_one_snooze_past_the_type_s_max_snoozes_dead_letters_the_task(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(max_snoozes=2), TYPE)
    task_id = await submit(broker, max_retries=5)
    states = []
    for _ in range(3):
        task = await claim_one(broker)
        states += await broker.report([snoozed(task, 0)])
    assert states == [TaskState.PENDING, TaskState.PENDING, TaskState.DEAD]
    dead = await broker.get(task_id)
    assert (dead.state, dead.snoozes, dead.attempt) == (TaskState.DEAD, 2, 1)
    assert dead.error == "snoozed more often than its max_snoozes (2) allows"
    await assert_invariants(broker)

    # Requeued from the dead-letter queue, it gets its snoozes back with its attempts.
    await broker.requeue_dead(task_id)
    requeued = await broker.get(task_id)
    assert (requeued.state, requeued.snoozes, requeued.attempt) == (TaskState.PENDING, 0, 0)


async def test_without_a_policy_the_broker_settings_cap_the_snoozes(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(max_snoozes=0)
    task_id = await submit(broker)
    task = await claim_one(broker)
    assert await broker.report([snoozed(task, 5)]) == [TaskState.DEAD]
    assert (await broker.get(task_id)).snoozes == 0


async def test_a_global_max_snoozes_applies_where_the_type_sets_none(broker: Broker) -> None:
    await broker.set_policy(Policy(max_snoozes=0))
    await submit(broker)
    task = await claim_one(broker)
    assert await broker.report([snoozed(task, 5)]) == [TaskState.DEAD]


async def test_a_task_cancelled_while_it_runs_ends_cancelled_when_it_snoozes(
    broker: Broker,
) -> None:
    task_id = await submit(broker)
    task = await claim_one(broker)
    await broker.cancel(task_id)
    assert await broker.report([snoozed(task, 5)]) == [TaskState.CANCELLED]
    await assert_invariants(broker)


async def test_a_stale_snooze_is_refused(broker: Broker) -> None:
    await submit(broker)
    task = await claim_one(broker)
    await broker.report([snoozed(task, 0)])
    again = await claim_one(broker, worker="w2")
    assert again.attempt == task.attempt
    stale = Report(task_id=task.id, attempt=task.attempt + 1, kind=OutcomeKind.SNOOZED)
    assert await broker.report([stale]) == [None]


async def test_rest_grpc_and_the_cli_show_snoozes_and_take_max_snoozes(redis_url: str) -> None:
    async with api_server(redis_url) as server, server.client() as client:
        submitted = (await client.post("/api/v1/tasks", json={"type": TYPE})).json()
        task = await claim_one(server.broker)
        await server.broker.report([snoozed(task, 60)])
        document = (await client.get(f"/api/v1/tasks/{submitted['id']}")).json()
        assert (document["state"], document["snoozes"], document["attempt"]) == (
            "scheduled", 1, 0,
        )  # fmt: skip
        put = await client.put(f"/api/v1/policy/{TYPE}", json={"max_snoozes": 7})
        assert put.status_code == 200, put.text
        refused = await client.put(f"/api/v1/policy/{TYPE}", json={"max_snoozes": -1})
        assert refused.status_code == 422 and "max_snoozes" in refused.text
        assert (await server.broker.policy()).layer("live", TYPE).max_snoozes == 7

    async with grpc_server(redis_url) as grpc:

        async def use(stub: TaskQueueStub) -> tuple[pb.Task, pb.PolicyScope]:
            return (
                await stub.get_task(pb.GetTaskRequest(id=submitted["id"])),
                await stub.get_policy(pb.GetPolicyRequest(type=TYPE)),
            )

        message, scope = await grpc_call(grpc.h2c, use)
        assert (message.snoozes, scope.live.max_snoozes) == (1, 7)


def test_taskqueue_status_shows_snoozes_once_there_are_any() -> None:
    task = Task(id="t1", type=TYPE, attempt=1, snoozes=3)
    assert ("snoozes", "3") in list(task_details(task, 0).pairs)
    assert "snoozes" not in dict(task_details(Task(id="t2", type=TYPE), 0).pairs)
