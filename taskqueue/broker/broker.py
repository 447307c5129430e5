"""The broker: every queue operation, each one atomic, each one round trip to Redis.

This module and the Lua scripts it runs are the only code that knows how tasks are laid out in
Redis. The consumer, the API and the clients call these methods and nothing below them.

Times: the broker reads the wall clock through ``clock`` (epoch milliseconds), so tests can
pass a fake one and assert exact retry times and lease expiry without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from taskqueue import _json
from taskqueue.broker import operations
from taskqueue.broker.codec import claimed_from_reply, worker_to_json
from taskqueue.broker.keys import Keys
from taskqueue.broker.model import (
    BrokerSettings,
    Cancellation,
    CancelOutcome,
    Page,
    Submission,
    Submitted,
    TypeDefaults,
    wall_clock_ms,
)
from taskqueue.broker.operations import Call, Operation, Pipeline, RunScript, Step
from taskqueue.broker.scripts import load_scripts
from taskqueue.broker.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT,
    MAX_TYPE_LENGTH,
    task_type_problem,
    valid_max_retries,
    valid_timeout,
)
from taskqueue.models import ClaimedTask, Priority, QueueStats, Task, TaskState, WorkerInfo
from taskqueue.outcomes import OutcomeKind
from taskqueue.redis import Redis, ResponseError

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_RETRIES_LIMIT",
    "MAX_TIMEOUT",
    "MAX_TYPE_LENGTH",
    "Broker",
    "BrokerSettings",
    "CancelOutcome",
    "Cancellation",
    "HeartbeatReply",
    "Page",
    "PromoteResult",
    "ReapResult",
    "ReapedTask",
    "Report",
    "Submission",
    "Submitted",
    "TypeDefaults",
    "task_type_problem",
    "valid_max_retries",
    "valid_timeout",
    "wall_clock_ms",
]

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Report:
    """How one attempt ended, as the worker reports it (fenced by ``attempt``)."""

    task_id: str
    attempt: int
    #: Any kind but ``LOST`` (a lost task is not reported).
    kind: OutcomeKind
    result: Any = None
    #: The result already encoded as JSON (the consumer checks it encodes while the task's
    #: log context is still bound); wins over ``result``.
    result_json: str | None = None
    error: str = ""
    traceback: str = ""


@attrs.frozen
class HeartbeatReply:
    #: Tasks this worker runs but no longer holds the lease of: it must stop them, unreported.
    lost: list[str]
    #: Tasks whose cancellation was requested (a fallback for a missed cancel message).
    cancel_requested: list[str]


@attrs.frozen
class ReapResult:
    reaped: int
    workers_removed: list[str]
    #: What became of each task that was still active: its attempt failed (now scheduled,
    #: pending or dead), or it was cancelled (its cancellation had been asked for).
    outcomes: list[ReapedTask] = attrs.Factory(list)


@attrs.frozen
class ReapedTask:
    id: str
    type: str
    priority: Priority
    state: TaskState


@attrs.frozen
class PromoteResult:
    promoted: int
    #: Epoch ms of the next scheduled task, or None when nothing is scheduled.
    next_due_ms: int | None


class Broker:
    """Queue operations on one namespace of one Redis."""

    def __init__(
        self,
        redis: Redis,
        settings: BrokerSettings | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings or BrokerSettings()
        self.keys = Keys(self.settings.namespace)
        self.clock = clock
        self._rng = rng or random.Random()
        self._scripts = load_scripts()
        self._ns = [self.keys.prefix]
        self._claims = 0

    # -- submitting ------------------------------------------------------------------------

    async def enqueue(self, submission: Submission) -> Submitted:
        """Submit one task; see :meth:`enqueue_many`."""
        (submitted,) = await self.enqueue_many([submission])
        return submitted

    async def enqueue_many(self, submissions: Sequence[Submission]) -> list[Submitted]:
        """Submit a batch of tasks atomically, in one round trip.

        Raises :class:`InvalidTaskError` (naming the field, and the index in a batch) before
        anything is written if any submission is invalid, and :class:`QueueFullError` if the
        batch would push a task type over ``max_queue_depth``.
        """
        if not submissions:
            return []
        return await self._run(
            operations.enqueue_many(self.settings, self.keys, submissions, self.clock())
        )

    # -- working -------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, task_types: Sequence[str], count: int
    ) -> list[ClaimedTask]:
        """Lease up to ``count`` pending tasks of ``task_types`` to ``worker_id``.

        The order of the types rotates from one call to the next, so no type can starve another
        of the same priority; with ``priority_guard`` N, every Nth call first takes one task
        from each priority below the highest that has work.
        """
        if count <= 0 or not task_types:
            return []
        self._claims += 1
        shift = self._claims % len(task_types)
        types = [*task_types[shift:], *task_types[:shift]]
        guard = self.settings.priority_guard
        now = self.clock()
        reply = await self.redis.run_script(
            self._scripts.claim,
            self._ns,
            [
                now,
                worker_id,
                now + int(self.settings.lease_ttl * 1000),
                count,
                1 if guard and self._claims % guard == 0 else 0,
                *types,
            ],
        )
        return claimed_from_reply(reply, now)

    async def report(self, reports: Sequence[Report]) -> list[TaskState | None]:
        """Record how a batch of attempts ended, in one round trip.

        Returns each task's new state, or None where the report was stale (the task is no
        longer active under that attempt: its lease expired and it moved on) and was ignored.
        """
        if not reports:
            return []
        s = self.settings
        args: list[str | int | float] = [
            self.clock(),
            int(s.retry_base_delay * 1000),
            int(s.retry_max_delay * 1000),
            int(s.result_ttl * 1000),
        ]
        rand = self._rng.random
        for r in reports:
            if r.kind is OutcomeKind.SUCCEEDED:
                result = _json.dumps(r.result) if r.result_json is None else r.result_json
                args += (r.task_id, r.attempt, r.kind, result, "", 0)
            else:
                args += (r.task_id, r.attempt, r.kind, r.error, r.traceback, rand())
        reply = await self.redis.run_script(self._scripts.finish, self._ns, args)
        return [TaskState(state) if state else None for state in reply]

    async def heartbeat(
        self, worker: WorkerInfo, running: Iterable[tuple[str, int]]
    ) -> HeartbeatReply:
        """Refresh ``worker``'s registration and the leases of its ``running`` (id, attempt)."""
        now = self.clock()
        ttl = int(self.settings.lease_ttl * 1000)
        args: list[str | int] = [now, worker.id, ttl, now + ttl, worker_to_json(worker)]
        for task_id, attempt in running:
            args += (task_id, attempt)
        lost, cancel = await self.redis.run_script(self._scripts.heartbeat, self._ns, args)
        return HeartbeatReply(lost=lost, cancel_requested=cancel)

    async def set_type_defaults(self, defaults: Mapping[str, TypeDefaults]) -> None:
        """Record the defaults of task types (a worker does, for the types it can run), which
        submissions of those types get for the fields they leave unset. The last worker to
        start wins where two disagree."""
        if defaults:
            fields: list[str | int] = []
            for task_type, d in defaults.items():
                fields += (task_type, d.encoded())
            await self.redis.execute("HSET", self.keys.type_defaults, *fields)

    async def type_defaults(self) -> dict[str, TypeDefaults]:
        """The recorded defaults of every task type that has any."""
        return await self._run(operations.type_defaults(self.keys))

    async def deregister(self, worker_id: str) -> bool:
        return bool(await self.redis.run_script(self._scripts.deregister, self._ns, [worker_id]))

    async def set_progress(self, task_id: str, attempt: int, progress: Any) -> bool:
        """Record a running task's progress; False if ``attempt`` no longer holds the lease."""
        (recorded,) = await self.set_progress_many([(task_id, attempt, progress)])
        return recorded

    async def set_progress_many(self, updates: Sequence[tuple[str, int, Any]]) -> list[bool]:
        """Record the progress of many running tasks, (id, attempt, progress) each, in one
        round trip; per update, False if its attempt no longer holds the lease."""
        if not updates:
            return []
        args: list[str | int] = []
        for task_id, attempt, progress in updates:
            args += (task_id, attempt, _json.dumps(progress))
        reply = await self.redis.run_script(self._scripts.progress, self._ns, args)
        return [bool(recorded) for recorded in reply]

    async def reap(self, limit: int = 1000) -> ReapResult:
        """Fail the attempts whose lease expired, and remove workers that stopped beating."""
        s = self.settings
        args: list[str | int | float] = [
            self.clock(),
            int(s.lease_ttl * 1000),
            int(s.retry_base_delay * 1000),
            int(s.retry_max_delay * 1000),
            int(s.result_ttl * 1000),
        ]
        args += [self._rng.random() for _ in range(limit)]
        reaped, gone, flat = await self.redis.run_script(self._scripts.reap, self._ns, args)
        fields = iter(flat)
        outcomes = [
            ReapedTask(task_id, task_type, Priority(priority), TaskState(state))
            for task_id, task_type, priority, state in zip(
                fields, fields, fields, fields, strict=True
            )
        ]
        return ReapResult(reaped=reaped, workers_removed=gone, outcomes=outcomes)

    async def promote(self, limit: int = 1000) -> PromoteResult:
        """Make scheduled tasks whose time has come pending."""
        promoted, next_due = await self.redis.run_script(
            self._scripts.promote, self._ns, [self.clock(), limit]
        )
        return PromoteResult(promoted=promoted, next_due_ms=None if next_due < 0 else next_due)

    # -- steering ------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task: at once if it waits; by request to its worker if it runs.

        Returns ``"cancelled"`` or ``"requested"`` (the task is running; its worker stops it
        and it ends ``cancelled``). Raises :class:`TaskNotFoundError` for an unknown id and
        :class:`ConflictingStateError` for a task that has already finished.
        """
        return (await self.cancel_task(task_id)).outcome

    async def cancel_task(self, task_id: str) -> Cancellation:
        """:meth:`cancel`, also saying the task's type and priority (from the same script)."""
        return await self._run(operations.cancel(self.keys, task_id, self.clock()))

    async def requeue_dead(self, task_id: str) -> None:
        """Give one dead-lettered task a fresh set of attempts and queue it again."""
        await self._run(operations.requeue_dead(self.keys, task_id, self.clock()))

    async def requeue_all_dead(self, task_type: str | None = None) -> int:
        """Requeue every dead-lettered task (of ``task_type``, if given); how many."""
        return await self._run(operations.requeue_all_dead(self.keys, task_type, self.clock))

    async def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead-lettered task (of ``task_type``, if given); how many."""
        return await self._run(operations.purge_dead(self.keys, task_type))

    # -- reading -------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        return await self._run(operations.get(self.keys, task_id))

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        return await self._run(operations.get_many(self.keys, task_ids))

    async def list_tasks(
        self,
        state: TaskState,
        *,
        task_type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """One page of the tasks in ``state`` (optionally of one type).

        Order: pending by priority then FIFO; scheduled by ready time; active by lease deadline;
        finished states newest first. ``cursor`` is opaque: pass back what the last page gave.
        """
        return await self._run(
            operations.list_tasks(self.keys, state, task_type=task_type, limit=limit, cursor=cursor)
        )

    async def stats(self) -> QueueStats:
        """Queue depths and counts from the incrementally kept counters: O(1) on Redis."""
        return await self._run(operations.stats(self.keys))

    async def workers(self) -> list[WorkerInfo]:
        """The registered workers whose registration has not expired, newest beat first."""
        return await self._run(operations.workers(self.keys))

    # -- running operations ---------------------------------------------------------------

    async def _run(self, operation: Operation[T]) -> T:
        """Drive an I/O-free operation (:mod:`taskqueue.broker.operations`) on this Redis:
        each step it yields is sent, its reply (or error reply) handed back."""
        reply: Any = None
        error: ResponseError | None = None
        try:
            while True:
                step = operation.send(reply) if error is None else operation.throw(error)
                reply, error = None, None
                try:
                    reply = await self._execute(step)
                except ResponseError as exc:
                    error = exc
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            operation.close()

    async def _execute(self, step: Step) -> Any:
        if isinstance(step, Call):
            return await self.redis.execute(*step.args)
        if isinstance(step, Pipeline):
            return await self.redis.pipeline(step.commands)
        assert isinstance(step, RunScript)
        return await self.redis.run_script(step.script, step.keys, step.args)
