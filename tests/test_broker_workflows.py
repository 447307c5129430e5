"""Dependencies decided in the broker's scripts: chains pass results along, a chord's callback
is released exactly once by its last member, and a dependency that fails cancels its
dependents (or lets them run, when they ask to)."""

from __future__ import annotations

import pytest
from broker_helpers import TYPE, claim, claim_one, failed, state_of, submit, succeeded
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.errors import InvalidTaskError
from taskqueue.models import Policy, TaskState
from taskqueue.workflows import chain, chord


def step(payload: object = None, **fields: object) -> Submission:
    return Submission(type=TYPE, payload=payload, **fields)  # type: ignore[arg-type]


async def run_one(broker: Broker, result: object = None) -> str:
    """Claim the one pending task, report it succeeded with ``result``; its id."""
    task = await claim_one(broker)
    await broker.report([succeeded(task, result)])
    return task.id


async def test_a_chain_runs_in_order_and_passes_each_result_to_the_next(broker: Broker) -> None:
    ids = [s.id for s in await broker.enqueue_many(chain(step("a"), step("b"), step("c")))]

    assert [await state_of(broker, i) for i in ids] == [
        TaskState.PENDING,
        TaskState.BLOCKED,
        TaskState.BLOCKED,
    ]
    first = await claim_one(broker)
    assert (first.id, first.inputs) == (ids[0], None)
    assert await claim(broker, 10) == []  # the rest wait, however many a worker asks for
    await broker.report([succeeded(first, {"from": "a"})])

    second = await claim_one(broker)
    assert (second.id, second.inputs) == (ids[1], [{"from": "a"}])
    await broker.report([succeeded(second, "from b")])
    third = await claim_one(broker)
    assert (third.id, third.inputs) == (ids[2], ["from b"])
    await assert_invariants(broker)


async def test_a_chord_callback_is_released_once_by_the_last_member_with_all_results(
    broker: Broker,
) -> None:
    batch = chord([step(i) for i in range(100)], step("callback"))
    *members, callback = [s.id for s in await broker.enqueue_many(batch)]

    tasks = await claim(broker, 100)
    assert {t.id for t in tasks} == set(members)
    await broker.report([succeeded(t, t.payload * 2) for t in tasks[:99]])
    assert await state_of(broker, callback) is TaskState.BLOCKED
    assert (await broker.get(callback)).waiting_for == [tasks[99].id]
    await assert_invariants(broker)

    await broker.report([succeeded(tasks[99], tasks[99].payload * 2)])
    (released,) = await claim(broker, 10)
    assert released.id == callback
    assert released.inputs == [i * 2 for i in range(100)]  # in the members' order
    await assert_invariants(broker)


async def test_a_dependency_that_dead_letters_cancels_its_dependents_transitively(
    broker: Broker,
) -> None:
    batch = [step("a", max_retries=0), step("b", depends_on=[0]), step("c", depends_on=[1])]
    a, b, c = [s.id for s in await broker.enqueue_many(batch)]

    await broker.report([failed(await claim_one(broker))])

    assert await state_of(broker, a) is TaskState.DEAD
    for dependent, cause in ((b, a), (c, b)):
        task = await broker.get(dependent)
        assert task.state is TaskState.CANCELLED
        assert task.error == f"dependency {cause} ended {'dead' if cause == a else 'cancelled'}"
    assert await claim(broker, 10) == []
    await assert_invariants(broker)


async def test_a_dependent_that_runs_anyway_gets_null_for_the_failed_input(
    broker: Broker,
) -> None:
    batch = [
        step("ok"),
        step("bad", max_retries=0),
        step(depends_on=[0, 1], on_dependency_failure="run"),
    ]
    _, _, last = [s.id for s in await broker.enqueue_many(batch)]
    ok, bad = await claim(broker, 2)

    await broker.report([succeeded(ok, "fine"), failed(bad)])

    task = await claim_one(broker)
    assert (task.id, task.inputs) == (last, ["fine", None])
    await assert_invariants(broker)


