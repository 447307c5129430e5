"""A worker stalled past its lease (SIGSTOP, then SIGCONT) runs nothing it no longer holds:
the tasks another worker took over are neither started nor finished by it after it resumes,
its late outcomes are refused, and each task succeeds once.

The processor keeps a journal (one line per start and end of a body, with the process and the
attempt), so the test checks the whole history rather than counters alone.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import trio
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit_many,
    tasks_of,
    wait_for_count,
    wait_for_running,
    worker_env,
)
from history import JOURNALED, MODULE
from invariants import assert_invariants

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.redis import Redis

TASKS = 60


async def test_a_worker_paused_past_its_lease_runs_nothing_it_lost(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    broker = Broker(redis)
    (tmp_path / f"{MODULE}.py").write_text(JOURNALED)
    journal = tmp_path / "journal"
    journal.touch()

    def env(worker_id: str) -> dict[str, str]:
        return worker_env(
            redis_url,
            PYTHONPATH=str(tmp_path),
            TASKQUEUE_WORKER__ID=worker_id,
            TASKQUEUE_WORKER__CONCURRENCY="10",
            TASKQUEUE_WORKER__PREFETCH="20",
            TASKQUEUE_WORKER__PROCESSORS=MODULE,
        )

    ids = await submit_many(
        broker, "test.journaled", ({"journal": str(journal), "seconds": 0.5} for _ in range(TASKS))
    )
    async with WorkerProcess(tmp_path, env("stalled"), name="stalled") as stalled:
        await wait_for_running(broker, "stalled", 30)  # 10 running, 20 prefetched
        stalled.send_signal(signal.SIGSTOP)
        async with WorkerProcess(tmp_path, env("rescuer"), name="rescuer"):
            # The rescuer's reaper takes the stalled worker's leases (1 s) and runs everything.
            await wait_for_count(broker, TaskState.SUCCEEDED, TASKS, within=STARTUP + 10)
            resumed = time.time()
            stalled.send_signal(signal.SIGCONT)
            await stalled.wait_for_log("lease ran out", within=STARTUP)
            with trio.move_on_after(1.0):  # let whatever it would still do happen
                await trio.sleep_forever()
            await assert_invariants(broker)
        stalled.send_signal(signal.SIGTERM)
        await stalled.wait_exit(within=STARTUP)

    lines = [line.split() for line in journal.read_text().splitlines()]
    late = [
        (event, task_id)
        for event, pid, task_id, attempt, at in lines
        if int(pid) == stalled.pid and float(at) >= resumed and attempt == "1"
    ]
    assert late == [], "the stalled worker started or finished tasks it had lost"
    tasks = await tasks_of(broker, ids)
    assert Counter(t.state for t in tasks) == {TaskState.SUCCEEDED: TASKS}
    assert (await broker.stats()).totals["succeeded"] == TASKS, "a success counted twice"
    ends = Counter(task_id for event, _, task_id, _, _ in lines if event == "end")
    assert set(ends) == set(ids)
    lapsed = [r for r in stalled.log_records() if "lease ran out" in r["message"]]
    assert lapsed, "the stalled worker's bodies and prefetched tasks were not stopped"
