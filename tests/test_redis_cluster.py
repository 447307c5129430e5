"""Redis Cluster: ``redis+cluster://`` URLs lead both clients and the daemon to the primary of
the namespace's hash slot, from any seed node, and through a slot migration and a primary
failover while a worker runs tasks. A real cluster: three primaries, three replicas
(:mod:`cluster_helpers`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cli_helpers import cli_env, run
from cluster_helpers import ClusterDeployment, spread_namespace
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    submit_many,
    wait_for_count,
    wait_until,
    worker_env,
)

from taskqueue import Client, SyncClient
from taskqueue.broker import Broker, BrokerSettings, Submission
from taskqueue.broker.keys import Keys
from taskqueue.config import load_config
from taskqueue.errors import ConfigError
from taskqueue.models import TaskState
from taskqueue.redis import ClusterError, ClusterRedis, Redis, RedisAddress, RedisConnectionError
from taskqueue.redis.cluster import command_slot, redirect_of
from taskqueue.redis.connection import Command
from taskqueue.redis.errors import RedisError, ResponseError
from taskqueue.redis.slots import hash_slot

#: A key of the namespace the tests use (the default): the slot they move.
NAMESPACE_KEY = Keys(BrokerSettings().namespace).prefix


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    with ClusterDeployment(tmp_path_factory.mktemp("cluster")) as deployment:
        yield deployment


@pytest.fixture
def cluster(deployment: ClusterDeployment) -> ClusterDeployment:
    """The module's cluster, emptied (FLUSHALL on every primary) before each test."""
    for port in deployment.primaries:
        deployment.client(port).flushall()
    return deployment


# -- URLs and slots ---------------------------------------------------------------------------


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    address = RedisAddress.from_url("redis+cluster://ops:s%40cret@h1:7000,h2/")
    assert address.cluster == (("h1", 7000), ("h2", 6379))
    assert (address.username, address.password, address.tls) == ("ops", "s@cret", False)
    assert RedisAddress.from_url("rediss+cluster://h1:7000").tls
    assert "s@cret" not in str(address) and "h1:7000,h2:6379" in str(address)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://:7000", "must be host"),
        ("redis+cluster://h1:99999", "1-65535"),
    ],
)
def test_a_bad_cluster_url_is_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        RedisAddress.from_url(url)


def test_a_cluster_url_with_a_database_is_refused_even_from_the_configuration() -> None:
    with pytest.raises(ValueError, match="only database 0, not 3"):
        RedisAddress.from_url("redis+cluster://h1:7000/", db=3)


def test_the_configuration_takes_cluster_urls_and_refuses_bad_ones() -> None:
    url = "redis+cluster://ops:pw@h1:7000,h2:7001/"
    assert load_config(None, env={"TASKQUEUE_REDIS__URL": url}).redis.url == url
    with pytest.raises(
        ConfigError,
        match=r"TASKQUEUE_REDIS__URL = 'redis\+cluster://ops:\*\*\*@h1:0/'.*redis\+cluster://host:7000",
    ):
        load_config(None, env={"TASKQUEUE_REDIS__URL": "redis+cluster://ops:pw@h1:0/"})


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (("HGETALL", "{ns}:t:1"), "{ns}:t:1"),
        (("EVALSHA", "abc", 2, "{ns}:", "{ns}:fence", "x"), "{ns}:"),
        (("XREAD", "COUNT", 1, "BLOCK", 0, "STREAMS", "{s}:x", "$"), "{s}:x"),
        (("PUBLISH", "{ns}:ch:wake", "t"), "{ns}:ch:wake"),
        (("PING",), None),
        (("EVAL", "return 1", 0), None),
    ],
)
def test_a_command_goes_to_the_slot_of_its_first_key(command: Command, key: str | None) -> None:
    assert command_slot(command) == (None if key is None else hash_slot(key))


