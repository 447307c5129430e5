"""One namespace on a Redis Cluster vs on a single Redis: tasks/s of one ``taskqueue worker``.

    ./dev python bench/cluster.py [--tasks 20000] [--rounds 2]

A private single redis-server and a private three-primary cluster (started by the test suite's
``tests/cluster_helpers.py``, no replicas) on this machine. For each, ``--tasks`` no-op tasks
are queued, then one worker runs them (bench/e2e.py's ``throughput``); rounds alternate between
the two so load from elsewhere falls on both. A namespace lives in one slot, so on the cluster
it is served by one primary: the figure is the cost of the cluster client's routing, not a
gain. What matters on a shared machine is the ratio, printed beside each figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio
from e2e import throughput

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster_helpers import ClusterDeployment

from taskqueue.broker import Broker
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis


async def one_run(url: str, tasks: int, flush: list[Redis]) -> float:
    for node in flush:
        await node.execute("FLUSHALL")
    redis = Redis.from_url(url)
    try:
        result = await throughput(Broker(redis), url, tasks)
        result.worker.terminate()
        result.worker.wait(60)
        return result.rate
    finally:
        await redis.aclose()


async def run(single: str, cluster: ClusterDeployment, tasks: int, rounds: int) -> None:
    flush_single = [Redis.from_url(single)]
    flush_cluster = [Redis.from_url(f"redis://127.0.0.1:{port}") for port in cluster.primaries]
    try:
        for round_ in range(1, rounds + 1):
            alone = await one_run(single, tasks, flush_single)
            spread = await one_run(cluster.url(), tasks, flush_cluster)
            print(
                f"round {round_}: single Redis {alone:>8,.0f} tasks/s, 3-primary cluster "
                f"{spread:>8,.0f} tasks/s (x{spread / alone:.2f}; {tasks} noop tasks)",
                flush=True,
            )
    finally:
        for client in flush_single + flush_cluster:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as directory,
        EmbeddedRedis(persistent=False) as single,
        ClusterDeployment(Path(directory), replicas=False) as cluster,
    ):
        trio.run(run, single.url, cluster, args.tasks, args.rounds)


if __name__ == "__main__":
    main()
