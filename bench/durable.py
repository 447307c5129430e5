"""What ``redis.durable_submit`` costs: submits acknowledged only once on disk, beside the default.

    ./dev python bench/durable.py [--seconds 5] [--concurrency 1,50] [--redis-server PATH]

For each Redis persistence setting (``appendfsync everysec``, ``always``) and each number of
submitters awaiting at once (trio tasks sharing one :class:`taskqueue.Client`), runs submits
for ``--seconds`` with ``durable_submit`` off and on, and prints submits/s with the p50 and
p99 of a submit's latency. Durable submits need ``WAITAOF``: ``--redis-server`` names a
redis-server of 7.2 or newer when the one found on ``PATH`` is older. Each run has a fresh
redis-server with its append-only file in a temporary directory (so on this disk).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import trio

from taskqueue import Client
from taskqueue.broker import BrokerSettings
from taskqueue.embedded import EmbeddedRedis, find_redis_server


async def measure(url: str, durable: bool, concurrency: int, seconds: float) -> list[float]:
    """Latencies (s) of every submit made by ``concurrency`` tasks for ``seconds``."""
    settings = BrokerSettings(durable_submit=durable)
    latencies: list[float] = []
    async with Client(url, settings=settings, pool_size=concurrency + 1) as client:
        for _ in range(20):
            await client.submit("noop")  # warm: connections, scripts
        deadline = trio.current_time() + seconds

        async def submitter() -> None:
            while trio.current_time() < deadline:
                start = time.perf_counter()
                await client.submit("noop")
                latencies.append(time.perf_counter() - start)

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(submitter)
    return latencies


def report(fsync: str, durable: bool, concurrency: int, seconds: float, lat: list[float]) -> None:
    p50 = statistics.median(lat) * 1000
    p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) >= 100 else max(lat) * 1000
    mode = "durable" if durable else "default"
    print(
        f"appendfsync {fsync:<8} {mode:<7} {concurrency:>3} at once  "
        f"{len(lat) / seconds:>9,.0f} submits/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--redis-server", default=None, help="a redis-server of 7.2+")
    args = parser.parse_args()
    binary = args.redis_server or find_redis_server()
    levels = [int(c) for c in args.concurrency.split(",")]
    for fsync in ("everysec", "always"):
        for concurrency in levels:
            for durable in (False, True):
                with (
                    tempfile.TemporaryDirectory() as data,
                    EmbeddedRedis(data_dir=data, appendfsync=fsync, binary=binary) as redis,
                ):
                    lat = trio.run(measure, redis.url, durable, concurrency, args.seconds)
                report(fsync, durable, concurrency, args.seconds, lat)


if __name__ == "__main__":
    main()
