"""Workflows run by real worker processes: the tasks journal their own runs, so what is checked
is what ran (how often, with which inputs), not only what the broker says."""

from __future__ import annotations

import json
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    wait_for_state,
    wait_for_worker,
    wait_until,
    worker_env,
)
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.models import TaskState
from taskqueue.redis import Redis
from taskqueue.workflows import chain, chord

MODULE = "flowtasks"
#: "flow.step" journals one JSON line {"id", "payload", "inputs"} per run, sleeps
#: payload["seconds"], and returns payload["value"] plus the sum of its numeric inputs.
#: "flow.fail" always fails.
PROCESSORS = """
import json

import trio

from taskqueue.plugin import hookimpl


async def step(ctx):
    run = {"id": ctx.id, "payload": ctx.payload, "inputs": ctx.inputs}
    with open(ctx.payload["journal"], "a") as journal:
        journal.write(json.dumps(run) + "\\n")
    await trio.sleep(ctx.payload.get("seconds", 0))
    return ctx.payload.get("value", 0) + sum(i for i in ctx.inputs if isinstance(i, int))


async def fail(ctx):
    raise RuntimeError("this step always fails")


@hookimpl
def taskqueue_register_processors(registry):
    registry.add("flow.step", step)
    registry.add("flow.fail", fail)
"""


def runs_in(journal: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in journal.read_text().splitlines()]


async def start_worker(
    stack: AsyncExitStack, tmp_path: Path, redis_url: str, broker: Broker, name: str
) -> WorkerProcess:
    (tmp_path / f"{MODULE}.py").write_text(PROCESSORS)
    variables = worker_env(
        redis_url,
        PYTHONPATH=str(tmp_path),
        TASKQUEUE_WORKER__ID=name,
        TASKQUEUE_WORKER__CONCURRENCY="20",
        TASKQUEUE_WORKER__PROCESSORS=MODULE,
        TASKQUEUE_TASK__RETRY_BASE_DELAY="0.05s",
        TASKQUEUE_TASK__RETRY_MAX_DELAY="0.2s",
    )
    worker = await stack.enter_async_context(WorkerProcess(tmp_path, variables, name=name))
    await wait_for_worker(broker, name, STARTUP)
    return worker


def step(journal: Path, value: int, **payload: object) -> Submission:
    return Submission(
        type="flow.step", payload={"journal": str(journal), "value": value, **payload}
    )


async def test_a_chain_of_three_passes_each_result_to_the_next(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    async with AsyncExitStack() as stack:
        await start_worker(stack, tmp_path, redis_url, broker, "w0")
        batch = chain(step(journal, 1), step(journal, 10), step(journal, 100))
        ids = [s.id for s in await broker.enqueue_many(batch)]
        last = await wait_for_state(broker, ids[2], within=STARTUP)

    assert (last.state, last.result) == (TaskState.SUCCEEDED, 111)
    runs = runs_in(journal)
    assert [r["id"] for r in runs] == ids  # in order, each once
    assert [r["inputs"] for r in runs] == [[], [1], [11]]
    await assert_invariants(broker)


async def test_a_chord_callback_runs_once_after_all_100_members_even_when_a_worker_is_killed(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    async with AsyncExitStack() as stack:
        doomed = await start_worker(stack, tmp_path, redis_url, broker, "doomed")
        members = [step(journal, n, seconds=0.3) for n in range(100)]
        *member_ids, callback = [
            s.id for s in await broker.enqueue_many(chord(members, step(journal, 0)))
        ]

        async def some_ran() -> bool:
            return len(runs_in(journal)) >= 20

        await wait_until(some_ran, "the first members ran", STARTUP)
        doomed.send_signal(signal.SIGKILL)  # in the middle: 20 running, some done, most waiting
        assert await doomed.wait_exit() == -signal.SIGKILL
        await start_worker(stack, tmp_path, redis_url, broker, "survivor")
        done = await wait_for_state(broker, callback, within=60)

    assert done.state is TaskState.SUCCEEDED
    assert done.result == sum(range(100))
    runs = runs_in(journal)
    callback_runs = [r for r in runs if r["id"] == callback]
    assert len(callback_runs) == 1  # exactly once
    assert callback_runs[0]["inputs"] == list(range(100))  # every member's result, in order
    member_runs = {r["id"] for r in runs if r["id"] != callback}
    assert member_runs == set(member_ids)  # the killed worker's members ran again
    assert len(runs) > 101, "the kill interrupted no member: the test proved nothing"
    await assert_invariants(broker)


async def test_a_dependency_that_dead_letters_cancels_its_dependents(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    async with AsyncExitStack() as stack:
        await start_worker(stack, tmp_path, redis_url, broker, "w0")
        batch = [
            Submission(type="flow.fail", max_retries=2),
            Submission(
                type="flow.step", payload={"journal": str(journal), "value": 1}, depends_on=[0]
            ),
            Submission(
                type="flow.step",
                payload={"journal": str(journal), "value": 2},
                depends_on=[0],
                on_dependency_failure="run",
            ),
        ]
        failing, cancelled, anyway = [s.id for s in await broker.enqueue_many(batch)]
        ran = await wait_for_state(broker, anyway, within=STARTUP)
        gone = await wait_for_state(broker, cancelled, within=STARTUP)

    assert (await broker.get(failing)).state is TaskState.DEAD
    assert (await broker.get(failing)).attempt == 3
    assert (gone.state, gone.error) == (TaskState.CANCELLED, f"dependency {failing} ended dead")
    assert (ran.state, ran.result) == (TaskState.SUCCEEDED, 2)
    assert [(r["id"], r["inputs"]) for r in runs_in(journal)] == [(anyway, [None])]
    await assert_invariants(broker)