def test_redirections_are_read_from_error_replies() -> None:
    moved = redirect_of(ResponseError("MOVED 4053 10.0.0.2:7001"))
    assert moved is not None and (moved.kind, moved.node) == ("MOVED", ("10.0.0.2", 7001))
    ask = redirect_of(ResponseError("ASK 4053 10.0.0.3:7002"))
    assert ask is not None and (ask.kind, ask.node) == ("ASK", ("10.0.0.3", 7002))
    retry = redirect_of(ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"))
    assert retry is not None and (retry.kind, retry.node) == ("TRYAGAIN", None)
    assert redirect_of(ResponseError("ERR wrong number of arguments")) is None
    assert redirect_of("MOVED 1 h:1") is None  # a reply, not an error


def test_the_hash_slot_is_the_one_redis_computes(cluster: ClusterDeployment) -> None:
    node = cluster.client(cluster.primaries[0])
    for key in ["foo", NAMESPACE_KEY, "{ns}:t:1", "a{}b", "x{", "{a}{b}", "é"]:
        assert hash_slot(key) == node.execute_command("CLUSTER", "KEYSLOT", key), key  # type: ignore[no-untyped-call]


# -- the trio client ----------------------------------------------------------------------------


async def test_tasks_submitted_through_every_node_are_one_queue(cluster: ClusterDeployment) -> None:
    """Whichever node the client is given (primary or replica, owner of the slot or not), it
    finds the slot's primary: every task lands in the same namespace."""
    ids = []
    for port in cluster.ports:
        client = Redis.from_url(cluster.url(port))
        assert isinstance(client, ClusterRedis)
        try:
            broker = Broker(client)
            ids.append((await broker.enqueue(Submission(type="noop", payload=port))).id)
            assert (await broker.stats()).by_state[TaskState.PENDING] == len(ids)
        finally:
            await client.aclose()
    client = Redis.from_url(cluster.url(*cluster.replicas))
    try:
        tasks = await Broker(client).get_many(ids)
        assert [t.payload for t in tasks if t is not None] == cluster.ports
    finally:
        await client.aclose()


async def test_moved_and_ask_are_followed_while_a_slot_moves(cluster: ClusterDeployment) -> None:
    """A slot moved under a client's feet, batch by batch. Between two batches, reads of the
    namespace's tasks find each one (those already moved by ``ASK``) and a submit waits out
    the migration (the fence makes the half-moved slot answer ``TRYAGAIN`` to scripts), then
    lands; afterwards the client follows ``MOVED`` to the new owner. Nothing is lost."""
    client = Redis.from_url(cluster.url())
    assert isinstance(client, ClusterRedis)
    broker = Broker(client)
    try:
        ids = await submit_many(broker, "noop", range(300))
        source = cluster.owner(hash_slot(NAMESPACE_KEY))
        target = next(p for p in cluster.primaries if p != source)
        found: list[int] = []
        during: list[str] = []

        async def read_all() -> None:
            found.append(sum(1 for t in await broker.get_many(ids) if t is not None))

        async def submit_one() -> None:
            during.append((await broker.enqueue(Submission(type="noop"))).id)

        async with trio.open_nursery() as nursery:

            def between_batches() -> None:
                trio.from_thread.run(read_all)
                trio.from_thread.run_sync(nursery.start_soon, submit_one)

            moved = await trio.to_thread.run_sync(
                lambda: cluster.migrate_slot(NAMESPACE_KEY, target, batch=20, pause=between_batches)
            )
        assert moved > 300 and len(found) > 10
        assert found == [300] * len(found)
        assert len(during) == len(found)
        assert cluster.owner(hash_slot(NAMESPACE_KEY)) == target
        # The first command after the migration meets MOVED: the submits during it may all
        # have finished by ASK (the source's SETSLOT NODE comes after the target's).
        tasks = await broker.get_many(ids + during)
        for kind in ("ASK", "TRYAGAIN", "MOVED"):
            assert client.redirections[kind] > 0, client.redirections
        assert all(t is not None and t.state is TaskState.PENDING for t in tasks)
        assert (await broker.stats()).by_state[TaskState.PENDING] == 300 + len(during)
    finally:
        await client.aclose()


async def test_a_migration_opened_on_one_side_only_fails_clearly(
    cluster: ClusterDeployment,
) -> None:
    """The source says ASK, the target (never told to import) says MOVED back: the client
    gives up after a few hops, saying so, rather than bouncing for ever."""
    slot = hash_slot(NAMESPACE_KEY)
    source = cluster.owner(slot)
    target = next(p for p in cluster.primaries if p != source)
    client = Redis.from_url(cluster.url())
    node = cluster.client(source)
    try:
        node.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))  # type: ignore[no-untyped-call]
        with pytest.raises(ClusterError, match=r"after 8 redirections"):
            await client.execute("GET", NAMESPACE_KEY + "missing")
    finally:
        node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")  # type: ignore[no-untyped-call]
        await client.aclose()


