"""How soon a SIGKILLed worker's tasks run again when a worker starts on the same host.

    ./dev python bench/recovery.py [--redis-url URL]

One ``taskqueue worker`` (concurrency 50, prefetch 50) takes 100 tasks that each sleep 2 s:
50 run, 50 wait prefetched. It is killed with SIGKILL and a new worker process is started at
once, as systemd's ``Restart=`` would. Reported: from the new process's spawn (its Python
start-up included) until the 100 tasks were back in the queue, and until all 100 had
succeeded. The worker timeout is left at its default: without the same-host check the tasks
would wait that long first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import trio

from taskqueue.broker import Broker, Submission
from taskqueue.config import Config
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.redis import Redis

TASKS = 100


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TASKQUEUE_REDIS__URL": url,
        "TASKQUEUE_LOGGING__LEVEL": "error",
        "TASKQUEUE_WORKER__CONCURRENCY": "50",
        "TASKQUEUE_WORKER__PREFETCH": "50",
    }
    return subprocess.Popen([sys.executable, "-m", "taskqueue", "worker"], env=env)


async def poll_until(check: Callable[[], Awaitable[bool]], poll: float = 0.01) -> None:
    while not await check():  # noqa: ASYNC110 - another process does the work
        await trio.sleep(poll)


async def measure(url: str) -> None:
    redis = Redis.from_url(url)
    broker = Broker(redis)
    await broker.enqueue_many(
        [Submission(type="sleep", payload={"seconds": 2}) for _ in range(TASKS)]
    )
    doomed = start_worker(url)

    async def all_in_hand() -> bool:
        # Claimed (running or prefetched) is active; the worker's heartbeat may not say so in time.
        return (await broker.stats()).by_state[TaskState.ACTIVE] == TASKS

    async def all_returned() -> bool:
        return (await broker.stats()).totals.get("reaped", 0) >= TASKS

    async def all_done() -> bool:
        return (await broker.stats()).by_state[TaskState.SUCCEEDED] >= TASKS

    await poll_until(all_in_hand)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    spawned = time.monotonic()
    rescuer = start_worker(url)
    try:
        await poll_until(all_returned)
        returned = time.monotonic() - spawned
        await poll_until(all_done)
        done = time.monotonic() - spawned
    finally:
        rescuer.terminate()
        rescuer.wait()
        await redis.aclose()
    timeout = Config().worker.worker_timeout
    print(
        f"recovery    {TASKS} tasks of a SIGKILLed worker back in the queue {returned:.2f} s "
        f"and all succeeded {done:.2f} s after a new worker process was spawned on its host "
        f"(worker_timeout {timeout:.0f} s; 50 ran and 50 were prefetched; each sleeps 2 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="default: an embedded redis-server")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(measure, url)


if __name__ == "__main__":
    main()