async def test_cancelling_a_blocked_task_cancels_what_waits_for_it_and_frees_nothing_else(
    broker: Broker,
) -> None:
    a, b, c = [s.id for s in await broker.enqueue_many(chain(step(), step(), step()))]

    assert await broker.cancel(b) == "cancelled"

    assert [await state_of(broker, i) for i in (a, b, c)] == [
        TaskState.PENDING,
        TaskState.CANCELLED,
        TaskState.CANCELLED,
    ]
    await run_one(broker)
    assert await claim(broker, 10) == []
    await assert_invariants(broker)


async def test_a_task_may_depend_on_tasks_submitted_earlier_by_id(broker: Broker) -> None:
    done = await submit(broker)
    await run_one(broker, "earlier")
    running = await submit(broker)

    later = (await broker.enqueue(step(depends_on=[done, running]))).id

    assert (await broker.get(later)).state is TaskState.BLOCKED
    assert (await broker.get(running)).dependents == [later]
    await run_one(broker, "now")
    task = await claim_one(broker)
    assert (task.id, task.inputs) == (later, ["earlier", "now"])
    assert (await broker.get(later)).depends_on == [done, running]


async def test_depending_on_tasks_that_all_ended_queues_at_once_or_cancels(
    broker: Broker,
) -> None:
    done = await submit(broker)
    await run_one(broker, 1)
    gone = await submit(broker)
    await broker.cancel(gone)

    runs = await broker.enqueue(step(depends_on=[done]))
    refused = await broker.enqueue(step(depends_on=[done, gone]))

    assert runs.state is TaskState.PENDING
    assert refused.state is TaskState.CANCELLED
    assert (await broker.get(refused.id)).error == f"dependency {gone} ended cancelled"
    assert (await claim_one(broker)).inputs == [1]
    # An ended task still names what depends on it, so its workflow reads whole from it.
    assert (await broker.get(done)).dependents == [runs.id, refused.id]
    assert {t.id for t in (await broker.workflow(done)).tasks} == {done, gone, runs.id, refused.id}
    await assert_invariants(broker)


async def test_a_blocked_task_with_a_delay_waits_for_it_after_its_dependencies(
    broker: Broker, clock: FakeClock
) -> None:
    _, b = [s.id for s in await broker.enqueue_many(chain(step(), step(delay=60)))]

    clock.advance(10)
    await run_one(broker)

    assert await state_of(broker, b) is TaskState.SCHEDULED
    clock.advance(50)
    assert (await broker.promote()).promoted == 1
    assert (await claim_one(broker)).id == b


@pytest.mark.parametrize(
    ("batch", "field", "message"),
    [
        ([step(depends_on=[0])], "depends_on.0", "does not name an earlier task"),
        ([step(), step(depends_on=[1])], "1.depends_on.0", "does not name an earlier task"),
        ([step(depends_on=["0190-no-such-task"])], "depends_on.0", "which does not exist"),
        ([step(on_dependency_failure="run")], "on_dependency_failure", "needs depends_on"),
        ([step(depends_on=["a,b"])], "depends_on.0", "is not a task id"),
        ([step(depends_on=["a\x1db"])], "depends_on.0", "is not a task id"),
        ([step(depends_on=["no\u00a0such"])], "depends_on.0", "is not a task id"),
        ([step(depends_on=["\u00b4\U0001f600-gone"])], "depends_on.0", "which does not exist"),
    ],
)
async def test_bad_dependencies_are_refused_and_nothing_is_written(
    broker: Broker, batch: list[Submission], field: str, message: str
) -> None:
    with pytest.raises(InvalidTaskError, match=message) as caught:
        await broker.enqueue_many(batch)

    assert caught.value.field == field
    assert (await broker.stats()).totals.get("submitted", 0) == 0


