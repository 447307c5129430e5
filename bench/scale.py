"""Scale over the cores of one host: tasks/s of ``taskqueue worker --processes N`` for N = 1, 2.

    ./dev python bench/scale.py [--tasks 40000] [--processes 1,2] [--redis-url URL]

For each N, ``--tasks`` tasks are queued, then one ``taskqueue worker --processes N`` (a
supervisor and N worker processes) runs them; tasks/s is measured from the first task's start
to the last one's completion (from the task records). Two kinds of task: no-op (the queue's
own overhead) and one that awaits a small Lua script through ``ctx.redis`` (bench/e2e.py's).
What matters on a shared machine is the ratio to N = 1, printed beside each figure: absolute
numbers move with whatever else runs.
"""

from __future__ import annotations

import argparse
import contextlib

import trio
from e2e import REDIS_TASK, throughput

from taskqueue.broker import Broker
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis


async def run(url: str, tasks: int, counts: list[int]) -> None:
    redis = Redis.from_url(url)
    broker = Broker(redis)
    try:
        for task_type, args in (("noop", ()), (REDIS_TASK, ("--processors", "e2e"))):
            base: float | None = None
            for processes in counts:
                await redis.execute("FLUSHALL")
                result = await throughput(
                    broker, url, tasks, task_type, *args, "--processes", str(processes)
                )
                result.worker.terminate()
                result.worker.wait(60)
                base = base or result.rate
                print(
                    f"{task_type:<18} --processes {processes}: {result.rate:>9,.0f} tasks/s "
                    f"(x{result.rate / base:.2f} of one process; {tasks} tasks)",
                    flush=True,
                )
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private one)")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(run, url, args.tasks, counts)


if __name__ == "__main__":
    main()
