"""A daemon process keeps the garbage collector off what its start-up built: a full
collection would otherwise walk every module, plugin and route again, pausing all running
tasks for tens of milliseconds each time."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from daemon_helpers import STARTUP, WorkerProcess, submit, wait_for_state, worker_env

from taskqueue.broker import Broker
from taskqueue.models import TaskState
from taskqueue.redis import Redis


async def test_a_worker_process_freezes_its_start_up_heap_and_runs_tasks(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    env = worker_env(redis_url, TASKQUEUE_LOGGING__LEVEL="debug")
    async with WorkerProcess(tmp_path, env) as worker:
        record = await worker.wait_for_log("start-up objects", within=STARTUP)
        match = re.search(r"froze (\d+) start-up objects", str(record["message"]))
        assert match is not None, record
        assert int(match.group(1)) > 10_000  # modules, plugins, config: not a handful

        broker = Broker(redis)
        task = await wait_for_state(broker, await submit(broker, "noop"), within=STARTUP)
        assert task.state is TaskState.SUCCEEDED
        worker.send_signal(signal.SIGTERM)
        assert await worker.wait_exit(within=STARTUP) == 0
