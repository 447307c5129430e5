"""The trio client against a real Redis: what it submits, reads, waits for and steers.

Tasks are moved along by a second broker standing in for a worker (claim, then report), so
each test decides exactly when a task ends; one test runs a real in-process daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from broker_helpers import command_calls, failed, succeeded
from daemon_helpers import daemon_config, running_daemon, wait_until

from taskqueue import (
    Client,
    ConflictingStateError,
    InvalidTaskError,
    Priority,
    Submission,
    Task,
    TaskNotFoundError,
    TaskState,
)
from taskqueue.broker import Broker, BrokerSettings
from taskqueue.redis import Redis, RedisConnectionError

TYPE = "mail.send"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with Client(redis_url) as client:
        yield client


@pytest.fixture
def worker(redis: Redis) -> Broker:
    """A broker on the same namespace, playing the worker that claims and reports."""
    return Broker(redis)


async def waiting(redis: Redis, reads_before: int) -> None:
    """Until a waiter has subscribed and read its task once (it subscribes first), so what
    happens next can only reach it through the events channel."""

    async def read_once() -> bool:
        return (await command_calls(Broker(redis))).get("hgetall", 0) > reads_before

    await wait_until(read_once, "the waiter has read its task")


async def finish(worker: Broker, task_type: str = TYPE, *, result: object = "done") -> str:
    """Claim the next task of ``task_type`` and report it succeeded; its id."""
    (claimed,) = await worker.claim("w1", [task_type], 1)
    await worker.report([succeeded(claimed, result)])
    return claimed.id


async def kill(worker: Broker, task_type: str = TYPE) -> str:
    """Claim the next task of ``task_type`` and fail it for good (it must have no retries)."""
    (claimed,) = await worker.claim("w1", [task_type], 1)
    assert await worker.report([failed(claimed, "boom")]) == [TaskState.DEAD]
    return claimed.id


# -- submitting -------------------------------------------------------------------------------


async def test_submitted_task_is_stored_with_every_field(client: Client) -> None:
    submitted = await client.submit(
        TYPE,
        {"to": "ada@example.com"},
        priority="high",
        max_retries=5,
        timeout=30,
        idempotency_key="order-42",
    )
    assert submitted.created
    assert submitted.state is TaskState.PENDING
    task = await client.get(submitted.id)
    assert (task.id, task.type, task.payload) == (submitted.id, TYPE, {"to": "ada@example.com"})
    assert (task.priority, task.max_retries, task.timeout_ms) == (Priority.HIGH, 5, 30_000)
    assert task.idempotency_key == "order-42"
    assert task.state is TaskState.PENDING


async def test_unset_options_take_the_client_settings(redis_url: str) -> None:
    settings = BrokerSettings(default_max_retries=9, default_timeout=12)
    async with Client(redis_url, settings=settings) as client:
        task = await client.get((await client.submit(TYPE)).id)
    assert (task.priority, task.max_retries, task.timeout_ms) == (Priority.MEDIUM, 9, 12_000)


async def test_a_delayed_task_is_scheduled(client: Client) -> None:
    submitted = await client.submit(TYPE, delay=60)
    assert submitted.state is TaskState.SCHEDULED
    task = await client.get(submitted.id)
    assert task.ready_ms - task.created_ms >= 60_000


async def test_a_deadline_is_an_option_of_submit(client: Client) -> None:
    submitted = await client.submit(TYPE, expires_in=60)
    task = await client.get(submitted.id)
    assert task.expires_ms is not None and task.expires_ms - task.created_ms == 60_000
    with pytest.raises(InvalidTaskError) as caught:
        await client.submit(TYPE, expires_in=60, expires_at=1_893_456_000)
    assert caught.value.field == "expires_in"


async def test_same_idempotency_key_returns_the_first_task(client: Client) -> None:
    first = await client.submit(TYPE, 1, idempotency_key="k")
    again = await client.submit(TYPE, 2, idempotency_key="k")
    assert (again.id, again.created) == (first.id, False)
    assert (await client.get(first.id)).payload == 1


async def test_invalid_submission_names_the_field_and_writes_nothing(client: Client) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        await client.submit(TYPE, priority="urgent")
    assert caught.value.field == "priority"
    assert (await client.stats()).totals.get("submitted", 0) == 0


async def test_submit_many_writes_a_batch_in_one_round_trip(client: Client, redis: Redis) -> None:
    await client.submit(TYPE)  # the script is loaded (a NOSCRIPT reply would add an EVAL)
    before = await command_calls(Broker(redis))
    batch = [Submission(type=TYPE, payload=i) for i in range(50)]
    submitted = await client.submit_many(batch)
    after = await command_calls(Broker(redis))
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 1
    tasks = await client.get_many([s.id for s in submitted])
    assert [t.payload for t in tasks if t is not None] == list(range(50))


# -- reading ----------------------------------------------------------------------------------


async def test_get_of_an_unknown_id_raises_not_found(client: Client) -> None:
    with pytest.raises(TaskNotFoundError):
        await client.get("no-such-task")
    assert await client.get_many(["no-such-task"]) == [None]


async def test_list_tasks_pages_through_one_state(client: Client) -> None:
    ids = [s.id for s in await client.submit_many([Submission(type=TYPE)] * 5)]
    first = await client.list_tasks("pending", limit=3)
    assert [t.id for t in first.items] == ids[:3]
    rest = await client.list_tasks(TaskState.PENDING, cursor=first.next_cursor)
    assert [t.id for t in rest.items] == ids[3:]
    assert rest.next_cursor is None


async def test_stats_count_tasks_by_state_and_type(client: Client, worker: Broker) -> None:
    await client.submit_many([Submission(type=TYPE)] * 3 + [Submission(type="other")])
    await finish(worker)
    stats = await client.stats()
    assert stats.by_state[TaskState.PENDING] == 3
    assert stats.by_state[TaskState.SUCCEEDED] == 1
    assert stats.pending_by_type == {TYPE: 2, "other": 1}


# -- waiting ----------------------------------------------------------------------------------


async def test_wait_wakes_when_the_task_ends(client: Client, worker: Broker, redis: Redis) -> None:
    submitted = await client.submit(TYPE, "hi")
    ended: list[Task] = []

    async def waiter() -> None:
        ended.append(await client.wait(submitted.id, timeout=10))

    async with trio.open_nursery() as nursery:
        reads = (await command_calls(Broker(redis))).get("hgetall", 0)
        nursery.start_soon(waiter)
        await waiting(redis, reads)
        await trio.testing.wait_all_tasks_blocked()
        assert ended == []  # subscribed, read the task, and waits: it is still pending
        await finish(worker, result={"sent": True})
    (task,) = ended
    assert task == await client.get(submitted.id)
    assert (task.state, task.result) == (TaskState.SUCCEEDED, {"sent": True})


async def test_wait_reads_the_task_twice_not_in_a_loop(
    client: Client, worker: Broker, redis: Redis
) -> None:
    """Woken by the event, not by polling: one read before waiting, one after the end, even
    with other tasks' events passing by meanwhile."""
    submitted = await client.submit(TYPE)
    await client.submit_many([Submission(type="other")] * 3)
    before = await command_calls(Broker(redis))

    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            await client.wait(submitted.id, timeout=10)

        nursery.start_soon(waiter)
        await waiting(redis, before.get("hgetall", 0))
        for _ in range(3):
            await finish(worker, "other")
        await finish(worker)
    after = await command_calls(Broker(redis))
    assert after["hgetall"] - before.get("hgetall", 0) == 2


