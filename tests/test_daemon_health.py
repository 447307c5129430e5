"""What the daemon says about its health (the source of ``/readyz`` and systemd's STATUS): ready
once started, and not while Redis is away. Redis going away is an outage, not a crash: the
daemon keeps retrying with backoff and works again once Redis is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from daemon_helpers import (
    daemon_config,
    running_daemon,
    submit,
    wait_for_state,
    wait_for_worker,
    wait_until,
)

from taskqueue.broker import Broker
from taskqueue.daemon.runtime import Daemon, Mode, begin_shutdown
from taskqueue.embedded import EmbeddedRedis
from taskqueue.models import TaskState
from taskqueue.redis import Redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, which the test may stop."""
    with EmbeddedRedis(data_dir=tmp_path / "first", persistent=False) as server:
        yield server


async def test_worker_is_ready_as_soon_as_it_has_started(redis_url: str) -> None:
    async with running_daemon(daemon_config(redis_url)) as daemon:
        health = daemon.health.describe()
        assert (health["ready"], health["redis"], health["draining"]) == (True, "ok", False)
        services = health["services"]
        assert isinstance(services, dict) and all(services.values()), services


async def test_api_only_daemon_becomes_ready_once_redis_answers(redis_url: str) -> None:
    # Its only Redis user is the pub/sub subscription, which never ends while all is well.
    async with running_daemon(daemon_config(redis_url), mode=Mode.SERVER) as daemon:

        async def ready() -> bool:
            return daemon.health.ready

        await wait_until(ready, "the API-only daemon is ready", within=2)
        assert daemon.health.describe()["redis"] == "ok"


async def test_draining_daemon_is_not_ready(redis_url: str) -> None:
    async with running_daemon(daemon_config(redis_url)) as daemon:
        begin_shutdown(daemon)
        assert not daemon.health.ready
        assert daemon.health.describe()["draining"] is True


@asynccontextmanager
async def broker_on(url: str) -> AsyncIterator[Broker]:
    client = Redis.from_url(url)
    try:
        yield Broker(client)
    finally:
        await client.aclose()


async def test_daemon_rides_out_a_redis_restart_and_then_runs_new_tasks(
    private_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    port = private_redis.port
    config = daemon_config(private_redis.url, worker__id="survivor")
    async with running_daemon(config) as daemon:

        async def ready() -> bool:
            return daemon.health.ready

        async def not_ready() -> bool:
            return not daemon.health.ready

        await wait_until(ready, "the daemon is ready")
        async with broker_on(private_redis.url) as broker:
            before = await submit(broker, "echo", "before")
            assert (await wait_for_state(broker, before)).state is TaskState.SUCCEEDED

        private_redis.stop()
        await wait_until(not_ready, "the daemon reports not-ready", within=3)
        assert_alive(daemon)
        assert daemon.health.describe()["redis"] != "ok"  # the error, for /readyz to show

        with EmbeddedRedis(data_dir=tmp_path / "second", port=port, persistent=False):
            await wait_until(ready, "the daemon is ready again", within=8)
            async with broker_on(private_redis.url) as broker:
                after = await submit(broker, "echo", "after")
                task = await wait_for_state(broker, after, within=5)
                assert (task.state, task.result, task.worker_id) == (
                    TaskState.SUCCEEDED,
                    "after",
                    "survivor",
                )
                # The emptied Redis forgot the worker; its heartbeat registers it again.
                await wait_for_worker(broker, "survivor")


def assert_alive(daemon: Daemon) -> None:
    """The daemon neither crashed (``running_daemon`` would have raised) nor began to stop."""
    assert not daemon.shutdown.is_set()
    assert daemon.consumer is not None and not daemon.consumer.stopping
