"""Rate and concurrency limits per task type as claim.lua enforces them, on a real Redis with a
fake clock: tasks over a limit wait in their queue (never failed or retried), a rate limit says
when the next may start, and a freed slot wakes the workers."""

from __future__ import annotations

import pytest
import trio
from broker_helpers import succeeded
from conftest import FakeClock
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.errors import InvalidTaskError
from taskqueue.metrics import Metrics
from taskqueue.models import Policy, Priority, TaskState
from taskqueue.redis import Redis


async def fill(broker: Broker, task_type: str, n: int, **fields: object) -> list[str]:
    submitted = await broker.enqueue_many(
        [Submission(type=task_type, payload=i, **fields) for i in range(n)]  # type: ignore[arg-type]
    )
    return [s.id for s in submitted]


async def test_a_rate_limit_spaces_starts_and_says_when_the_next_may_start(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(rate_limit="10/s"), "hook")  # one start every 100 ms
    await fill(broker, "hook", 30)
    first = await broker.claim_batch("w1", ["hook"], 30)
    assert len(first.tasks) == 1  # burst 1: evenly spaced
    assert first.held_until_ms == clock() + 100
    assert (await broker.claim_batch("w2", ["hook"], 30)).tasks == []  # another worker too
    clock.advance(ms=99)
    assert (await broker.claim_batch("w1", ["hook"], 30)).tasks == []
    clock.advance(ms=1)
    assert len((await broker.claim_batch("w2", ["hook"], 30)).tasks) == 1
    clock.advance(1.0)  # a quiet second saves up no more than the burst
    assert len((await broker.claim_batch("w1", ["hook"], 30)).tasks) == 1
    await assert_invariants(broker)


async def test_over_many_claims_the_rate_holds_and_the_held_tasks_keep_waiting(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(rate_limit="50/s", rate_burst=5), "hook")
    await fill(broker, "hook", 1000)
    started = 0
    start_ms = clock()
    for _ in range(1001):  # ten seconds in 10 ms steps, both ends in, four workers a step
        for worker in ("w1", "w2", "w3", "w4"):
            started += len(await broker.claim(worker, ["hook"], 50))
        clock.advance(ms=10)
    assert clock() - start_ms == 10_010
    assert started == 5 + 500  # the burst at 0 ms, then one every 20 ms up to 10,000 ms
    stats = await broker.stats()
    assert stats.by_state[TaskState.PENDING] == 1000 - started  # waiting, not failed
    await assert_invariants(broker)


async def test_a_limited_type_does_not_hold_back_other_types(broker: Broker) -> None:
    await broker.set_policy(Policy(rate_limit="1/min"), "slow")
    await fill(broker, "slow", 5, priority=Priority.CRITICAL)
    await fill(broker, "fast", 5, priority=Priority.LOW)
    claim = await broker.claim_batch("w1", ["slow", "fast"], 10)
    assert sorted(t.type for t in claim.tasks) == ["fast"] * 5 + ["slow"]
    assert claim.held_until_ms is not None


async def test_a_concurrency_limit_counts_active_tasks_across_workers(broker: Broker) -> None:
    await broker.set_policy(Policy(concurrency=3), "shell.run")
    await fill(broker, "shell.run", 10)
    a = await broker.claim_batch("w1", ["shell.run"], 2)
    b = await broker.claim_batch("w2", ["shell.run"], 5)
    assert (len(a.tasks), len(b.tasks)) == (2, 1)
    assert b.held_until_ms is None  # a slot frees when a task ends, not at a time
    assert await broker.claim("w3", ["shell.run"], 5) == []
    await broker.report([succeeded(a.tasks[0])])
    assert len(await broker.claim("w3", ["shell.run"], 5)) == 1
    await assert_invariants(broker)


async def test_a_task_ending_under_a_concurrency_limit_wakes_the_workers(
    broker: Broker, redis: Redis
) -> None:
    await broker.set_policy(Policy(concurrency=1), "shell.run")
    await fill(broker, "shell.run", 2)
    (task,) = await broker.claim("w1", ["shell.run"], 5)
    async with redis.subscribe(broker.keys.wake_channel) as subscription:
        await broker.report([succeeded(task)])
        with trio.fail_after(5):
            _, message = await subscription.get_message()
    assert "shell.run" in message.split(",")


