"""The ceiling of idle pickup latency through Redis: how soon a bare process can start work
that another process queues, with no queue logic on either side.

    ./dev python bench/pickup_ceiling.py [--tasks 500] [--redis-url URL]

bench/e2e.py prints these beside its latency line. A child process on a blocking socket
(hiredis parsing, no event loop) waits for each message; this process sends one at about
100/s with its send time in it, as bench/e2e.py submits its tasks, and the child notes how
long after that it had it:

- ``blpop``: the child blocks in ``BLPOP`` and this process ``LPUSH``es: one hop through
  Redis, the least any Redis queue can do.
- ``notify + claim``: the child is subscribed to a channel and this process runs a script
  that pushes and publishes (as a submit does); on the message the child pops the item in a
  second round trip (as a worker's claim does). The shape of taskqueue's pickup, without
  its Lua, its scheduler rounds and its Python.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time

import trio
from bare_redis import BlockingRedis

from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis, Script

KEY, CHANNEL, RESULTS = "bench:pickup", "bench:pickup:wake", "bench:pickup:waits"
STOP = "stop"
PUSH_AND_PUBLISH = Script(
    "bench_push_publish",
    "redis.call('RPUSH', KEYS[1], ARGV[1]) redis.call('PUBLISH', ARGV[2], '1') return 1",
)
MODES = ("blpop", "notify + claim")


def child(url: str, mode: str) -> None:
    """Take messages until ``STOP``, then push the waits (ms) to ``RESULTS``."""
    redis = BlockingRedis(url)
    waits: list[str] = []
    if mode == "notify + claim":
        listener = BlockingRedis(url)
        listener.call("SUBSCRIBE", CHANNEL)
    print("ready", flush=True)
    while True:
        if mode == "blpop":
            reply = redis.call("BLPOP", KEY, "0")
            assert isinstance(reply, list)
            item = str(reply[1])
        else:
            listener.reply()  # a message: the item is there
            item = str(redis.call("LPOP", KEY))
        taken = time.time()
        if item == STOP:
            break
        waits.append(f"{(taken - float(item)) * 1000:.4f}")
    redis.call("RPUSH", RESULTS, *waits)


def start_child(url: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--redis-url", url],
        stdout=subprocess.PIPE,
        text=True,
    )


async def measure(url: str, mode: str, count: int) -> list[float]:
    """The sorted waits (ms) of ``count`` messages sent at about 100/s to a fresh child."""
    redis = Redis.from_url(url)
    await redis.execute("DEL", KEY, RESULTS)
    process = start_child(url, mode)
    try:
        assert process.stdout is not None
        await trio.to_thread.run_sync(process.stdout.readline)  # subscribed / about to block
        await trio.sleep(0.2)
        for i in range(count + 1):
            item = STOP if i == count else repr(time.time())
            if mode == "blpop":
                await redis.execute("LPUSH", KEY, item)
            else:
                await redis.run_script(PUSH_AND_PUBLISH, [KEY], [item, CHANNEL])
            await trio.sleep(0.01)
        await trio.to_thread.run_sync(process.wait, 30)
        waits: list[str] = await redis.execute("LRANGE", RESULTS, 0, -1)
        return sorted(float(w) for w in waits)
    finally:
        if process.poll() is None:
            process.kill()
        await redis.aclose()


def summary(waits: list[float]) -> str:
    p99 = waits[min(len(waits) - 1, round(len(waits) * 0.99))]
    return f"p50 {statistics.median(waits):.2f} ms, p99 {p99:.2f} ms"


async def ceilings(url: str, count: int) -> str:
    """One line of both ceilings, as bench/e2e.py prints it."""
    parts = [f"{mode} {summary(await measure(url, mode, count))}" for mode in MODES]
    return (
        f"  ceilings    {';  '.join(parts)}  (bare processes on blocking sockets, "
        f"{count} messages at ~100/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--redis-url")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.redis_url, args.child)
        return
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        print(trio.run(ceilings, url, args.tasks))


if __name__ == "__main__":
    main()