async def test_a_worker_runs_10000_tasks_through_a_migration_and_a_failover(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    """A worker process on the cluster runs 10,000 tasks; in the middle of the run the
    namespace's slot moves to another primary, later that primary hands over to its replica.
    Every task succeeds once, none is lost, the worker never stops."""
    client = Redis.from_url(cluster.url())
    broker = Broker(client)
    try:
        total = 10_000
        ids: list[str] = []
        for start in range(0, total, 1000):
            ids += await submit_many(broker, "noop", range(start, start + 1000))
        env = worker_env(cluster.url(*cluster.replicas[:1]), TASKQUEUE_WORKER__CONCURRENCY="50")
        async with WorkerProcess(tmp_path, env, name="worker") as worker:
            await wait_for_count(broker, TaskState.SUCCEEDED, 1000, within=STARTUP)
            source = cluster.owner(hash_slot(NAMESPACE_KEY))
            target = next(p for p in cluster.primaries if p != source)
            moved = await trio.to_thread.run_sync(
                lambda: cluster.migrate_slot(NAMESPACE_KEY, target, batch=200, pause=_a_moment)
            )
            done = (await broker.stats()).by_state[TaskState.SUCCEEDED]
            print(f"cluster: migrated {moved} keys when {done} tasks had succeeded")
            assert done < total, "not mid-run"
            await wait_for_count(broker, TaskState.SUCCEEDED, 5000, within=STARTUP + 30)
            promoted = await trio.to_thread.run_sync(lambda: cluster.failover(target))
            done = (await broker.stats()).by_state[TaskState.SUCCEEDED]
            print(f"cluster: failed over to {promoted} when {done} tasks had succeeded")
            assert done < total, "not mid-run"
            await wait_for_count(broker, TaskState.SUCCEEDED, total, within=STARTUP + 60)
            assert cluster.owner(hash_slot(NAMESPACE_KEY)) == promoted
            assert worker.process is not None and worker.process.returncode is None
            worker.send_signal(signal.SIGTERM)
            assert await worker.wait_exit(within=STARTUP) == 0
        stats = await broker.stats()
        assert stats.by_state[TaskState.SUCCEEDED] == total
        assert sum(stats.by_state.values()) == total
        tasks = await broker.get_many(ids)
        assert sum(1 for t in tasks if t is not None and t.state is TaskState.SUCCEEDED) == total
    finally:
        await client.aclose()


def _a_moment() -> None:
    """Between two MIGRATE batches: clients meet the half-moved slot meanwhile."""
    time.sleep(0.01)


async def test_both_clients_wait_for_a_result_through_the_cluster(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    """``wait`` subscribes to the events channel on a cluster node and is woken by the end the
    worker publishes (Redis Cluster carries a PUBLISH to every node)."""
    client = Redis.from_url(cluster.url(cluster.replicas[0]))
    try:
        broker = Broker(client)
        async with WorkerProcess(tmp_path, worker_env(cluster.url()), name="worker"):
            first = await broker.enqueue(Submission(type="echo", payload="trio"))
            assert (await Client(client).wait(first.id, timeout=STARTUP)).result == "trio"

            def sync_wait() -> object:
                with SyncClient(cluster.url(cluster.primaries[-1])) as sync:
                    second = sync.submit("echo", payload="sync")
                    return sync.wait(second.id, timeout=STARTUP).result

            assert await trio.to_thread.run_sync(sync_wait) == "sync"
    finally:
        await client.aclose()


# -- the command line ------------------------------------------------------------------------------


def test_the_command_line_submits_and_reads_through_any_node(cluster: ClusterDeployment) -> None:
    """``--redis-url redis+cluster://...`` with a node that does not serve the slot: the
    submit lands, ``queues`` and ``status`` read it (each a process of its own, as a user runs
    them)."""
    slot_owner = cluster.owner(hash_slot(NAMESPACE_KEY))
    elsewhere = cluster.url(next(p for p in cluster.primaries if p != slot_owner))
    env = cli_env(elsewhere, BrokerSettings().namespace)
    submitted = run(env, "submit", "echo", "--payload", '"hi"', "--json", "--redis-url", elsewhere)
    task_id = submitted.json()["id"]
    queues = run(env, "queues", "--json", "--redis-url", elsewhere)
    assert queues.code == 0, queues
    assert "echo" in queues.out, queues
    got = run(env, "status", task_id, "--json", "--redis-url", elsewhere)
    assert got.json()["state"] == "pending"


async def test_a_worker_goes_on_after_the_slot_owner_is_killed(tmp_path: Path) -> None:
    """The primary of the namespace's slot SIGKILLed under a running worker: the cluster
    promotes its replica, the worker (and the test's client) find it without a restart, and
    every task ends succeeded (one whose end the dead primary had not replicated runs again:
    at least once)."""
    (tmp_path / "cluster").mkdir()
    with ClusterDeployment(tmp_path / "cluster") as cluster:
        client = Redis.from_url(cluster.url(*cluster.ports))
        broker = Broker(client)
        try:
            ids = await submit_many(broker, "sleep", ({"seconds": 0.002} for _ in range(2000)))
            env = worker_env(cluster.url(*cluster.ports), TASKQUEUE_WORKER__CONCURRENCY="20")
            async with WorkerProcess(tmp_path, env, name="worker") as worker:
                await wait_for_count(broker, TaskState.SUCCEEDED, 200, within=STARTUP)
                owner = cluster.owner(hash_slot(NAMESPACE_KEY))
                promoted = await trio.to_thread.run_sync(lambda: cluster.kill(owner))
                started = trio.current_time()

                async def all_succeeded() -> bool:
                    try:  # the test's client meets the dead primary too, until it asks again
                        return (await broker.stats()).by_state[TaskState.SUCCEEDED] == 2000
                    except RedisError:
                        return False

                await wait_until(all_succeeded, "every task succeeded", within=STARTUP + 30)
                print(f"cluster failover: all done {trio.current_time() - started:.2f}s after")
                assert cluster.owner(hash_slot(NAMESPACE_KEY)) == promoted
                assert worker.process is not None and worker.process.returncode is None
                worker.send_signal(signal.SIGTERM)
                assert await worker.wait_exit(within=STARTUP) == 0
            tasks = await broker.get_many(ids)
            assert all(t is not None and t.state is TaskState.SUCCEEDED for t in tasks)
        finally:
            await client.aclose()


# -- the sync client ------------------------------------------------------------------------------


def test_the_sync_client_works_through_the_cluster_and_its_changes(
    cluster: ClusterDeployment,
) -> None:
    """redis-py's cluster client under the SyncClient: from any seed, after a migration."""
    with SyncClient(cluster.url(cluster.replicas[-1])) as client:
        first = client.submit("noop")
        source = cluster.owner(hash_slot(NAMESPACE_KEY))
        cluster.migrate_slot(NAMESPACE_KEY, next(p for p in cluster.primaries if p != source))
        second = client.submit("noop")
        assert client.get(first.id).state is TaskState.PENDING
        assert client.get(second.id).state is TaskState.PENDING
        assert client.stats().by_state[TaskState.PENDING] == 2


def test_the_sync_client_refuses_an_unreachable_cluster_clearly() -> None:
    with pytest.raises(
        RedisConnectionError, match=r"cannot reach the redis cluster of 127\.0\.0\.1:1"
    ):
        SyncClient("redis+cluster://127.0.0.1:1/", connect_timeout=0.5)


async def test_the_trio_client_refuses_an_unreachable_cluster_clearly() -> None:
    client = Redis.from_url("redis+cluster://127.0.0.1:1/", connect_attempts=1)
    try:
        with pytest.raises(RedisConnectionError, match="no node of the redis cluster of 127"):
            await client.execute("PING")
    finally:
        await client.aclose()


# -- partitions ---------------------------------------------------------------------------------


async def test_a_partitioned_queue_uses_every_primary(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    """One queue of three partitions on three primaries: the submits spread over all three,
    a worker process runs every task once, and each primary's own counts add up."""
    namespace = spread_namespace(3)
    client = Redis.from_url(cluster.url())
    broker = Broker(client, BrokerSettings(namespace=namespace, partitions=3))
    try:
        total = 3000
        ids: list[str] = []
        for start in range(0, total, 100):
            ids += await submit_many(broker, "echo", range(start, start + 100))
        for keys in broker.partitions:
            owner = cluster.owner(hash_slot(keys.prefix))
            assert cluster.client(owner).dbsize() > 0, f"{keys.prefix} is empty on {owner}"
        env = worker_env(
            cluster.url(),
            TASKQUEUE_REDIS__NAMESPACE=namespace,
            TASKQUEUE_REDIS__PARTITIONS="3",
            TASKQUEUE_WORKER__CONCURRENCY="50",
        )
        async with WorkerProcess(tmp_path, env, name="worker") as worker:
            await wait_for_count(broker, TaskState.SUCCEEDED, total, within=STARTUP + 60)
            worker.send_signal(signal.SIGTERM)
            assert await worker.wait_exit(within=STARTUP) == 0
        per_partition = [
            (await broker.partition(p).stats()).by_state[TaskState.SUCCEEDED] for p in range(3)
        ]
        assert per_partition == [1000, 1000, 1000]
        tasks = await broker.get_many(ids)
        assert [t.result if t else None for t in tasks] == list(range(total))
    finally:
        await client.aclose()
