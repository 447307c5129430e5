"""``redis.durable_submit``: a submission is acknowledged once Redis has it on disk (WAITAOF),
and a server that cannot say so is named, never silently trusted.

The suite's own redis-server may predate WAITAOF (Redis 7.2): the refusals are tested on it.
What needs WAITAOF runs on the suite's server when it is new enough, else on the binary that
``$REDIS_7_2_SERVER`` names; without either those tests are skipped, saying why.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from cli_helpers import cli_env, run
from conftest import FakeClock

from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.cli.common import EXIT_UNREACHABLE
from taskqueue.embedded import EmbeddedRedis, find_redis_server, version
from taskqueue.errors import DurabilityUnsupportedError, NotDurableError
from taskqueue.models import TaskState
from taskqueue.redis import Redis
from taskqueue.sync_client import SyncClient

DURABLE = {"durable_submit": True}


def version_of(binary: str) -> tuple[int, int]:
    """The major and minor of ``binary``'s version."""
    major, minor, *_ = version(binary).split(".")
    return int(major), int(minor)


def has_waitaof(binary: str) -> bool:
    return version_of(binary) >= (7, 2)


def newer_redis_server() -> str | None:
    """A redis-server with WAITAOF: the suite's own if new enough, else ``$REDIS_7_2_SERVER``."""
    for binary in (find_redis_server(), os.environ.get("REDIS_7_2_SERVER")):
        if binary and has_waitaof(binary):
            return binary
    return None


@pytest.fixture(scope="module")
def waitaof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A persistent (appendonly, everysec) redis-server that has WAITAOF."""
    binary = newer_redis_server()
    if binary is None:
        pytest.skip(
            "needs Redis 7.2+ for WAITAOF: the suite's redis-server is "
            f"{'.'.join(map(str, version_of(find_redis_server())))}; set REDIS_7_2_SERVER to one"
        )
    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("aof"), binary=binary) as server:
        yield server


@pytest.fixture
async def durable(waitaof_redis: EmbeddedRedis, clock: FakeClock) -> AsyncIterator[Broker]:
    redis = Redis.from_url(waitaof_redis.url)
    await redis.execute("FLUSHALL")
    try:
        yield Broker(redis, BrokerSettings(durable_submit=True), clock=clock)
    finally:
        await redis.aclose()


# -- a server that cannot confirm persistence --------------------------------------------------


async def test_a_server_without_waitaof_is_named_by_the_check_and_by_a_submit(
    redis_url: str, clock: FakeClock
) -> None:
    if has_waitaof(find_redis_server()):
        pytest.skip("the suite's redis-server has WAITAOF: the appendonly test covers refusal")
    redis = Redis.from_url(redis_url)
    broker = Broker(redis, BrokerSettings(durable_submit=True), clock=clock)
    try:
        with pytest.raises(DurabilityUnsupportedError, match=r"Redis 7\.2 and newer") as checked:
            await broker.check_durable_submit()
        assert "appendfsync always" in str(checked.value)

        # A submit is written before WAITAOF answers: the error says so and names the task.
        with pytest.raises(NotDurableError, match=r"Redis 7\.2 and newer") as refused:
            await broker.enqueue(Submission(type="echo"))
        (task_id,) = refused.value.task_ids
        assert task_id in str(refused.value)
        assert (await broker.get(task_id)).state is TaskState.PENDING
    finally:
        await redis.aclose()


def test_a_daemon_with_durable_submit_stops_at_start_on_such_a_server(redis_url: str) -> None:
    if has_waitaof(find_redis_server()):
        pytest.skip("the suite's redis-server has WAITAOF")
    env = cli_env(
        redis_url,
        "durable",
        TASKQUEUE_LOGGING__LEVEL="error",
        TASKQUEUE_REDIS__DURABLE_SUBMIT="true",
        TASKQUEUE_SERVER__PORT="0",
    )
    result = run(env, "server")
    assert result.code == EXIT_UNREACHABLE, result
    assert "Traceback" not in result.err
    assert result.error.startswith("redis.durable_submit cannot be honoured"), result.error


def test_the_sync_client_is_refused_alike(redis_url: str) -> None:
    if has_waitaof(find_redis_server()):
        pytest.skip("the suite's redis-server has WAITAOF")
    with SyncClient(redis_url, settings=BrokerSettings(durable_submit=True)) as client:
        with pytest.raises(NotDurableError, match=r"Redis 7\.2 and newer") as refused:
            client.submit("echo", {"n": 1})
        (task_id,) = refused.value.task_ids
        assert client.get(task_id).state is TaskState.PENDING


# -- a server that can ---------------------------------------------------------------------------


async def test_a_durable_submit_is_acknowledged_on_disk(
    durable: Broker, waitaof_redis: EmbeddedRedis
) -> None:
    await durable.check_durable_submit()
    submitted = await durable.enqueue_many([Submission(type="echo") for _ in range(3)])
    assert [s.state for s in submitted] == [TaskState.PENDING] * 3
    # The script was lost (a restart, a flush): EVAL goes with its WAITAOF all the same.
    await durable.redis.execute("SCRIPT", "FLUSH")
    again = await durable.enqueue(Submission(type="echo"))
    assert again.created
    assert waitaof_redis.data_dir is not None
    aof = waitaof_redis.data_dir / "appendonlydir"
    assert any(again.id.encode() in f.read_bytes() for f in aof.iterdir() if ".incr." in f.name)


async def test_a_submit_not_on_disk_in_time_says_which_tasks_were_written(
    durable: Broker, clock: FakeClock
) -> None:
    # everysec fsyncs about once a second: a millisecond's wait almost never sees one.
    impatient = Broker(
        durable.redis, BrokerSettings(durable_submit=True, durable_timeout=0.001), clock=clock
    )
    refusals: list[NotDurableError] = []
    for _ in range(3):
        try:
            await impatient.enqueue(Submission(type="echo"))
        except NotDurableError as exc:
            refusals.append(exc)
    assert refusals, "no submit out of 3 waited past its 1 ms durable_timeout"
    for refusal in refusals:
        assert "did not confirm within 0.001 s" in str(refusal)
        (task_id,) = refusal.task_ids
        assert (await durable.get(task_id)).state is TaskState.PENDING


async def test_appendonly_off_is_named(durable: Broker) -> None:
    await durable.redis.execute("CONFIG", "SET", "appendonly", "no")
    try:
        with pytest.raises(DurabilityUnsupportedError, match="appendonly is off"):
            await durable.check_durable_submit()
        with pytest.raises(NotDurableError, match="appendonly is off"):
            await durable.enqueue(Submission(type="echo"))
    finally:
        await durable.redis.execute("CONFIG", "SET", "appendonly", "yes")
