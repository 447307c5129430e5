"""Server CPU per REST request: the CPU time a real ``taskqueue server`` process (API only)
spends per submit, read from ``/proc/<pid>/stat`` across the timed requests.

    ./dev python bench/api_cpu.py [--requests 5000] [--batches 500] [--concurrency 16]

Unlike the rates of ``bench/api.py``, this does not depend on how much CPU the client (in this
process) takes from the server, so it compares server versions even on a busy machine. The
figure includes everything the server process does for a request: HTTP (hypercorn), the REST
app, and the Redis round trip's client side. Modes as in ``bench/api.py``: HTTP/1.1 with one
connection per request in flight, HTTP/2 with one connection; one task a request, or 100.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Callable

import redis
from api import WARM_UP, api_server, drive, rest_client, rest_submit

from taskqueue.embedded import EmbeddedRedis

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


async def run(url: str, pid: int, flush: Callable[[], object], args: argparse.Namespace) -> None:
    for http2, version in ((False, "http/1.1"), (True, "http/2")):
        for batch, requests in ((False, args.requests), (True, args.batches)):
            flush()
            async with rest_client(url, http2, args.concurrency) as client:
                submit = rest_submit(client, batch)
                await drive(submit, WARM_UP, args.concurrency)
                before = cpu_seconds(pid)
                await drive(submit, requests, args.concurrency)
                used = cpu_seconds(pid) - before
            name = f"rest {version} {'batch' if batch else 'single'}"
            print(
                f"{name:<22}{used / requests * 1e6:>7,.0f} µs server CPU a request  "
                f"({used:.2f} s for {requests} requests)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5_000, help="single-task requests")
    parser.add_argument("--batches", type=int, default=500, help="requests of 100 tasks")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        url, pid = stack.enter_context(api_server(redis_url))
        control = redis.Redis.from_url(redis_url)
        stack.callback(control.close)
        asyncio.run(run(url, pid, control.flushdb, args))


if __name__ == "__main__":
    main()
