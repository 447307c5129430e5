"""The broker: every queue operation, each one atomic, each one round trip to Redis.

This module and the Lua scripts it runs are the only code that knows how tasks are laid out in
Redis. The consumer, the API and the clients call these methods and nothing below them.

Times: the broker reads the wall clock through ``clock`` (epoch milliseconds), so tests can
pass a fake one and assert exact retry times and lease expiry without sleeping.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import attrs

from taskqueue import _json
from taskqueue.broker.codec import (
    claimed_from_reply,
    task_from_hash,
    worker_from_hash,
    worker_to_json,
)
from taskqueue.broker.keys import Keys
from taskqueue.broker.scripts import load_scripts
from taskqueue.errors import (
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    QueueFullError,
    TaskNotFoundError,
)
from taskqueue.ids import new_task_ids
from taskqueue.models import (
    DEFAULT_PRIORITY,
    PRIORITY_ORDER,
    ClaimedTask,
    Priority,
    QueueStats,
    Task,
    TaskState,
    WorkerInfo,
)
from taskqueue.redis import Redis, ResponseError

MAX_TYPE_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_RETRIES_LIMIT = 1000
MAX_TIMEOUT = 7 * 24 * 3600.0
_FORBIDDEN_IN_TYPE = frozenset(" \t\r\n{}:|,@")
_MAX_DELAY_MS = 10 * 365 * 86400 * 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@attrs.frozen(kw_only=True)
class BrokerSettings:
    """The broker's knobs; :meth:`from_config` builds them from the daemon configuration."""

    namespace: str = "taskqueue"
    default_timeout: float = 300.0
    default_max_retries: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 300.0
    max_payload_bytes: int = 1024 * 1024
    result_ttl: float = 24 * 3600.0
    idempotency_window: float = 24 * 3600.0
    #: How long a lease lasts without a heartbeat; also how long a silent worker stays registered.
    lease_ttl: float = 30.0
    max_queue_depth: int = 0
    #: 0: strict priorities. N > 0: every Nth claim first takes one task from each lower priority.
    priority_guard: int = 0

    @classmethod
    def from_config(cls, config: Any) -> BrokerSettings:
        task, worker = config.task, config.worker
        return cls(
            namespace=config.redis.namespace,
            default_timeout=task.default_timeout,
            default_max_retries=task.max_retries,
            retry_base_delay=task.retry_base_delay,
            retry_max_delay=task.retry_max_delay,
            max_payload_bytes=task.max_payload_bytes,
            result_ttl=task.result_ttl,
            idempotency_window=task.idempotency_window,
            lease_ttl=worker.worker_timeout,
            max_queue_depth=task.max_queue_depth,
            priority_guard=worker.priority_guard,
        )


@attrs.frozen(kw_only=True)
class Submission:
    """A task to submit. Unset fields take the broker's (or the task type's) defaults.

    ``delay`` (seconds from now) and ``eta`` (a datetime, or epoch seconds) are alternatives;
    a task with either starts ``scheduled`` and becomes pending when its time comes.
    """

    type: str
    payload: Any = None
    priority: Priority | str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    delay: float | None = None
    eta: datetime | float | None = None
    idempotency_key: str | None = None


@attrs.frozen(kw_only=True)
class TypeDefaults:
    """What a task type's submissions get when they leave a field unset (None: the broker's)."""

    priority: Priority | None = None
    max_retries: int | None = None
    timeout: float | None = None

    def encoded(self) -> str:
        """The ``type-defaults`` hash value enqueue.lua reads: ``priority|max_retries|ms``."""
        return "|".join(
            (
                "" if self.priority is None else self.priority.value,
                "" if self.max_retries is None else str(self.max_retries),
                "" if self.timeout is None else str(math.ceil(self.timeout * 1000)),
            )
        )


@attrs.frozen
class Submitted:
    """The result of one submission: the task's id, its state, and whether it is new.

    ``created`` is False when the idempotency key matched an earlier task: then ``id`` is that
    task's and nothing was written.
    """

    id: str
    state: TaskState
    created: bool


ReportKind = Literal["succeeded", "failed", "cancelled", "released"]


@attrs.frozen(kw_only=True)
class Report:
    """How one attempt ended, as the worker reports it (fenced by ``attempt``)."""

    task_id: str
    attempt: int
    kind: ReportKind
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


@attrs.frozen
class PromoteResult:
    promoted: int
    #: Epoch ms of the next scheduled task, or None when nothing is scheduled.
    next_due_ms: int | None


CancelOutcome = Literal["cancelled", "requested"]


