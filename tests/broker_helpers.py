"""Small helpers that build broker state for the broker tests, so each test reads as a story."""

from __future__ import annotations

from typing import Any

import attrs

from taskqueue.broker import Broker, Report, Submission
from taskqueue.models import ClaimedTask, Priority, TaskState, WorkerInfo
from taskqueue.outcomes import OutcomeKind

TYPE = "mail.send"


async def submit(broker: Broker, task_type: str = TYPE, **fields: Any) -> str:
    """Submit one task of ``task_type``; the id of the new task."""
    submitted = await broker.enqueue(Submission(type=task_type, **fields))
    assert submitted.created
    return submitted.id


async def submit_many(broker: Broker, n: int, task_type: str = TYPE, **fields: Any) -> list[str]:
    """Submit ``n`` alike tasks (payload: their index) in one batch; their ids, in order."""
    batch = [Submission(type=task_type, payload=i, **fields) for i in range(n)]
    return [s.id for s in await broker.enqueue_many(batch)]


async def claim(
    broker: Broker, count: int = 1, types: tuple[str, ...] = (TYPE,), worker: str = "w1"
) -> list[ClaimedTask]:
    return await broker.claim(worker, list(types), count)


async def claim_one(broker: Broker, task_type: str = TYPE, worker: str = "w1") -> ClaimedTask:
    (task,) = await broker.claim(worker, [task_type], 1)
    return task


async def state_of(broker: Broker, task_id: str) -> TaskState:
    return (await broker.get(task_id)).state


def succeeded(task: ClaimedTask, result: Any = None) -> Report:
    return Report(task_id=task.id, attempt=task.attempt, kind=OutcomeKind.SUCCEEDED, result=result)


def failed(task: ClaimedTask, error: str = "boom", traceback: str = "Traceback: boom") -> Report:
    return Report(
        task_id=task.id,
        attempt=task.attempt,
        kind=OutcomeKind.FAILED,
        error=error,
        traceback=traceback,
    )


def cancelled(task: ClaimedTask, reason: str = "cancelled by the user") -> Report:
    return Report(task_id=task.id, attempt=task.attempt, kind=OutcomeKind.CANCELLED, error=reason)


def released(task: ClaimedTask) -> Report:
    return Report(task_id=task.id, attempt=task.attempt, kind=OutcomeKind.INTERRUPTED)


def worker_info(
    worker_id: str, now_ms: int, task_types: tuple[str, ...] = (TYPE,), in_flight: int = 0
) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="host-1",
        pid=4242,
        task_types={t: "builtin 1.0" for t in task_types},
        concurrency=8,
        in_flight=in_flight,
        started_ms=now_ms,
        last_heartbeat_ms=now_ms,
    )


async def make_dead(broker: Broker, n: int, task_type: str = TYPE) -> list[str]:
    """``n`` tasks of ``task_type`` in the dead-letter queue (no retries, failed once)."""
    ids = await submit_many(broker, n, task_type, max_retries=0)
    tasks = await claim(broker, n, (task_type,))
    assert sorted(t.id for t in tasks) == sorted(ids)
    states = await broker.report([failed(t) for t in tasks])
    assert states == [TaskState.DEAD] * n
    return ids


async def command_calls(broker: Broker) -> dict[str, int]:
    """Calls per command since the server started, from ``INFO commandstats``."""
    info: str = await broker.redis.execute("INFO", "commandstats")
    calls: dict[str, int] = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line.removeprefix("cmdstat_").partition(":")
            fields = dict(part.split("=", 1) for part in stats.split(","))
            calls[name] = int(fields["calls"])
    return calls


async def ready_list(broker: Broker, priority: Priority | str, task_type: str = TYPE) -> list[str]:
    """The ids in the ready list of (``priority``, ``task_type``), front first."""
    ids: list[str] = await broker.redis.execute(
        "LRANGE", broker.keys.ready(Priority(priority).value, task_type), 0, -1
    )
    return ids


async def zscore(broker: Broker, key: str, member: str) -> int | None:
    score = await broker.redis.execute("ZSCORE", key, member)
    return None if score is None else int(float(score))


async def namespace_keys(broker: Broker) -> list[str]:
    keys: list[str] = await broker.redis.execute("KEYS", broker.keys.prefix + "*")
    return sorted(keys)


async def register_worker(broker: Broker, worker_id: str, silent_for: float) -> WorkerInfo:
    """Register ``worker_id`` as if its last heartbeat were ``silent_for`` seconds ago, by a
    worker whose own timeout (an hour) outlives ``broker``'s: a registration still there after
    the worker should have been taken for dead, until a reaper forgets it. No sleep: the
    heartbeat runs on a clock set back."""
    beat_ms = broker.clock() - int(silent_for * 1000)
    settings = attrs.evolve(broker.settings, lease_ttl=3600.0)
    beating = Broker(broker.redis, settings, clock=lambda: beat_ms)
    worker = worker_info(worker_id, beat_ms)
    await beating.heartbeat(worker, ())
    return worker