async def test_limits_resolve_live_over_config_and_go_when_unset(
    broker: Broker, redis: Redis
) -> None:
    await broker.set_type_policies({"t": Policy(concurrency=2, rate_limit="5/s")})
    await broker.set_policy(Policy(concurrency=4), "t")
    assert await redis.execute("HGET", broker.keys.limits, "t") == "5 1000 1 4 0 0 0 0"
    await broker.unset_policy(["concurrency"], "t")
    assert await redis.execute("HGET", broker.keys.limits, "t") == "5 1000 1 2 0 0 0 0"
    await broker.set_type_policies({"t": Policy()})  # the config no longer limits it
    assert await redis.execute("HGET", broker.keys.limits, "t") is None
    view = await broker.policy()
    assert view.effective("t").concurrency is None


async def test_claims_note_which_limit_holds_a_type_back(
    broker: Broker, clock: FakeClock, redis: Redis
) -> None:
    await broker.set_policy(Policy(concurrency=1), "c")
    await broker.set_policy(Policy(rate_limit="1/h"), "r")
    await fill(broker, "c", 3)
    await fill(broker, "r", 3)
    await fill(broker, "free", 3)
    await broker.claim("w1", ["c", "r", "free"], 10)
    held = await redis.execute("HGETALL", broker.keys.held)
    assert dict(zip(held[::2], held[1::2], strict=True)) == {
        "c": f"{clock()} concurrency",
        "r": f"{clock()} rate",
    }


@pytest.mark.parametrize(
    ("policy", "task_type", "field", "message"),
    [
        (Policy(rate_limit="100/parsec"), "t", "rate_limit", "'100/parsec' is not a rate"),
        (Policy(rate_limit="5/2d"), "t", "rate_limit", "out of range"),
        (Policy(rate_burst=0), "t", "rate_burst", ">= 1"),
        (Policy(concurrency=0), "t", "concurrency", ">= 1"),
        (Policy(concurrency=3), None, "concurrency", "set per task type"),
        (Policy(rate_limit="1/s"), None, "rate_limit", "set per task type"),
    ],
)
async def test_a_bad_limit_is_refused_naming_its_field(
    broker: Broker, policy: Policy, task_type: str | None, field: str, message: str
) -> None:
    with pytest.raises(InvalidTaskError) as refused:
        await broker.set_policy(policy, task_type)
    assert refused.value.field == field
    assert message in str(refused.value)


async def test_rates_read_back_as_they_are_written(broker: Broker) -> None:
    for text, shown in [("100/s", "100/s"), ("1000/min", "1000/min"), ("5/10s", "5/10s"),
                        ("3/1.5s", "3/1500ms"), ("60/60m", "60/h")]:  # fmt: skip
        await broker.set_policy(Policy(rate_limit=text), "t")
        assert (await broker.policy()).layer("live", "t").rate_limit == shown


async def test_stats_and_metrics_show_the_types_a_limit_holds_back(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.set_policy(Policy(concurrency=1), "c")
    await broker.set_policy(Policy(rate_limit="1/h"), "r")
    await broker.set_policy(Policy(concurrency=5), "roomy")
    for task_type in ("c", "r", "roomy"):
        await fill(broker, task_type, 3)
    await broker.claim("w1", ["c", "r", "roomy"], 10)
    assert (await broker.stats()).held_by_limit == {"c": "concurrency", "r": "rate"}

    metrics = Metrics(process_metrics=False)
    metrics.watch_worker(lambda: 0, 10, ["c", "r"])  # 'roomy' is no registered type here
    await metrics.refresh(broker)
    text = metrics.render().decode()
    assert 'taskqueue_tasks_held{limit="concurrency",type="c"} 2.0' in text
    assert 'taskqueue_tasks_held{limit="rate",type="r"} 2.0' in text
    assert "roomy" not in text

    clock.advance(6)  # no claim has held them back since: stale notes say nothing
    assert (await broker.stats()).held_by_limit == {}


async def test_a_paused_type_is_not_claimed_and_queues_on_until_resumed(
    broker: Broker, clock: FakeClock, redis: Redis
) -> None:
    await broker.set_policy(Policy(paused=True), "report")
    await fill(broker, "report", 5)
    await fill(broker, "other", 2)
    for _ in range(5):  # five seconds of claims: nothing of it
        assert [t.type for t in await broker.claim("w1", ["report", "other"], 10)] in (
            ["other", "other"],
            [],
        )
        clock.advance(1)
    await fill(broker, "report", 1)  # submissions still queue
    stats = await broker.stats()
    assert (stats.pending_by_type["report"], stats.held_by_limit) == (6, {"report": "paused"})
    async with redis.subscribe(broker.keys.wake_channel) as subscription:
        await broker.unset_policy(["paused"], "report")
        with trio.fail_after(5):
            _, message = await subscription.get_message()
    assert message == "report"  # the workers hear of it at once
    assert len(await broker.claim("w1", ["report"], 10)) == 6
    await assert_invariants(broker)
