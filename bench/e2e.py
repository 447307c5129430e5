"""End to end through a real worker process: throughput and idle pick-up latency.

    ./dev python bench/e2e.py [--tasks 20000] [--latency-tasks 500] [--redis-url URL]

1. Throughput: ``--tasks`` no-op tasks are queued, then one ``taskqueue worker`` process (default
   concurrency) runs them; tasks/s is measured from the first task's start to the last one's
   completion (from the task records), and also from the process's start.
2. Latency: with that worker idle, ``--latency-tasks`` ``clock`` tasks are submitted one at a
   time at about 100/s; submit-to-start latency is the worker's clock at the start of the task
   minus the producer's clock just before the submit (same machine, same clock).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

import trio

from taskqueue.broker import Broker, Submission
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.redis import Redis


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKQUEUE_REDIS__URL": url, "TASKQUEUE_LOGGING__LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "taskqueue", "worker"], env=env)


async def wait_for(broker: Broker, state: TaskState, count: int, poll: float = 0.05) -> None:
    while (await broker.stats()).by_state[state] < count:  # noqa: ASYNC110 - another process works
        await trio.sleep(poll)


async def throughput(broker: Broker, url: str, tasks: int) -> subprocess.Popen[bytes]:
    ids: list[str] = []
    for i in range(0, tasks, 1000):
        chunk = [Submission(type="noop") for _ in range(min(1000, tasks - i))]
        ids += [s.id for s in await broker.enqueue_many(chunk)]
    began = time.time()
    worker = start_worker(url)
    await wait_for(broker, TaskState.SUCCEEDED, tasks)
    ended = time.time()
    records = []
    for i in range(0, len(ids), 1000):
        records += await broker.get_many(ids[i : i + 1000])
    first_start = min(t.started_ms or 0 for t in records if t) / 1000
    last_finish = max(t.finished_ms or 0 for t in records if t) / 1000
    print(
        f"throughput  {tasks / (last_finish - first_start):>9,.0f} tasks/s  "
        f"({tasks} noop tasks, one worker process, first start to last completion; "
        f"{tasks / (ended - began):,.0f}/s counting the process start-up)"
    )
    return worker


async def latency(broker: Broker, count: int, already_done: int) -> None:
    await trio.sleep(0.5)  # let the worker go idle: waiting on its wake-up, not claiming
    submitted: dict[str, float] = {}
    for _ in range(count):
        at = time.time()
        submitted[(await broker.enqueue(Submission(type="clock"))).id] = at
        await trio.sleep(0.01)
    await wait_for(broker, TaskState.SUCCEEDED, already_done + len(submitted))
    records = await broker.get_many(list(submitted))
    waits = sorted((t.result["started"] - submitted[t.id]) * 1000 for t in records if t is not None)
    p50 = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, round(len(waits) * 0.99))]
    print(
        f"latency     p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {waits[-1]:.2f} ms  "
        f"(submit to start, {count} tasks one at a time at ~100/s to an idle worker)"
    )


async def run(url: str, tasks: int, latency_tasks: int) -> None:
    redis = Redis.from_url(url)
    await redis.execute("FLUSHDB")
    broker = Broker(redis)
    worker = await throughput(broker, url, tasks)
    try:
        await latency(broker, latency_tasks, already_done=tasks)
    finally:
        worker.terminate()
        worker.wait(30)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--latency-tasks", type=int, default=500)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(run, url, args.tasks, args.latency_tasks)


if __name__ == "__main__":
    main()