async def test_wait_returns_a_task_that_has_already_ended(client: Client, worker: Broker) -> None:
    submitted = await client.submit(TYPE, max_retries=0)
    await kill(worker)
    task = await client.wait(submitted.id)
    assert task.state is TaskState.DEAD
    assert task.error == "boom"


async def test_wait_ends_on_cancellation_too(client: Client) -> None:
    submitted = await client.submit(TYPE, delay=60)
    async with trio.open_nursery() as nursery:
        ended: list[TaskState] = []

        async def waiter() -> None:
            ended.append((await client.wait(submitted.id, timeout=10)).state)

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert await client.cancel(submitted.id) == "cancelled"
    assert ended == [TaskState.CANCELLED]


async def test_wait_gives_up_after_its_timeout(client: Client) -> None:
    submitted = await client.submit(TYPE)
    with pytest.raises(TimeoutError, match=submitted.id):
        await client.wait(submitted.id, timeout=0.05)


async def test_wait_for_an_unknown_task_raises_not_found(client: Client) -> None:
    with pytest.raises(TaskNotFoundError):
        await client.wait("no-such-task", timeout=10)


async def test_events_report_every_state_change(client: Client, worker: Broker) -> None:
    async with client.events() as events:
        submitted = await client.submit(TYPE)
        await finish(worker)
        seen = [await anext(events) for _ in range(3)]
    assert [(e.task_id, e.type, e.state) for e in seen] == [
        (submitted.id, TYPE, "pending"),
        (submitted.id, TYPE, "active"),
        (submitted.id, TYPE, "succeeded"),
    ]
    assert [e.is_end for e in seen] == [False, False, True]