async def test_dependents_of_a_task_killed_with_its_worker_run_once_it_succeeds(
    broker: Broker, clock: FakeClock
) -> None:
    _, b = [s.id for s in await broker.enqueue_many(chain(step(), step()))]
    await claim(broker, 1, worker="doomed")
    clock.advance(broker.settings.lease_ttl + 1)

    await broker.reap()  # the lease expired: the attempt failed, the task is retried

    assert await state_of(broker, b) is TaskState.BLOCKED
    clock.advance(broker.settings.retry_max_delay)
    await broker.promote()
    await run_one(broker, "second try")
    assert (await claim_one(broker)).inputs == ["second try"]
    await assert_invariants(broker)


async def test_a_workflow_is_read_whole_from_any_of_its_tasks(broker: Broker) -> None:
    batch = chord([step(i) for i in range(3)], step("callback"))
    *members, callback = [s.id for s in await broker.enqueue_many(batch)]
    unrelated = await submit(broker)
    await broker.report([succeeded(t) for t in await claim(broker, 1)])

    flow = await broker.workflow(members[1])

    assert flow.tasks[0].id == members[1]
    assert {t.id for t in flow.tasks} == {*members, callback}
    assert unrelated not in {t.id for t in flow.tasks}
    by_id = {t.id: t for t in flow.tasks}
    assert by_id[callback].depends_on == members
    assert by_id[members[0]].dependents == [callback]
    assert flow.by_state[TaskState.BLOCKED] == 1
    assert flow.by_state[TaskState.SUCCEEDED] == 1
    assert flow.complete and not flow.finished


async def test_a_dependency_that_ends_twice_settles_its_dependents_once(broker: Broker) -> None:
    """Dead, requeued, then succeeded: a dependent that runs anyway was counted down by the
    death already, so the success must not release it while it still waits for another."""
    batch = [
        step("flaky", max_retries=0),
        step("slow"),
        step(depends_on=[0, 1], on_dependency_failure="run"),
    ]
    flaky, slow, last = [s.id for s in await broker.enqueue_many(batch)]
    first, _ = await claim(broker, 2)
    await broker.report([failed(first)])
    assert (await broker.get(last)).waiting_for == [slow]

    await broker.requeue_dead(flaky)
    await run_one(broker, "second life")

    assert (await broker.get(last)).state is TaskState.BLOCKED
    assert (await broker.get(last)).waiting_for == [slow]
    await assert_invariants(broker)


# -- unique tasks ------------------------------------------------------------------------------


async def test_a_unique_submission_returns_the_live_task_of_its_type_and_payload(
    broker: Broker,
) -> None:
    first = await broker.enqueue(step({"user": 7}, unique=True))
    again = await broker.enqueue(step({"user": 7}, unique=True))
    other = await broker.enqueue(step({"user": 8}, unique=True))
    plain = await broker.enqueue(step({"user": 7}))

    assert (again.id, again.created, again.state) == (first.id, False, TaskState.PENDING)
    assert other.created and other.id != first.id
    assert plain.created  # not unique: added beside it
    running = await claim_one(broker)
    assert running.id == first.id
    assert (await broker.enqueue(step({"user": 7}, unique=True))).id == first.id  # active
    await broker.report([succeeded(running)])

    after = await broker.enqueue(step({"user": 7}, unique=True))
    assert after.created and after.id != first.id  # ended: the key was let go
    await assert_invariants(broker)


async def test_a_type_made_unique_by_policy_dedupes_within_a_batch_unless_a_submission_opts_out(
    broker: Broker,
) -> None:
    await broker.set_policy(Policy(unique=True), TYPE)

    a, b, c = await broker.enqueue_many([step("x"), step("x"), step("x", unique=False)])

    assert (a.created, b.created, b.id) == (True, False, a.id)
    assert c.created and c.id != a.id
    assert (await broker.get(a.id)).unique_key
    await broker.cancel(a.id)
    assert (await broker.enqueue(step("x"))).created
    await assert_invariants(broker)


async def test_a_requeued_unique_task_is_unique_again(broker: Broker) -> None:
    dead = await broker.enqueue(step("job", unique=True, max_retries=0))
    await broker.report([failed(await claim_one(broker))])
    await broker.requeue_dead(dead.id)

    again = await broker.enqueue(step("job", unique=True))

    assert (again.id, again.created) == (dead.id, False)
    await assert_invariants(broker)
