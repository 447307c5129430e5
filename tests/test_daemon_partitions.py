"""A daemon and its clients on a namespace of several partitions: every task submitted runs
once, wherever it was placed; wake-ups, cancel requests and events reach across partitions."""

from __future__ import annotations

import trio
from conftest import MakeBroker
from daemon_helpers import daemon_config, running_daemon, wait_for_count, wait_for_state

from taskqueue import Client, Submission, SyncClient
from taskqueue.broker.partitions import partition_of
from taskqueue.daemon.notifications import Notifications
from taskqueue.health import Health
from taskqueue.models import TaskState
from taskqueue.redis import Redis

PARTITIONS = 3


async def test_a_daemon_runs_the_tasks_of_every_partition(redis_url: str) -> None:
    config = daemon_config(redis_url, redis__partitions=PARTITIONS, worker__concurrency=20)
    async with running_daemon(config), Client.from_config(config) as client:
        ids: list[str] = []
        for start in range(0, 600, 50):
            batch = [Submission(type="echo", payload=n) for n in range(start, start + 50)]
            ids += [s.id for s in await client.submit_many(batch)]
        assert {partition_of(i, PARTITIONS) for i in ids} == set(range(PARTITIONS))
        # Woken by each task's own end event, whichever partition published it.
        with trio.fail_after(30):
            for task_id in ids[::50]:
                assert (await client.wait(task_id)).state is TaskState.SUCCEEDED
        await wait_for_count(client.broker, TaskState.SUCCEEDED, len(ids), within=30)
        tasks = await client.get_many(ids)
        assert [t.result if t else None for t in tasks] == list(range(600))
        assert (await client.stats()).totals["succeeded"] == 600
        per_partition = [
            (await client.broker.partition(p).stats()).by_state[TaskState.SUCCEEDED]
            for p in range(PARTITIONS)
        ]
        assert per_partition == [200, 200, 200]


async def test_wake_ups_and_cancel_requests_come_from_every_partition(
    make_broker: MakeBroker, redis: Redis
) -> None:
    """The daemon's one subscription holds every partition's channels: an idle consumer
    waits on them, and a running task's cancel request comes on its own partition's."""
    broker = make_broker(partitions=PARTITIONS)
    notifications = Notifications(broker, Health())
    woken: list[frozenset[str] | None] = []
    cancels: list[tuple[str, str]] = []
    notifications.on_wake.append(woken.append)
    all_cancelled = trio.Event()

    def cancel(worker: str, task: str) -> None:
        cancels.append((worker, task))
        if len(cancels) == PARTITIONS:
            all_cancelled.set()

    notifications.on_cancel.append(cancel)
    async with trio.open_nursery() as nursery:
        await nursery.start(notifications.run)
        await notifications.subscribed.wait()
        assert woken == [None]  # everyone is woken once subscribed
        for keys in broker.partitions:
            await redis.execute("PUBLISH", keys.wake_channel, f"type{keys.partition}")
            await redis.execute("PUBLISH", keys.cancel_channel, f"w1 t{keys.partition}")
        with trio.fail_after(5):
            await all_cancelled.wait()
        nursery.cancel_scope.cancel()
    assert woken[1:] == [frozenset({f"type{p}"}) for p in range(PARTITIONS)]
    assert cancels == [("w1", f"t{p}") for p in range(PARTITIONS)]


async def test_a_running_task_of_another_partition_is_cancelled(redis_url: str) -> None:
    config = daemon_config(redis_url, redis__partitions=PARTITIONS)
    async with running_daemon(config), Client.from_config(config) as client:
        ids = [(await client.submit("sleep", {"seconds": 60})).id for _ in range(PARTITIONS)]
        assert {partition_of(i, PARTITIONS) for i in ids} == set(range(PARTITIONS))
        for task_id in ids:
            await wait_for_state(client.broker, task_id, TaskState.ACTIVE)
        for task_id in ids:
            assert await client.cancel(task_id) == "requested"
        with trio.fail_after(10):
            for task_id in ids:
                assert (await client.wait(task_id)).state is TaskState.CANCELLED


async def test_the_sync_client_sees_the_whole_namespace(redis_url: str) -> None:
    config = daemon_config(redis_url, redis__partitions=PARTITIONS)
    with SyncClient.from_config(config) as sync:
        ids = [sync.submit("echo", n).id for n in range(PARTITIONS * 3)]
        keyed = sync.submit("echo", "k", idempotency_key="order-1")
        assert sync.submit("echo", "k", idempotency_key="order-1").id == keyed.id
        assert {partition_of(i, PARTITIONS) for i in ids} == set(range(PARTITIONS))
        assert sync.stats().by_state[TaskState.PENDING] == len(ids) + 1
        listed = sync.list_tasks(TaskState.PENDING, limit=4)
        seen = [t.id for t in listed.items]
        while listed.next_cursor is not None:
            listed = sync.list_tasks(TaskState.PENDING, limit=4, cursor=listed.next_cursor)
            seen += [t.id for t in listed.items]
        assert sorted(seen) == sorted([*ids, keyed.id])
        async with running_daemon(config):
            done = await trio.to_thread.run_sync(lambda: [sync.wait(i, timeout=20) for i in ids])
        assert [t.result for t in done] == list(range(len(ids)))
        later = [sync.submit("echo", n).id for n in range(PARTITIONS)]
        assert [sync.cancel(i) for i in later] == ["cancelled"] * PARTITIONS
        assert sync.cancel_all("echo").cancelled == 0
        assert sync.purge(TaskState.CANCELLED) == PARTITIONS