# -- steering ---------------------------------------------------------------------------------


async def test_cancel_a_waiting_task_and_then_again(client: Client) -> None:
    submitted = await client.submit(TYPE)
    assert await client.cancel(submitted.id) == "cancelled"
    assert (await client.get(submitted.id)).state is TaskState.CANCELLED
    with pytest.raises(ConflictingStateError, match="already ended"):
        await client.cancel(submitted.id)
    with pytest.raises(TaskNotFoundError):
        await client.cancel("no-such-task")


async def test_cancel_a_running_task_is_a_request(client: Client, worker: Broker) -> None:
    submitted = await client.submit(TYPE)
    await worker.claim("w1", [TYPE], 1)
    assert await client.cancel(submitted.id) == "requested"
    assert (await client.get(submitted.id)).cancel_requested


async def test_dead_letters_can_be_listed_requeued_and_purged(
    client: Client, worker: Broker
) -> None:
    await client.submit_many(
        [Submission(type=TYPE, max_retries=0)] * 3 + [Submission(type="other", max_retries=0)]
    )
    dead = [await kill(worker) for _ in range(3)] + [await kill(worker, "other")]

    page = await client.dead_letters()
    assert sorted(t.id for t in page.items) == sorted(dead)
    assert [t.id for t in (await client.dead_letters(task_type="other")).items] == [dead[3]]

    await client.requeue(dead[0])
    assert (await client.get(dead[0])).state is TaskState.PENDING
    with pytest.raises(ConflictingStateError, match="not in the dead-letter queue"):
        await client.requeue(dead[0])

    assert await client.requeue_all("other") == 1
    assert await client.purge_dead(TYPE) == 2
    assert (await client.dead_letters()).items == []
    assert await client.requeue_all() == 0


# -- configuration and a real daemon ----------------------------------------------------------


async def test_from_config_uses_the_daemon_namespace_and_defaults(redis_url: str) -> None:
    config = daemon_config(redis_url, redis__namespace="billing", task__max_retries=7)
    async with Client.from_config(config) as client:
        submitted = await client.submit(TYPE)
        assert client.broker.keys.prefix == "{billing}:"
        assert (await client.get(submitted.id)).max_retries == 7
    async with Client(redis_url) as default_namespace:
        with pytest.raises(TaskNotFoundError):
            await default_namespace.get(submitted.id)


async def test_from_config_without_a_redis_url_discovers_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No redis.url and no advertisement in the data directory: the default, as Client() has
    (test_discovery.py covers the whole order)."""
    monkeypatch.chdir(tmp_path)
    config = daemon_config("redis://127.0.0.1:1/0", redis__url=None)
    async with Client.from_config(config) as client:
        address = client.broker.redis.address
    assert (address.host, address.port, address.db) == ("127.0.0.1", 6379, 0)


async def test_an_unreachable_redis_raises_a_connection_error() -> None:
    async with Client(Redis.from_url("redis://127.0.0.1:1/0", connect_attempts=1)) as client:
        with pytest.raises(RedisConnectionError):
            await client.get("x")


async def test_a_daemon_runs_what_the_client_submits(redis_url: str) -> None:
    config = daemon_config(redis_url)
    async with running_daemon(config), Client.from_config(config) as client:
        ok = await client.submit("echo", {"n": 1})
        bad = await client.submit("fail", max_retries=0)
        assert (await client.wait(ok.id, timeout=10)).result == {"n": 1}
        assert (await client.wait(bad.id, timeout=10)).state is TaskState.DEAD
        assert [w.id for w in await client.workers()] != []
