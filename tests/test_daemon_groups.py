"""Fair share held by real worker processes: the tasks journal their own ends (and starts),
so what is checked is what ran and when, not what the broker says."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    wait_for_count,
    wait_for_worker,
    worker_env,
)
from invariants import assert_invariants

from taskqueue.broker import Broker, Submission
from taskqueue.models import Policy, TaskState
from taskqueue.redis import Redis

MODULE = "groupedtasks"
TYPE = "tenant.job"
#: A type that journals "start|end <group> <time>" (its group as its context gives it) and
#: sleeps payload.seconds.
PROCESSORS = f"""
import time

import trio

from taskqueue.plugin import hookimpl


async def journaled(ctx):
    def note(event):
        with open(ctx.payload["journal"], "a") as journal:
            journal.write(f"{{event}} {{ctx.group}} {{time.time()}}\\n")

    note("start")
    await trio.sleep(ctx.payload["seconds"])
    note("end")


@hookimpl
def taskqueue_register_processors(registry):
    registry.add("{TYPE}", journaled)
"""


def journal_of(path: Path) -> list[tuple[str, str, float]]:
    entries = [
        (event, group, float(at))
        for event, group, at in (line.split() for line in path.read_text().splitlines())
    ]
    return sorted(entries, key=lambda e: (e[2], e[0] == "start"))


async def start_workers(
    stack: AsyncExitStack, tmp_path: Path, redis_url: str, broker: Broker, count: int, **env: str
) -> None:
    (tmp_path / f"{MODULE}.py").write_text(PROCESSORS)
    for n in range(count):
        variables = worker_env(
            redis_url,
            PYTHONPATH=str(tmp_path),
            TASKQUEUE_WORKER__ID=f"w{n}",
            TASKQUEUE_WORKER__PROCESSORS=MODULE,
            **env,
        )
        await stack.enter_async_context(WorkerProcess(tmp_path, variables, name=f"w{n}"))
    for n in range(count):
        await wait_for_worker(broker, f"w{n}", STARTUP)


async def submit_group(
    broker: Broker, journal: Path, group: str, count: int, seconds: float = 0, **fields: Any
) -> None:
    payload = {"journal": str(journal), "seconds": seconds}
    for start in range(0, count, 1000):
        batch = [
            Submission(type=TYPE, payload=payload, group=group, **fields)
            for _ in range(min(1000, count - start))
        ]
        await broker.enqueue_many(batch)


async def test_a_groups_ten_tasks_finish_before_another_groups_300th_of_10000(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    await submit_group(broker, journal, "A", 10_000)
    await submit_group(broker, journal, "B", 10)
    async with AsyncExitStack() as stack:
        await start_workers(stack, tmp_path, redis_url, broker, 4)
        await wait_for_count(broker, TaskState.SUCCEEDED, 10_010, within=120)
        await assert_invariants(broker)

    ends = [(group, at) for event, group, at in journal_of(journal) if event == "end"]
    assert sorted(g for g, _ in ends) == ["A"] * 10_000 + ["B"] * 10  # each ran once
    last_b = max(at for g, at in ends if g == "B")
    a_before = sum(1 for g, at in ends if g == "A" and at < last_b)
    print(f"\nA's tasks that ended before B's last: {a_before} of 10,000")
    assert a_before < 300, a_before


async def test_a_group_limit_of_two_is_never_exceeded_by_three_workers(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    await broker.set_policy(Policy(group_concurrency=2), TYPE)
    groups = [f"tenant-{n}" for n in range(4)]
    async with AsyncExitStack() as stack:
        await start_workers(stack, tmp_path, redis_url, broker, 3)
        for group in groups:
            await submit_group(broker, journal, group, 15, seconds=0.05)
        await wait_for_count(broker, TaskState.SUCCEEDED, 60, within=60)
        await assert_invariants(broker)

    running = dict.fromkeys(groups, 0)
    most = dict.fromkeys(groups, 0)
    for event, group, _ in journal_of(journal):
        running[group] += 1 if event == "start" else -1
        most[group] = max(most[group], running[group])
    # The limit, reached and never passed by any group (each worker could run 50 at once).
    assert most == dict.fromkeys(groups, 2)


async def test_a_groups_urgent_task_runs_before_another_groups_backlog(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    await submit_group(broker, journal, "B", 50, priority="low")
    await submit_group(broker, journal, "A", 1, priority="high")
    async with AsyncExitStack() as stack:
        await start_workers(
            stack, tmp_path, redis_url, broker, 1, TASKQUEUE_WORKER__CONCURRENCY="1"
        )
        await wait_for_count(broker, TaskState.SUCCEEDED, 51, within=60)

    starts = [group for event, group, _ in journal_of(journal) if event == "start"]
    assert starts == ["A"] + ["B"] * 50


async def test_a_group_rate_limit_spaces_each_groups_starts_across_two_workers(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    journal = tmp_path / "journal"
    journal.touch()
    await broker.set_policy(Policy(group_rate_limit="10/s"), TYPE)  # 100 ms apart per group
    groups = [f"tenant-{n}" for n in range(3)]
    async with AsyncExitStack() as stack:
        await start_workers(stack, tmp_path, redis_url, broker, 2)
        for group in groups:
            await submit_group(broker, journal, group, 5)
        await wait_for_count(broker, TaskState.SUCCEEDED, 15, within=60)
        await assert_invariants(broker)

    starts = [(group, at) for event, group, at in journal_of(journal) if event == "start"]
    for group in groups:
        times = [at for g, at in starts if g == group]
        assert len(times) == 5
        # Five claims at least 100 ms apart span 400 ms; the journal notes each a little after
        # its claim, so allow the first note up to 100 ms of lateness.
        assert times[-1] - times[0] >= 0.3, (group, times)
