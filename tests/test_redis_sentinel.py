"""Redis Sentinel: ``redis+sentinel://`` URLs lead the client to the primary the sentinels name,
and after a failover (the primary killed, the replica promoted) to the new one, without a
restart. A real deployment: primary, replica and three sentinels (:mod:`sentinel_helpers`)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit_many,
    wait_for_count,
    wait_until,
    worker_env,
)
from sentinel_helpers import SentinelDeployment

from taskqueue import SyncClient
from taskqueue.broker import Broker, Submission
from taskqueue.models import TaskState
from taskqueue.redis import Redis
from taskqueue.redis.errors import RedisError


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    with SentinelDeployment(tmp_path) as deployment:
        yield deployment


async def test_the_client_follows_the_primary_through_a_failover(
    deployment: SentinelDeployment,
) -> None:
    client = Redis.from_url(deployment.url, connect_attempts=1)
    broker = Broker(client)
    try:
        before = [(await broker.enqueue(Submission(type="noop"))).id for _ in range(50)]
        assert await client.execute("WAIT", 1, 2000) == 1  # the replica has them too
        assert deployment.primary_named() == deployment.primary_port

        deployment.kill(deployment.primary_port)
        started = trio.current_time()
        after: list[str] = []

        async def submits_again() -> bool:
            try:
                after.append((await broker.enqueue(Submission(type="noop"))).id)
            except RedisError:
                return False
            return True

        await wait_until(submits_again, "a submit succeeds after the failover", within=STARTUP)
        resumed = trio.current_time() - started
        print(f"sentinel failover: submits resumed {resumed:.2f}s after the primary was killed")
        assert deployment.primary_named() == deployment.replica_port
        tasks = await broker.get_many(before + after)
        assert all(t is not None and t.state is TaskState.PENDING for t in tasks)
    finally:
        await client.aclose()


async def test_a_sentinel_url_that_names_no_service_is_refused_clearly(
    deployment: SentinelDeployment,
) -> None:
    url = deployment.url.replace("/tq/", "/elsewhere/")
    client = Redis.from_url(url, connect_attempts=1)
    try:
        with pytest.raises(RedisError, match="knows no service 'elsewhere'"):
            await client.execute("PING")
    finally:
        await client.aclose()


async def test_a_worker_goes_on_with_the_promoted_replica(
    deployment: SentinelDeployment, tmp_path: Path
) -> None:
    """A worker process on the sentinel URL runs tasks while the primary is killed: it carries
    on with the promoted replica, no restart, and every task submitted (and replicated) before
    the kill succeeds."""
    client = Redis.from_url(deployment.url)
    broker = Broker(client)
    try:
        ids = await submit_many(broker, "sleep", ({"seconds": 0.01} for _ in range(400)))
        assert await client.execute("WAIT", 1, 2000) == 1
        env = worker_env(deployment.url, TASKQUEUE_WORKER__CONCURRENCY="10")
        async with WorkerProcess(tmp_path, env, name="worker") as worker:
            await wait_for_count(broker, TaskState.SUCCEEDED, 50, within=STARTUP)
            deployment.kill(deployment.primary_port)

            async def all_succeeded() -> bool:
                try:
                    tasks = await broker.get_many(ids)
                except RedisError:
                    return False
                return all(t is not None and t.state is TaskState.SUCCEEDED for t in tasks)

            await wait_until(all_succeeded, "every task succeeded", within=STARTUP + 15)
            assert deployment.primary_named() == deployment.replica_port
            assert worker.process is not None and worker.process.returncode is None
            worker.send_signal(signal.SIGTERM)
            assert await worker.wait_exit(within=STARTUP) == 0
    finally:
        await client.aclose()


def test_the_sync_client_submits_through_the_sentinels(deployment: SentinelDeployment) -> None:
    with SyncClient(deployment.url) as client:
        submitted = client.submit("noop")
        assert client.get(submitted.id).state is TaskState.PENDING