@attrs.frozen
class Page:
    """One page of a listing; pass ``next_cursor`` back for the next one (None: the end)."""

    items: list[Task]
    next_cursor: str | None


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
        now = self.clock()
        args: list[str | int] = [
            now,
            # At least 1 ms: SET refuses PX 0 (a window the config allows, e.g. "0.5ms").
            max(1, int(self.settings.idempotency_window * 1000)),
            self.settings.max_queue_depth,
            DEFAULT_PRIORITY.value,
            self.settings.default_max_retries,
            math.ceil(self.settings.default_timeout * 1000),
        ]
        ids = new_task_ids(len(submissions), now)
        for index, submission in enumerate(submissions):
            try:
                args += self._task_fields(submission, ids[index], now)
            except InvalidTaskError as exc:
                if len(submissions) > 1:
                    raise type(exc)(f"task {index}: {exc}", field=f"{index}.{exc.field}") from None
                raise
        try:
            reply = await self.redis.run_script(self._scripts.enqueue, self._ns, args)
        except ResponseError as exc:
            if str(exc).startswith("QUEUEFULL"):
                _, task_type, depth, limit = str(exc).split()
                raise QueueFullError(
                    f"queue of task type {task_type!r} is full: {depth} pending, limit {limit}"
                ) from None
            raise
        return [
            Submitted(task_id, TaskState(state), bool(created)) for task_id, created, state in reply
        ]

    def _task_fields(self, s: Submission, task_id: str, now: int) -> list[str | int]:
        """The 8 enqueue.lua fields of one submission, validated."""
        task_type = s.type
        problem = task_type_problem(task_type)
        if problem is not None:
            raise InvalidTaskError(problem, field="type")
        try:
            priority = "" if s.priority is None else Priority.parse(s.priority).value
        except ValueError as exc:
            raise InvalidTaskError(str(exc), field="priority") from None
        try:
            payload = _json.dumps(s.payload)
        except TypeError as exc:
            raise InvalidTaskError(f"payload is {exc}", field="payload") from None
        if len(payload) > self.settings.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload is {len(payload)} bytes of JSON, over the limit of "
                f"{self.settings.max_payload_bytes}",
                field="payload",
            )
        # Unset priority, max_retries and timeout go to Redis as '': enqueue.lua fills them
        # from the task type's defaults (registered by its workers), else the broker's.
        max_retries = s.max_retries
        if max_retries is not None and not valid_max_retries(max_retries):
            raise InvalidTaskError(
                f"max_retries must be a whole number from 0 to 1000, not {max_retries!r}",
                field="max_retries",
            )
        timeout = s.timeout
        if timeout is not None and not valid_timeout(timeout):
            raise InvalidTaskError(
                f"timeout must be a number of seconds above 0 and at most a week, not {timeout!r}",
                field="timeout",
            )
        ready_ms = now
        if s.delay is not None and s.eta is not None:
            raise InvalidTaskError("give either delay or eta, not both", field="delay")
        if s.delay is not None:
            if not _is_number(s.delay) or not 0 <= s.delay * 1000 < _MAX_DELAY_MS:
                raise InvalidTaskError(
                    f"delay must be a number of seconds from 0 up, not {s.delay!r}", field="delay"
                )
            ready_ms = now + math.ceil(s.delay * 1000)
        elif s.eta is not None:
            if isinstance(s.eta, datetime):
                if s.eta.tzinfo is None:
                    raise InvalidTaskError("eta must carry a time zone", field="eta")
                ready_ms = math.ceil(s.eta.timestamp() * 1000)
            elif _is_number(s.eta) and math.isfinite(s.eta):
                ready_ms = math.ceil(s.eta * 1000)
            else:
                raise InvalidTaskError(
                    f"eta must be a datetime or epoch seconds, not {s.eta!r}", field="eta"
                )
            # The same bound as delay's: Lua would store a far-off time as "1e+23".
            if ready_ms - now >= _MAX_DELAY_MS:
                raise InvalidTaskError(
                    f"eta must be less than 10 years from now, not {s.eta!r}", field="eta"
                )
        key = s.idempotency_key
        if key is not None and (
            not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH
        ):
            raise InvalidTaskError(
                f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                field="idempotency_key",
            )
        return [
            task_id,
            task_type,
            priority,
            payload,
            "" if max_retries is None else max_retries,
            "" if timeout is None else math.ceil(timeout * 1000),
            ready_ms,
            key or "",
        ]

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
            if r.kind == "succeeded":
                result = _json.dumps(r.result) if r.result_json is None else r.result_json
                args += (r.task_id, r.attempt, "succeeded", result, "", 0)
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
        out: dict[str, TypeDefaults] = {}
        for task_type, value in _pairs(
            await self.redis.execute("HGETALL", self.keys.type_defaults)
        ).items():
            priority, max_retries, timeout_ms = value.split("|")
            out[task_type] = TypeDefaults(
                priority=Priority(priority) if priority else None,
                max_retries=int(max_retries) if max_retries else None,
                timeout=int(timeout_ms) / 1000 if timeout_ms else None,
            )
        return out

    async def deregister(self, worker_id: str) -> bool:
        return bool(await self.redis.run_script(self._scripts.deregister, self._ns, [worker_id]))

    async def set_progress(self, task_id: str, attempt: int, progress: Any) -> bool:
        """Record a running task's progress; False if ``attempt`` no longer holds the lease."""
        args: list[str | int] = [task_id, attempt, _json.dumps(progress)]
        return bool(await self.redis.run_script(self._scripts.progress, self._ns, args))

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
        reaped, gone = await self.redis.run_script(self._scripts.reap, self._ns, args)
        return ReapResult(reaped=reaped, workers_removed=gone)

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
        try:
            outcome, state = await self.redis.run_script(
                self._scripts.cancel, self._ns, [self.clock(), task_id]
            )
        except ResponseError as exc:
            if str(exc).startswith("NOTFOUND"):
                raise TaskNotFoundError(task_id) from None
            raise
        if outcome == "final":
            raise ConflictingStateError(
                f"task {task_id} has already ended ({state}); nothing to cancel"
            )
        return outcome  # type: ignore[no-any-return]

    async def requeue_dead(self, task_id: str) -> None:
        """Give one dead-lettered task a fresh set of attempts and queue it again."""
        (done,) = await self.redis.run_script(
            self._scripts.requeue_dead, self._ns, [self.clock(), task_id]
        )
        if not done:
            task = await self.get(task_id)  # raises TaskNotFoundError
            raise ConflictingStateError(
                f"task {task_id} is {task.state.value}, not in the dead-letter queue"
            )

    async def requeue_all_dead(self, task_type: str | None = None) -> int:
        """Requeue every dead-lettered task (of ``task_type``, if given); how many."""
        total = 0
        async for ids in self._dead_ids(task_type):
            done = await self.redis.run_script(
                self._scripts.requeue_dead, self._ns, [self.clock(), *ids]
            )
            total += sum(done)
        return total

    async def purge_dead(self, task_type: str | None = None) -> int:
        """Delete every dead-lettered task (of ``task_type``, if given); how many."""
        total = 0
        async for ids in self._dead_ids(task_type):
            total += await self.redis.run_script(self._scripts.purge_dead, self._ns, ids)
        return total

    async def _dead_ids(self, task_type: str | None, chunk: int = 500) -> AsyncIterator[list[str]]:
        """Chunks of dead-letter ids, oldest first, filtered by type. Each chunk is acted on
        (and so leaves the set) before the next is read, so reading from the start is right."""
        offset = 0
        while True:
            ids: list[str] = await self.redis.execute(
                "ZRANGE", self.keys.dead, offset, offset + chunk - 1
            )
            if not ids:
                return
            if task_type is not None:
                types = await self.redis.pipeline(
                    [("HGET", self.keys.task(i), "type") for i in ids]
                )
                matching = [i for i, t in zip(ids, types, strict=True) if t == task_type]
                offset += len(ids) - len(matching)
                ids = matching
            if ids:
                yield ids

    # -- reading -------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        fields = await self.redis.execute("HGETALL", self.keys.task(task_id))
        if not fields:
            raise TaskNotFoundError(task_id)
        return task_from_hash(_pairs(fields))

    async def get_many(self, task_ids: Sequence[str]) -> list[Task | None]:
        if not task_ids:
            return []
        replies = await self.redis.pipeline([("HGETALL", self.keys.task(i)) for i in task_ids])
        return [task_from_hash(_pairs(r)) if r else None for r in replies]

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
        if not 1 <= limit <= 1000:
            raise InvalidTaskError("limit must be from 1 to 1000", field="limit")
        if state is TaskState.PENDING:
            return await self._list_pending(task_type, limit, cursor)
        offset = _parse_cursor(cursor, 0)
        newest_first = state.is_terminal
        key = self.keys.zset_of(state)
        items: list[Task] = []
        scan = limit if task_type is None else max(limit, 200)
        while len(items) < limit:
            command = "ZREVRANGE" if newest_first else "ZRANGE"
            ids = await self.redis.execute(command, key, offset, offset + scan - 1)
            if not ids:
                return Page(items, None)
            for i, task in enumerate(await self.get_many(ids)):
                if task is not None and (task_type is None or task.type == task_type):
                    items.append(task)
                    if len(items) == limit:
                        return Page(items, str(offset + i + 1))
            offset += len(ids)
        return Page(items, str(offset))

    async def _list_pending(self, task_type: str | None, limit: int, cursor: str | None) -> Page:
        types = (
            [task_type]
            if task_type
            else sorted(await self.redis.execute("SMEMBERS", self.keys.types))
        )
        queues = [(p.value, t) for p in PRIORITY_ORDER for t in types]
        # The cursor names its queue ("priority:type:offset"), not its index in `queues`: a
        # type submitted between two pages shifts the indexes.
        position, offset = 0, 0
        if cursor is not None:
            priority, _, rest = cursor.partition(":")
            queue_type, _, at = rest.rpartition(":")
            if (priority, queue_type) not in queues or not at.isdigit():
                raise InvalidTaskError(f"invalid cursor {cursor!r}", field="cursor")
            position, offset = queues.index((priority, queue_type)), int(at)
        items: list[Task] = []
        while position < len(queues) and len(items) < limit:
            wanted = limit - len(items)
            queue = self.keys.ready(*queues[position])
            ids = await self.redis.execute("LRANGE", queue, offset, offset + wanted - 1)
            items.extend(t for t in await self.get_many(ids) if t is not None)
            if len(ids) < wanted:
                position, offset = position + 1, 0
            else:
                offset += len(ids)
        if position >= len(queues):
            return Page(items, None)
        priority, queue_type = queues[position]
        return Page(items, f"{priority}:{queue_type}:{offset}")

    async def stats(self) -> QueueStats:
        """Queue depths and counts from the incrementally kept counters: O(1) on Redis."""
        counts, succeeded, cancelled, workers = await self.redis.pipeline(
            [
                ("HGETALL", self.keys.counts),
                ("ZCARD", self.keys.succeeded),
                ("ZCARD", self.keys.cancelled),
                ("ZCARD", self.keys.workers),
            ]
        )
        by_state = {state: 0 for state in TaskState}
        by_state[TaskState.SUCCEEDED] = succeeded
        by_state[TaskState.CANCELLED] = cancelled
        pending_by_priority = {p: 0 for p in Priority}
        pending_by_type: dict[str, int] = {}
        by_state_and_type: dict[tuple[TaskState, str], int] = {}
        totals: dict[str, int] = {}
        for field, value in _pairs(counts).items():
            n = int(value)
            head, _, rest = field.partition("|")
            if head == "total":
                totals[rest] = n
                continue
            state = TaskState(head)
            priority, _, task_type = rest.partition("|")
            by_state[state] += n
            key = (state, task_type)
            by_state_and_type[key] = by_state_and_type.get(key, 0) + n
            if state is TaskState.PENDING:
                pending_by_priority[Priority(priority)] += n
                pending_by_type[task_type] = pending_by_type.get(task_type, 0) + n
        return QueueStats(
            by_state=by_state,
            pending_by_priority=pending_by_priority,
            pending_by_type=pending_by_type,
            by_state_and_type=by_state_and_type,
            totals=totals,
            workers=workers,
        )

    async def workers(self) -> list[WorkerInfo]:
        """The registered workers whose registration has not expired, newest beat first."""
        ids = await self.redis.execute("ZREVRANGE", self.keys.workers, 0, -1)
        if not ids:
            return []
        replies = await self.redis.pipeline([("HGETALL", self.keys.worker(i)) for i in ids])
        return [worker_from_hash(_pairs(r)) for r in replies if r]


def _pairs(flat: list[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def task_type_problem(task_type: object) -> str | None:
    """What is wrong with ``task_type`` as a task type name, or None if nothing is."""
    if not isinstance(task_type, str) or not task_type:
        return "type must be a non-empty string"
    if len(task_type) > MAX_TYPE_LENGTH or not _FORBIDDEN_IN_TYPE.isdisjoint(task_type):
        return (
            f"invalid task type {task_type!r}: at most {MAX_TYPE_LENGTH} characters, "
            "no spaces, braces, colons, commas, '|' or '@'"
        )
    return None


def valid_max_retries(value: object) -> bool:
    return _is_int(value) and 0 <= value <= MAX_RETRIES_LIMIT  # type: ignore[operator]


def valid_timeout(value: object) -> bool:
    return _is_number(value) and 0 < value <= MAX_TIMEOUT  # type: ignore[operator]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_cursor(cursor: str | None, default: int) -> int:
    if cursor is None:
        return default
    if not cursor.isdigit():
        raise InvalidTaskError(f"invalid cursor {cursor!r}", field="cursor")
    return int(cursor)
