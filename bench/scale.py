"""Scale out on one host: tasks/s of ``taskqueue worker --processes N`` for N = 1, 2, and of
one queue over 1 and 3 partitions of a three-primary Redis Cluster.

    ./dev python bench/scale.py [--tasks 40000] [--processes 1,2] [--redis-url URL]
    ./dev python bench/scale.py --partitions 1,3 [--tasks 40000] [--rounds 2] [--workers 2]

Processes: for each N, ``--tasks`` tasks are queued, then one ``taskqueue worker --processes
N`` (a supervisor and N worker processes) runs them; tasks/s is measured from the first task's
start to the last one's completion (from the task records). Two kinds of task: no-op (the
queue's own overhead) and one that awaits a small Lua script through ``ctx.redis`` (bench/
e2e.py's).

Partitions: a private three-primary cluster (the test suite's ``tests/cluster_helpers.py``,
no replicas) and a namespace whose three partitions fall to the three primaries; for each
partition count, no-op tasks are queued and a ``taskqueue worker --processes W`` runs them.
Rounds alternate the counts, so load from elsewhere falls on each. Beside the rate: the
CPU time the primaries spent per task (from ``INFO cpu``, submits and runs), and the busiest
primary's: what one partition can take is bounded by its one primary's core, so the busiest
primary's share says how far more workers could go before Redis is the limit.

What matters on a shared machine is the ratio to the first count, printed beside each
figure: absolute numbers move with whatever else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import trio
from e2e import REDIS_TASK, throughput

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from cluster_helpers import ClusterDeployment, spread_namespace

from taskqueue.broker import Broker, BrokerSettings
from taskqueue.embedded import EmbeddedRedis
from taskqueue.redis import Redis


async def processes(url: str, tasks: int, counts: list[int]) -> None:
    redis = Redis.from_url(url)
    broker = Broker(redis)
    try:
        for task_type, args in (("noop", ()), (REDIS_TASK, ("--processors", "e2e"))):
            base: float | None = None
            for count in counts:
                await redis.execute("FLUSHALL")
                result = await throughput(
                    broker, url, tasks, task_type, *args, "--processes", str(count)
                )
                result.worker.terminate()
                result.worker.wait(60)
                base = base or result.rate
                print(
                    f"{task_type:<18} --processes {count}: {result.rate:>9,.0f} tasks/s "
                    f"(x{result.rate / base:.2f} of one process; {tasks} tasks)",
                    flush=True,
                )
    finally:
        await redis.aclose()


async def partitions(
    cluster: ClusterDeployment, tasks: int, counts: list[int], rounds: int, workers: int
) -> None:
    namespace = spread_namespace(max(counts))
    nodes = [Redis.from_url(f"redis://127.0.0.1:{port}") for port in cluster.primaries]
    redis = Redis.from_url(cluster.url())
    try:
        for round_ in range(1, rounds + 1):
            base: float | None = None
            for count in counts:
                for node in nodes:
                    await node.execute("FLUSHALL")
                broker = Broker(redis, BrokerSettings(namespace=namespace, partitions=count))
                env = {"TASKQUEUE_REDIS__NAMESPACE": namespace}
                env["TASKQUEUE_REDIS__PARTITIONS"] = str(count)
                before = [await redis_cpu(node) for node in nodes]
                result = await throughput(
                    broker, cluster.url(), tasks, "noop", "--processes", str(workers), env=env
                )
                used = [await redis_cpu(n) - b for n, b in zip(nodes, before, strict=True)]
                result.worker.terminate()
                result.worker.wait(60)
                base = base or result.rate
                shares = "/".join(f"{u / sum(used):.0%}" for u in used)
                print(
                    f"round {round_}: {count} partition{'s' if count > 1 else ' '} on 3 primaries:"
                    f" {result.rate:>9,.0f} tasks/s (x{result.rate / base:.2f};"
                    f" {tasks} noop tasks, --processes {workers}); Redis CPU"
                    f" {sum(used) / tasks * 1e6:,.0f} us a task, busiest primary"
                    f" {max(used) / tasks * 1e6:,.0f} us (shares {shares})",
                    flush=True,
                )
    finally:
        for client in [redis, *nodes]:
            await client.aclose()


async def redis_cpu(node: Redis) -> float:
    """The CPU seconds (user and system) a redis-server has used since it started."""
    info: str = await node.execute("INFO", "cpu")
    fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--partitions", help="comma-separated partition counts (a cluster run)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the partition run")
    parser.add_argument("--workers", type=int, default=2, help="--processes of the partition run")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private one)")
    args = parser.parse_args()
    if args.partitions:
        counts = [int(n) for n in args.partitions.split(",")]
        with (
            tempfile.TemporaryDirectory() as directory,
            ClusterDeployment(Path(directory), replicas=False) as cluster,
        ):
            trio.run(partitions, cluster, args.tasks, counts, args.rounds, args.workers)
        return
    counts = [int(n) for n in args.processes.split(",")]
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(EmbeddedRedis(persistent=False)).url
        trio.run(processes, url, args.tasks, counts)


if __name__ == "__main__":
    main()
