"""How late a worker's heartbeat comes while the worker runs flat out.

    ./dev python bench/heartbeat.py [--seconds 20] [--redis-url URL]

A worker is taken for dead ``worker.worker_timeout`` after its last beat, so the default
timeout must exceed the longest gap between beats that a busy worker shows. One
``taskqueue worker`` process (default concurrency, prefetch and heartbeat interval) runs no-op
tasks for ``--seconds`` while this script keeps its queue full; the gaps between the beats it
recorded in Redis (``last_heartbeat_ms``, read every 20 ms) are reported beside the interval.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import subprocess
import sys

import trio

from taskqueue.broker import Broker, Submission
from taskqueue.config import Config
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.redis import Redis

BACKLOG = 20_000


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKQUEUE_REDIS__URL": url, "TASKQUEUE_LOGGING__LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "taskqueue", "worker"], env=env)


async def keep_full(broker: Broker) -> None:
    """Top the queue up to :data:`BACKLOG` pending no-op tasks, over and over."""
    while True:
        pending = (await broker.stats()).by_state[TaskState.PENDING]
        if pending < BACKLOG:
            await broker.enqueue_many([Submission(type="noop") for _ in range(BACKLOG - pending)])
        await trio.sleep(0.05)


async def measure(url: str, seconds: float) -> None:
    interval = Config().worker.heartbeat_interval
    redis = Redis.from_url(url)
    broker = Broker(redis)
    await broker.enqueue_many([Submission(type="noop") for _ in range(BACKLOG)])
    worker = start_worker(url)
    beats: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_full, broker)
            with trio.move_on_after(seconds):
                while True:
                    for info in await broker.workers():
                        if not beats or info.last_heartbeat_ms != beats[-1]:
                            beats.append(info.last_heartbeat_ms)
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        done = (await broker.stats()).by_state[TaskState.SUCCEEDED]
    finally:
        worker.terminate()
        worker.wait()
        await redis.aclose()
    gaps = sorted((b - a) / 1000 for a, b in itertools.pairwise(beats[1:]))
    print(
        f"heartbeat   interval {interval:.1f} s: gaps median {gaps[len(gaps) // 2]:.3f} s, "
        f"max {gaps[-1]:.3f} s  ({len(gaps)} gaps while one worker ran {done:,} no-op tasks "
        f"in {seconds:.0f} s, {done / seconds:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--redis-url", help="default: an embedded redis-server")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(measure, url, args.seconds)


if __name__ == "__main__":
    main()
