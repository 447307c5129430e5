"""The broker: every queue operation, each one atomic, each one round trip to Redis.

Each method drives one I/O-free operation of :mod:`taskqueue.broker.operations` (its arguments,
its steps, the meaning of its reply) on a trio Redis; those and the Lua scripts they run are
the only code that knows how tasks are laid out in Redis. The consumer, the API and the clients
call these methods and nothing below them.

A namespace of several partitions (``settings.partitions``; see
:mod:`~taskqueue.broker.partitions`) is several copies of the layout: the broker sends an
operation on one task to the partition its id names, a submission to the partition its
placement chooses, and an operation on the whole namespace to every partition, merging their
answers (:mod:`~taskqueue.broker.merging`).

Times: the broker reads the wall clock through ``clock`` (epoch milliseconds), so tests can
pass a fake one and assert exact retry times and lease expiry without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import trio

from taskqueue import _json
from taskqueue.broker import operations, routing, schedule_operations
from taskqueue.broker.keys import Keys
from taskqueue.broker.merging import (
    merge_promotes,
    merge_reaps,
    merge_trims,
)
from taskqueue.broker.model import (
    BULK_CANCEL_STATES,
    BrokerSettings,
    BulkCancellation,
    Cancellation,
    CancelOutcome,
    HeartbeatReply,
    Page,
    PromoteResult,
    QueueReport,
    ReapedTask,
    ReapResult,
    Report,
    Retention,
    Submission,
    Submitted,
    TaskView,
    TrimResult,
    wall_clock_ms,
)
from taskqueue.broker.operations import Call, Operation, Parallel, Pipeline, RunScript, Step
from taskqueue.broker.partitions import (
    Placer,
    partition_keys,
)
from taskqueue.broker.policy import Layer, PolicyView
from taskqueue.broker.schedule_operations import DueSchedules, Fired
from taskqueue.broker.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT,
    MAX_TYPE_LENGTH,
    task_type_problem,
    valid_max_retries,
    valid_timeout,
)
from taskqueue.models import (
    DEFAULT_PAGE,
    Claim,
    ClaimedTask,
    Policy,
    Priority,
    QueueStats,
    Task,
    TaskState,
    WorkerInfo,
    Workflow,
)
from taskqueue.outcomes import OutcomeKind
from taskqueue.redis import Redis, ResponseError
from taskqueue.schedules import Schedule, ScheduleSpec

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_RETRIES_LIMIT",
    "MAX_TIMEOUT",
    "MAX_TYPE_LENGTH",
    "Broker",
    "BrokerObserver",
    "BrokerSettings",
    "BulkCancellation",
    "CancelOutcome",
    "Cancellation",
    "HeartbeatReply",
    "Layer",
    "Page",
    "PolicyView",
    "PromoteResult",
    "QueueReport",
    "ReapResult",
    "ReapedTask",
    "Report",
    "Retention",
    "Submission",
    "Submitted",
    "TaskView",
    "TrimResult",
    "task_type_problem",
    "valid_max_retries",
    "valid_timeout",
    "wall_clock_ms",
]

T = TypeVar("T")
Item = TypeVar("Item")


class BrokerObserver(Protocol):
    """Told what the submitting side changed, once Redis has said so (the metrics are one).

    Claims and reports are not observed: the consumer counts their outcomes itself, knowing
    each task's type without another lookup. Only the tasks a claim or a promote ended
    expired (no report follows them) are told.
    """

    def tasks_submitted(
        self, submissions: Sequence[Submission], results: Sequence[Submitted]
    ) -> None: ...

    def task_cancelled(self, cancellation: Cancellation) -> None: ...

    def tasks_cancelled(self, cancellation: BulkCancellation) -> None: ...

    def tasks_expired(self, expired: Sequence[tuple[str, Priority]]) -> None: ...


class Broker:
    """Queue operations on one namespace of one Redis."""

    def __init__(
        self,
        redis: Redis,
        settings: BrokerSettings | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
        observer: BrokerObserver | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings or BrokerSettings()
        #: The keys of each partition; partition 0's are the namespace's own.
        self.partitions = partition_keys(self.settings.namespace, self.settings.partitions)
        self.keys = self.partitions[0]
        self.clock = clock
        self.observer = observer
        self._rng = rng or random.Random()
        self._claims = 0
        self._placer = Placer(len(self.partitions))

    def partition(self, partition: int) -> Broker:
        """A broker on one partition of this one's namespace alone, as if it were the whole:
        for looking into (and checking) one partition."""
        alone = Broker(
            self.redis,
            attrs.evolve(self.settings, partitions=1),
            clock=self.clock,
            rng=self._rng,
        )
        alone.partitions = [self.partitions[partition]]
        alone.keys = alone.partitions[0]
        return alone

    # -- submitting ------------------------------------------------------------------------

    async def enqueue(self, submission: Submission, *, strict: bool = False) -> Submitted:
        """Submit one task; see :meth:`enqueue_many`."""
        (submitted,) = await self.enqueue_many([submission], strict=strict)
        return submitted

    async def enqueue_many(
        self, submissions: Sequence[Submission], *, strict: bool = False
    ) -> list[Submitted]:
        """Submit a batch of tasks atomically, in one round trip, under the queue policy in
        Redis (``self.settings`` only stand in for settings no policy layer holds).

        Raises :class:`InvalidTaskError` (naming the field, and the index in a batch) before
        anything is written if any submission is invalid, :class:`QueueFullError` if the
        batch would push a task type over its ``max_queue_depth``, and
        :class:`UnservedTypeError` for a type no live worker serves when ``strict`` or the
        policy's ``refuse_unserved`` says so (else each such task's ``warnings`` say it).
        """
        if not submissions:
            return []
        submitted = await self._run(
            routing.enqueue_many(
                self.settings,
                self.partitions,
                self._placer,
                submissions,
                self.clock(),
                strict=strict,
            )
        )
        if self.observer is not None:
            self.observer.tasks_submitted(submissions, submitted)
        return submitted

    async def enqueue_and_view(
        self, submission: Submission, cut_at: int
    ) -> tuple[Submitted, TaskView]:
        """Submit one task (as :meth:`enqueue`) and read it back (as :meth:`view`), in one
        round trip when the task is new: what an API's reply to a submit shows."""
        submitted, view = await self._run(
            routing.enqueue_and_view(
                self.settings, self.partitions, self._placer, submission, self.clock(), cut_at
            )
        )
        if self.observer is not None:
            self.observer.tasks_submitted((submission,), (submitted,))
        return submitted, view

    # -- working -------------------------------------------------------------------------

    async def claim(
        self, worker_id: str, task_types: Sequence[str], count: int
    ) -> list[ClaimedTask]:
        """Lease up to ``count`` pending tasks of ``task_types`` to ``worker_id`` (the tasks
        of :meth:`claim_batch`)."""
        return (await self.claim_batch(worker_id, task_types, count)).tasks

    async def claim_batch(
        self,
        worker_id: str,
        task_types: Sequence[str],
        count: int,
        *,
        hand_offs: str | None = None,
    ) -> Claim:
        """Lease up to ``count`` pending tasks of ``task_types`` to ``worker_id``, within
        the types' rate and concurrency limits; the answer says when a rate limit lets a task
        it held back start.

        The order of the types rotates from one call to the next, so no type can starve another
        of the same priority; with ``priority_guard`` N, every Nth call first takes one task
        from each priority below the highest that has work.

        With ``hand_offs`` (the token of the last hand-off the worker has received, '' for
        none), a claim that comes back short registers the worker for a hand-off: the next
        task of its types to become pending is leased to it at once and published on
        :meth:`Keys.worker_channel` (see :func:`~taskqueue.broker.codec.hand_off_from_message`).
        """
        if count <= 0 or not task_types:
            return Claim([])
        self._claims += 1
        shift = self._claims % len(task_types)
        guard = self.settings.priority_guard
        claim = await self._run(
            routing.claim(
                self.settings,
                self.partitions,
                self._claims % len(self.partitions),
                worker_id,
                [*task_types[shift:], *task_types[:shift]],
                count,
                self.clock(),
                guard_turn=bool(guard) and self._claims % guard == 0,
                hand_offs=hand_offs,
            )
        )
        if claim.expired and self.observer is not None:
            self.observer.tasks_expired(claim.expired)
        return claim

    async def report(self, reports: Sequence[Report]) -> list[TaskState | None]:
        """Record how a batch of attempts ended, in one round trip.

        Returns each task's new state, or None where the report was stale (the task is no
        longer active under that attempt: its lease expired and it moved on) and was ignored.
        """
        if not reports:
            return []
        now = self.clock()
        return await self._run(
            routing.by_task(
                self.partitions,
                reports,
                lambda report: report.task_id,
                lambda keys, share: operations.report(
                    self.settings, keys, share, now, self._rng.random
                ),
            )
        )

    async def heartbeat(
        self, worker: WorkerInfo, running: Iterable[tuple[str, int]]
    ) -> HeartbeatReply:
        """Refresh ``worker``'s registration and the leases of its ``running`` (id, attempt):
        in every partition, each with the leases it holds."""
        return await self._run(
            routing.heartbeat(self.settings, self.partitions, worker, running, self.clock())
        )

    async def set_type_policies(self, policies: Mapping[str, Policy]) -> None:
        """Record task types' plugin defaults (priority, max_retries, timeout) in the config
        layer of the policy (a worker does, for the types it can run). The last worker to start
        wins where two disagree; a value set live wins over both."""
        await self._each(lambda keys: operations.set_type_policies(keys, policies))

    async def served_types(self) -> frozenset[str]:
        """The task types some live worker serves."""
        return await self._run(operations.served_types(self.keys, self.clock()))

    # -- policy --------------------------------------------------------------------------

    async def policy(self) -> PolicyView:
        """Both layers of the queue policy, and the fallback below them."""
        return await self._run(operations.policy(self.settings, self.keys))

    async def set_policy(
        self,
        settings: Policy,
        task_type: str | None = None,
        *,
        layer: Layer = "live",
        replace: bool = False,
    ) -> None:
        """Set policy ``settings`` for ``task_type`` (None: every type) in ``layer``;
        ``replace`` unsets the settings ``settings`` leaves unset."""
        await self._each(
            lambda keys: operations.set_policy(keys, layer, task_type, settings, replace=replace)
        )

    async def unset_policy(
        self, fields: Sequence[str], task_type: str | None = None, *, layer: Layer = "live"
    ) -> None:
        """Unset policy settings (by name) for ``task_type`` (None: every type) in ``layer``."""
        await self._each(lambda keys: operations.unset_policy(keys, layer, task_type, fields))

    async def write_config_policy(self) -> None:
        """Write the global config layer from ``self.settings`` (a daemon does at start):
        replaced as a whole, so a key removed from the configuration is gone after a restart;
        the live layer is never touched."""
        await self.set_policy(self.settings.policy(), layer="config", replace=True)

    async def check_durable_submit(self) -> None:
        """Raise :class:`~taskqueue.errors.DurabilityUnsupportedError` unless this Redis can
        confirm that a submission is on disk, as ``settings.durable_submit`` asks."""
        await self._each(lambda _: operations.check_durable_submit())

    async def deregister(self, worker_id: str) -> bool:
        """Remove ``worker_id``'s registration; whether it was registered.

        Call it once the worker has reported every task it ran: a task handed off to it that
        is still active under that attempt never reached it (the message came after its
        drain), and goes back to the front of its queue now, the attempt not spent, rather
        than when its lease runs out. (Reported already, the give-back is stale and ignored.)
        """
        replies = await self._each(lambda keys: operations.deregister(keys, worker_id))
        handed = [last for _, last in replies if last is not None]
        await self.report(
            [
                Report(task_id=task_id, attempt=attempt, kind=OutcomeKind.INTERRUPTED)
                for task_id, attempt in handed
            ]
        )
        return any(registered for registered, _ in replies)

    async def stop_hand_offs(self, worker_id: str) -> None:
        """Hand nothing more to ``worker_id`` (it is stopping; see :meth:`claim_batch`)."""
        await self._each(lambda keys: operations.stop_hand_offs(keys, worker_id))

    async def set_progress(self, task_id: str, attempt: int, progress: Any) -> bool:
        """Record a running task's progress; False if ``attempt`` no longer holds the lease."""
        (recorded,) = await self.set_progress_many([(task_id, attempt, _json.dumps(progress))])
        return recorded

    async def set_progress_many(self, updates: Sequence[tuple[str, int, str]]) -> list[bool]:
        """Record the progress of many running tasks, (id, attempt, progress as JSON) each, in
        one round trip; per update, False if its attempt no longer holds the lease."""
        if not updates:
            return []
        return await self._run(
            routing.by_task(
                self.partitions, updates, lambda update: update[0], operations.set_progress_many
            )
        )

    async def reap(self, limit: int = 1000) -> ReapResult:
        """Fail the attempts whose lease expired, and remove workers that stopped beating."""
        now = self.clock()
        return merge_reaps(
            await self._each(
                lambda keys: operations.reap(self.settings, keys, limit, now, self._rng.random)
            )
        )

    async def expire_workers(self, worker_ids: Sequence[str]) -> int:
        """Expire at once the leases of ``worker_ids``, workers known to be dead (their
        process is gone), so the next :meth:`reap` returns their tasks; forget the workers.
        How many leases expired."""
        now = self.clock()
        return await self._run(
            routing.total(
                self.partitions, lambda keys: operations.expire_workers(keys, worker_ids, now)
            )
        )

    async def trim(self, limit: int = 1000) -> TrimResult:
        """Delete up to ``limit`` finished records past their retention (``settings.retention``)."""
        now = self.clock()
        return merge_trims(
            await self._each(lambda keys: operations.trim(self.settings, keys, limit, now))
        )

    async def promote(self, limit: int = 1000) -> PromoteResult:
        """Make scheduled tasks whose time has come pending, after ending those waiting past
        their deadline expired."""
        now = self.clock()
        result = merge_promotes(await self._each(lambda keys: operations.promote(keys, limit, now)))
        if result.expired and self.observer is not None:
            self.observer.tasks_expired(result.expired)
        return result

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
        cancellation = await self._run(
            operations.cancel(self._keys_of(task_id), task_id, self.clock())
        )
        if self.observer is not None:
            self.observer.task_cancelled(cancellation)
        return cancellation

    async def cancel_all(
        self,
        task_type: str,
        *,
        states: Iterable[TaskState] = BULK_CANCEL_STATES,
        include_active: bool = False,
    ) -> BulkCancellation:
        """Cancel every pending and scheduled task of ``task_type`` (or those in ``states``),
        and with ``include_active`` ask the workers of its running ones to stop them.

        Runs as many short scripts as it takes (a thousand tasks each), so Redis is never
        held for long; the tasks end as :meth:`cancel` ends them, events and counters alike.
        """
        states = tuple(states)
        cancellation = await self._run(
            routing.cancel_all(
                self.partitions,
                task_type,
                self.clock,
                states=states,
                include_active=include_active,
            )
        )
        if self.observer is not None:
            self.observer.tasks_cancelled(cancellation)
        return cancellation

    async def purge(self, state: TaskState, task_type: str | None = None) -> int:
        """Delete every finished task in ``state`` (succeeded, cancelled, expired or dead; of
        ``task_type``, if given) for good; how many. Another state is an
        :class:`InvalidTaskError`."""
        state = TaskState(state)
        return await self._run(
            routing.total(self.partitions, lambda keys: operations.purge(keys, state, task_type))
        )

    async def requeue_dead(self, task_id: str) -> None:
        """Give one dead-lettered task a fresh set of attempts and queue it again."""
        await self._run(operations.requeue_dead(self._keys_of(task_id), task_id, self.clock()))

    async def requeue_all_dead(self, task_type: str | None = None) -> int:
        """Requeue every dead-lettered task (of ``task_type``, if given); how many."""
        return await self._run(
            routing.total(
                self.partitions,
                lambda keys: operations.requeue_all_dead(keys, task_type, self.clock),
            )
        )

    async def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead-lettered task (of ``task_type``, if given); how many."""
        return await self._run(
            routing.total(self.partitions, lambda keys: operations.purge_dead(keys, task_type))
        )

    # -- reading -------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        return await self._run(operations.get(self._keys_of(task_id), task_id))

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        return await self._run(
            routing.by_task(self.partitions, task_ids, lambda task_id: task_id, operations.get_many)
        )

    async def list_tasks(
        self,
        state: TaskState,
        *,
        task_type: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[Task]:
        """One page of the tasks in ``state`` (optionally of one type).

        Order: pending by priority then FIFO; scheduled by ready time; active by lease deadline;
        finished states newest first. ``cursor`` is opaque: pass back what the last page gave.
        """
        return await self._run(
            routing.paged(
                self.partitions,
                lambda keys, inner, wanted: operations.list_tasks(
                    keys, state, task_type=task_type, limit=wanted, cursor=inner
                ),
                limit,
                cursor,
            )
        )

    async def view(self, task_id: str, cut_at: int) -> TaskView:
        """The task with each field over ``cut_at`` bytes cut in Redis, so that a task of huge
        results costs its reader no more than ``cut_at`` per field (see :class:`TaskView`)."""
        return await self._run(operations.view(self._keys_of(task_id), task_id, cut_at))

    async def view_by_key(self, idempotency_key: str, cut_at: int) -> TaskView:
        """The task ``idempotency_key`` maps to, read as :meth:`view` reads it; what an
        operator holding only a client's key needs to find its task."""
        return await self._run(routing.view_by_key(self.partitions, idempotency_key, cut_at))

    async def workflow(self, task_id: str) -> Workflow:
        """Every task linked to ``task_id`` through dependencies, in one read: what a
        workflow's caller polls to see where it stands."""
        return await self._run(operations.workflow(self._keys_of(task_id), task_id))

    async def list_views(
        self,
        state: TaskState,
        *,
        cut_at: int,
        task_type: str | None = None,
        limit: int = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> Page[TaskView]:
        """:meth:`list_tasks`, each task read as :meth:`view` reads it: what a response lists."""
        return await self._run(
            routing.paged(
                self.partitions,
                lambda keys, inner, wanted: operations.list_views(
                    keys, state, cut_at=cut_at, task_type=task_type, limit=wanted, cursor=inner
                ),
                limit,
                cursor,
            )
        )

    async def stats(self) -> QueueStats:
        """Queue depths and counts from the incrementally kept counters: O(1) on Redis."""
        return await self._run(routing.stats(self.partitions, self.clock()))

    async def stats_and_served(self) -> tuple[QueueStats, frozenset[str]]:
        """:meth:`stats` and :meth:`served_types`, in one round trip (a partition each)."""
        return await self._run(routing.stats_and_served(self.partitions, self.clock()))

    async def queue_report(self) -> QueueReport:
        """Counts, served types and policy, in one round trip (a partition each)."""
        return await self._run(routing.queue_report(self.settings, self.partitions, self.clock()))

    async def workers(self) -> list[WorkerInfo]:
        """The registered workers whose registration has not expired, newest beat first."""
        return await self._run(operations.workers(self.keys))

    # -- schedules -----------------------------------------------------------------------

    async def put_schedule(self, spec: ScheduleSpec, *, create_only: bool = False) -> str:
        """Store a schedule (checked by :func:`~taskqueue.schedules.schedule_spec`):
        ``created``, ``replaced`` or ``unchanged`` (its state and next run kept)."""
        return await self._run(
            schedule_operations.put_schedule(
                self.settings, self.keys, spec, self.clock(), create_only=create_only
            )
        )

    async def schedule(self, name: str) -> Schedule:
        return await self._run(schedule_operations.schedule(self.keys, name))

    async def schedules(
        self, *, cursor: str | None = None, limit: int = DEFAULT_PAGE
    ) -> Page[Schedule]:
        return await self._run(schedule_operations.schedules(self.keys, cursor, limit))

    async def pause_schedule(self, name: str, paused: bool = True) -> None:
        """Pause a schedule, or (``paused`` False) resume it from its next tick."""
        await self._run(schedule_operations.pause_schedule(self.keys, name, paused, self.clock()))

    async def delete_schedule(self, name: str) -> None:
        await self._run(schedule_operations.delete_schedule(self.keys, name))

    async def due_schedules(self, limit: int) -> DueSchedules:
        return await self._run(schedule_operations.due_schedules(self.keys, self.clock(), limit))

    async def fire_schedules(self, fired: Sequence[Fired]) -> list[bool]:
        return await self._run(schedule_operations.fire_schedules(self.keys, fired, self.clock()))

    # -- running operations ---------------------------------------------------------------

    def _keys_of(self, task_id: str) -> Keys:
        """The keys of the partition ``task_id`` lives in."""
        return routing.keys_of(self.partitions, task_id)

    async def _each(self, make: Callable[[Keys], Operation[T]]) -> list[T]:
        """``make``'s operation run on every partition (at once); the answers in order."""
        return await self._run(routing.each(self.partitions, make))

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
        if isinstance(step, RunScript):  # first: every operation of the worker's hot path
            return await self.redis.run_script(step.script, step.keys, step.args)
        if isinstance(step, Call):
            return await self.redis.execute(*step.args)
        if isinstance(step, Pipeline):
            return await self.redis.pipeline(step.commands)
        assert isinstance(step, Parallel)
        return await self._parallel(step.operations)

    async def _parallel(self, parallel: Sequence[Operation[Any]]) -> list[Any]:
        """Run operations at once (a shared connection pipelines them; a cluster runs each
        on its node); their answers in order. The first error is raised once all have ended,
        as itself rather than in a group, so callers catch it as from one operation."""
        answers: list[Any] = [None] * len(parallel)
        errors: list[Exception] = []

        async def run(index: int, operation: Operation[Any]) -> None:
            try:
                answers[index] = await self._run(operation)
            except Exception as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for index, operation in enumerate(parallel):
                nursery.start_soon(run, index, operation)
        if errors:
            raise errors[0]
        return answers
