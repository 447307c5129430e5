"""The synchronous client (redis-py) against a real Redis: the same operations as the trio
client, from plain blocking code and from threads while a daemon runs.

A trio broker stands in for the worker where a test must decide when a task ends
(:func:`worker_does`); one test runs a real in-process daemon.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import trio
from broker_helpers import failed, succeeded
from daemon_helpers import daemon_config, running_daemon

from taskqueue import (
    ConflictingStateError,
    InvalidTaskError,
    Priority,
    QueueFullError,
    Submission,
    SyncClient,
    Task,
    TaskNotFoundError,
    TaskState,
)
from taskqueue.broker import Broker, BrokerSettings
from taskqueue.redis import Redis, RedisConnectionError

TYPE = "mail.send"


@pytest.fixture
def client(redis_url: str) -> Iterator[SyncClient]:
    with SyncClient(redis_url) as client:
        yield client


def worker_does(redis_url: str, action: Callable[[Broker], Awaitable[object]]) -> None:
    """Run ``action`` on a trio broker of ``redis_url``, as a worker would, and return."""

    async def main() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await action(Broker(redis))
        finally:
            await redis.aclose()

    trio.run(main)


async def finish(broker: Broker, task_type: str = TYPE, result: object = "done") -> None:
    (claimed,) = await broker.claim("w1", [task_type], 1)
    await broker.report([succeeded(claimed, result)])


async def kill(broker: Broker, task_type: str = TYPE) -> None:
    (claimed,) = await broker.claim("w1", [task_type], 1)
    assert await broker.report([failed(claimed, "boom")]) == [TaskState.DEAD]


def calls(redis_url: str, command: str) -> int:
    """How many times Redis has run ``command`` since it started (INFO commandstats)."""
    with redis.Redis.from_url(redis_url) as client:
        stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# -- submitting and reading -------------------------------------------------------------------


def test_submitted_task_is_stored_with_every_field(client: SyncClient) -> None:
    submitted = client.submit(
        TYPE, {"to": "ada"}, priority="high", max_retries=5, timeout=30, idempotency_key="k1"
    )
    assert (submitted.created, submitted.state) == (True, TaskState.PENDING)
    task = client.get(submitted.id)
    assert (task.type, task.payload, task.priority) == (TYPE, {"to": "ada"}, Priority.HIGH)
    assert (task.max_retries, task.timeout_ms, task.idempotency_key) == (5, 30_000, "k1")
    again = client.submit(TYPE, idempotency_key="k1")
    assert (again.id, again.created) == (submitted.id, False)


def test_unset_options_take_the_settings_and_a_delay_schedules(redis_url: str) -> None:
    with SyncClient(redis_url, settings=BrokerSettings(default_max_retries=9)) as client:
        submitted = client.submit(TYPE, delay=60)
        task = client.get(submitted.id)
    assert submitted.state is TaskState.SCHEDULED
    assert (task.priority, task.max_retries, task.timeout_ms) == (Priority.MEDIUM, 9, 300_000)
    assert task.ready_ms - task.created_ms >= 60_000


def test_submit_many_is_one_script_call_and_validates_first(
    client: SyncClient, redis_url: str
) -> None:
    client.submit(TYPE)  # the script is loaded (a NOSCRIPT reply would add an EVAL)
    before = calls(redis_url, "evalsha") + calls(redis_url, "eval")
    submitted = client.submit_many(Submission(type=TYPE, payload=i) for i in range(20))
    assert calls(redis_url, "evalsha") + calls(redis_url, "eval") - before == 1
    assert [t.payload for t in client.get_many([s.id for s in submitted]) if t] == list(range(20))

    with pytest.raises(InvalidTaskError) as caught:
        client.submit_many([Submission(type=TYPE), Submission(type=TYPE, timeout=-1)])
    assert caught.value.field == "1.timeout"
    assert client.stats().totals["submitted"] == 21


def test_a_full_queue_is_refused(redis_url: str) -> None:
    with SyncClient(redis_url, settings=BrokerSettings(max_queue_depth=1)) as client:
        client.submit(TYPE)
        with pytest.raises(QueueFullError, match="1 pending, limit 1"):
            client.submit(TYPE)


def test_the_scripts_are_loaded_when_redis_has_none(client: SyncClient, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as other:
        other.script_flush()
    assert client.submit(TYPE).created  # EVALSHA said NOSCRIPT: sent once with EVAL


def test_reading_lists_and_stats(client: SyncClient) -> None:
    ids = [s.id for s in client.submit_many([Submission(type=TYPE)] * 3)]
    with pytest.raises(TaskNotFoundError):
        client.get("no-such-task")
    assert client.get_many(["no-such-task", ids[0]])[0] is None
    page = client.list_tasks("pending", limit=2)
    assert [t.id for t in page.items] == ids[:2]
    assert [t.id for t in client.list_tasks("pending", cursor=page.next_cursor).items] == ids[2:]
    stats = client.stats()
    assert stats.by_state[TaskState.PENDING] == 3
    assert stats.pending_by_type == {TYPE: 3}
    assert client.workers() == []


# -- waiting ----------------------------------------------------------------------------------


def test_wait_blocks_until_the_end_event_without_polling(
    client: SyncClient, redis_url: str
) -> None:
    submitted = client.submit(TYPE)
    reads = calls(redis_url, "hgetall")
    ended: list[Task] = []
    waiter = threading.Thread(target=lambda: ended.append(client.wait(submitted.id, timeout=30)))
    waiter.start()
    # The waiter has subscribed and read the task once: it now blocks on the channel.
    _poll(lambda: calls(redis_url, "hgetall") == reads + 1, "the waiter reads the task")
    worker_does(redis_url, lambda b: finish(b, result={"sent": True}))
    waiter.join(30)
    (task,) = ended
    assert (task.state, task.result) == (TaskState.SUCCEEDED, {"sent": True})
    assert calls(redis_url, "hgetall") == reads + 2  # once before, once after the event


def _poll(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_wait_returns_an_ended_task_at_once_and_times_out_on_others(
    client: SyncClient, redis_url: str
) -> None:
    dead = client.submit(TYPE, max_retries=0)
    worker_does(redis_url, kill)
    assert client.wait(dead.id).state is TaskState.DEAD
    waiting = client.submit(TYPE)
    with pytest.raises(TimeoutError, match=waiting.id):
        client.wait(waiting.id, timeout=0.05)
    with pytest.raises(TaskNotFoundError):
        client.wait("no-such-task", timeout=5)


# -- steering ---------------------------------------------------------------------------------


def test_cancel(client: SyncClient, redis_url: str) -> None:
    waiting = client.submit(TYPE, delay=60)
    assert client.cancel(waiting.id) == "cancelled"
    with pytest.raises(ConflictingStateError, match="already ended"):
        client.cancel(waiting.id)
    with pytest.raises(TaskNotFoundError):
        client.cancel("no-such-task")
    running = client.submit(TYPE)
    worker_does(redis_url, lambda b: b.claim("w1", [TYPE], 1))
    assert client.cancel(running.id) == "requested"


def test_dead_letters_are_listed_requeued_and_purged(client: SyncClient, redis_url: str) -> None:
    client.submit_many([Submission(type=TYPE, max_retries=0)] * 3)
    client.submit(type="other", max_retries=0)

    async def kill_all(broker: Broker) -> None:
        for _ in range(3):
            await kill(broker)
        await kill(broker, "other")

    worker_does(redis_url, kill_all)
    dead = client.dead_letters()
    assert len(dead.items) == 4
    (other,) = client.dead_letters(task_type="other").items
    one = next(t.id for t in dead.items if t.type == TYPE)
    client.requeue(one)
    assert client.get(one).state is TaskState.PENDING
    with pytest.raises(ConflictingStateError, match="not in the dead-letter queue"):
        client.requeue(one)
    assert client.requeue_all("other") == 1
    assert client.get(other.id).state is TaskState.PENDING
    assert client.purge_dead() == 2
    assert client.dead_letters().items == []


# -- configuration, errors, threads and a real daemon -----------------------------------------


def test_from_config_uses_the_namespace_and_defaults(redis_url: str) -> None:
    config = daemon_config(redis_url, redis__namespace="billing", task__default_timeout="45s")
    with SyncClient.from_config(config) as client:
        task = client.get(client.submit(TYPE).id)
        assert client.keys.prefix == "{billing}:"
    assert task.timeout_ms == 45_000
    with SyncClient(redis_url) as default_namespace, pytest.raises(TaskNotFoundError):
        default_namespace.get(task.id)


def test_an_unreachable_redis_raises_taskqueues_connection_error() -> None:
    with SyncClient("redis://127.0.0.1:1/0") as client:
        with pytest.raises(RedisConnectionError):
            client.submit(TYPE)
        with pytest.raises(RedisConnectionError):
            client.wait("any", timeout=1)


async def test_threads_share_a_sync_client_while_a_daemon_runs(redis_url: str) -> None:
    """Plain threads (as a web server's) submit and wait through one SyncClient while a real
    daemon in this process runs the tasks."""
    config = daemon_config(redis_url)
    with SyncClient.from_config(config) as shared:

        def produce(n: int) -> Task:
            return shared.wait(shared.submit("echo", {"n": n}).id, timeout=30)

        def in_threads() -> list[Task]:
            with ThreadPoolExecutor(4) as pool:
                return list(pool.map(produce, range(8)))

        def doomed() -> Task:
            return shared.wait(shared.submit("fail", max_retries=0).id, timeout=30)

        async with running_daemon(config):
            tasks = await trio.to_thread.run_sync(in_threads)
            dead = await trio.to_thread.run_sync(doomed)
    assert [t.result for t in tasks] == [{"n": n} for n in range(8)]
    assert all(t.state is TaskState.SUCCEEDED for t in tasks)
    assert dead.state is TaskState.DEAD
