"""What one trio scheduler round adds to a lone Redis command: the price of handing a reply
from a reader task to its caller, against the caller reading it itself.

    ./dev python bench/scheduler_round.py [--calls 20000] [--rounds 2] [--redis-url URL]

Both loops send ``PING`` one at a time over a bare socket with hiredis. In the first the
caller waits on the socket itself (one round a command); in the second a reader task waits on
it and reschedules the caller (two rounds), as taskqueue's pipelined connection does. Prints
each loop's rate and its user and system CPU per command: the difference is one round.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable

import hiredis
import outcome
import trio
from bare_redis import READ_SIZE, connect, trio_replay

from taskqueue.embedded import EmbeddedRedis

PING = b"*1\r\n$4\r\nPING\r\n"


async def caller_reads(url: str, calls: int) -> None:
    await trio_replay(url, [PING] * calls)


async def reader_task_hands_over(url: str, calls: int) -> None:
    sock = connect(url)
    sock.setblocking(False)
    reader = hiredis.Reader()
    waiting: list[trio.lowlevel.Task] = []

    async def read_loop() -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            reader.feed(sock.recv(READ_SIZE))
            while (reply := reader.gets()) is not False:
                trio.lowlevel.reschedule(waiting.pop(0), outcome.Value(reply))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_loop)
        await trio.lowlevel.checkpoint()
        for _ in range(calls):
            waiting.append(trio.lowlevel.current_task())
            sock.send(PING)
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        nursery.cancel_scope.cancel()
    sock.close()


async def measure(
    name: str, loop: Callable[[str, int], Awaitable[None]], url: str, calls: int
) -> None:
    before, start = os.times(), time.perf_counter()
    await loop(url, calls)
    seconds, after = time.perf_counter() - start, os.times()
    user = (after.user - before.user) / calls * 1e6
    system = (after.system - before.system) / calls * 1e6
    print(
        f"{name:26} {calls / seconds:>7,.0f} PING/s   "
        f"user {user:5.1f} µs  system {system:5.1f} µs a command"
    )


async def run(url: str, calls: int, rounds: int) -> None:
    for _ in range(rounds):
        await measure("caller reads (1 round)", caller_reads, url, calls)
        await measure("reader task (2 rounds)", reader_task_hands_over, url, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis-url", help="an existing Redis (default: an embedded one)")
    args = parser.parse_args()
    if args.redis_url:
        trio.run(run, args.redis_url, args.calls, args.rounds)
        return
    with EmbeddedRedis(persistent=False) as redis:
        trio.run(run, redis.url, args.calls, args.rounds)


if __name__ == "__main__":
    main()
