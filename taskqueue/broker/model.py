"""What the queue operations take and give back: settings and results (the submissions
themselves are part of the data model, :class:`taskqueue.models.Submission`).

Plain values with no I/O, shared by the trio :class:`~taskqueue.broker.Broker` and the
synchronous :class:`~taskqueue.SyncClient` (both run :mod:`taskqueue.broker.operations`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Generic, Literal, TypeVar

import attrs
import msgspec

from taskqueue.broker.policy import PolicyView
from taskqueue.models import (
    DEFAULT_MAX_SNOOZES,
    DEFAULT_MAX_TASK_TYPES,
    DEFAULT_PRIORITY,
    DebounceOutcome,
    Policy,
    Priority,
    QueueStats,
    Submission,
    Task,
    TaskState,
)
from taskqueue.outcomes import OutcomeKind

Item = TypeVar("Item")

__all__ = [
    "BULK_CANCEL_STATES",
    "PURGEABLE_STATES",
    "BrokerSettings",
    "BulkCancellation",
    "CancelOutcome",
    "Cancellation",
    "Page",
    "QueueReport",
    "Retention",
    "Submission",
    "Submitted",
    "TaskView",
    "TrimResult",
    "wall_clock_ms",
]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@attrs.frozen(kw_only=True)
class Retention:
    """How long (seconds) and how many finished records of each state Redis keeps; 0 turns a
    limit off. The trimmer applies it (``trim.lua``)."""

    succeeded: float = 24 * 3600.0
    succeeded_max: int = 1_000_000
    cancelled: float = 24 * 3600.0
    cancelled_max: int = 100_000
    expired: float = 24 * 3600.0
    expired_max: int = 100_000
    dead: float = 180 * 24 * 3600.0
    dead_max: int = 100_000

    @classmethod
    def from_config(cls, section: Any) -> Retention:
        return cls(**{field.name: getattr(section, field.name) for field in attrs.fields(cls)})

    def script_args(self) -> list[int]:
        """Age (ms) and count of succeeded, cancelled, expired and dead, as ``trim.lua`` takes
        them."""
        return [
            round(self.succeeded * 1000), self.succeeded_max,
            round(self.cancelled * 1000), self.cancelled_max,
            round(self.expired * 1000), self.expired_max,
            round(self.dead * 1000), self.dead_max,
        ]  # fmt: skip


@attrs.frozen(kw_only=True)
class TrimResult:
    """How many finished records one trim deleted, by state."""

    succeeded: int
    cancelled: int
    dead: int
    expired: int = 0
    #: Types the sweep dropped from the types set (left there by an older version).
    types_dropped: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.cancelled + self.expired + self.dead


@attrs.frozen(kw_only=True, cache_hash=True)  # hashed per submit: see operations
class BrokerSettings:
    """The broker's knobs; :meth:`from_config` builds them from the daemon configuration."""

    namespace: str = "taskqueue"
    default_timeout: float = 300.0
    default_max_retries: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 300.0
    max_payload_bytes: int = 1024 * 1024
    #: Largest result or progress report a processor may leave, as JSON (the worker checks).
    max_result_bytes: int = 1024 * 1024
    retention: Retention = attrs.field(factory=lambda: Retention())
    idempotency_window: float = 24 * 3600.0
    #: How long a lease lasts without a heartbeat; also how long a silent worker stays registered.
    lease_ttl: float = 8.0
    max_queue_depth: int = 0
    #: Most distinct task types with tasks (pending, scheduled, active or dead); 0: no limit.
    max_task_types: int = DEFAULT_MAX_TASK_TYPES
    #: 0: strict priorities. N > 0: every Nth claim first takes one task from each lower priority.
    priority_guard: int = 0
    refuse_unserved: bool = False
    #: Each submission waits until Redis has written it to its append-only file on disk
    #: (``WAITAOF``), for at most ``durable_timeout`` seconds.
    durable_submit: bool = False
    durable_timeout: float = 2.0
    #: Most snoozes of a task where no policy layer sets ``max_snoozes``.
    max_snoozes: int = DEFAULT_MAX_SNOOZES
    #: How many hash tags the namespace is spread over (see :mod:`~taskqueue.broker.partitions`).
    partitions: int = 1

    def policy(self) -> Policy:
        """The global policy these settings give: what a daemon writes to the config layer at
        start, and what a submitter falls back on where Redis holds no policy at all."""
        return Policy(
            max_queue_depth=self.max_queue_depth,
            max_retries=self.default_max_retries,
            timeout=self.default_timeout,
            priority=DEFAULT_PRIORITY,
            idempotency_window=self.idempotency_window,
            refuse_unserved=self.refuse_unserved,
            max_task_types=self.max_task_types,
            unique=False,
            max_snoozes=self.max_snoozes,
        )

    @classmethod
    def from_config(cls, config: Any) -> BrokerSettings:
        task, worker = config.task, config.worker
        return cls(
            namespace=config.redis.namespace,
            partitions=config.redis.partitions,
            default_timeout=task.default_timeout,
            default_max_retries=task.max_retries,
            retry_base_delay=task.retry_base_delay,
            retry_max_delay=task.retry_max_delay,
            max_payload_bytes=task.max_payload_bytes,
            max_result_bytes=task.max_result_bytes,
            retention=Retention.from_config(config.retention),
            idempotency_window=task.idempotency_window,
            lease_ttl=worker.worker_timeout,
            max_queue_depth=task.max_queue_depth,
            priority_guard=worker.priority_guard,
            refuse_unserved=task.refuse_unserved,
            max_task_types=task.max_task_types,
            max_snoozes=task.max_snoozes,
            durable_submit=config.redis.durable_submit,
            durable_timeout=config.redis.durable_timeout,
        )


class Submitted(msgspec.Struct, frozen=True):
    """The result of one submission: the task's id, its state, and whether it is new.

    ``created`` is False when the idempotency key matched an earlier task, or a unique
    submission a live task of the same type and payload: then ``id`` is that task's and
    nothing was written. ``priority`` is the one the task got (a submission that
    named none gets its type's default); None only where a caller built the record itself.
    ``warnings`` say what was accepted but may not go as hoped: no live worker serves the
    task's type (so nothing will run it until one starts).
    """

    id: str
    state: TaskState
    created: Annotated[
        bool,
        msgspec.Meta(
            description="False when the idempotency key matched an earlier task, or a unique "
            "submission a live task of the same type and payload, whose id this is; nothing "
            "was written then."
        ),
    ]
    priority: Priority | None = None
    warnings: Annotated[
        list[str],
        msgspec.Meta(
            description="What was accepted but may not go as hoped, e.g. that no live worker "
            "serves the task's type."
        ),
    ] = msgspec.field(default_factory=list)
    debounced: Annotated[
        DebounceOutcome | None,
        msgspec.Meta(
            description="For a debounced submission: `created` the task, `replaced` the "
            "payload of the waiting one, or `joined` it (its first payload kept)."
        ),
    ] = None


def unserved_warning(task_type: str) -> str:
    """The warning of a submission whose type no live worker serves (one wording everywhere)."""
    return f"no live worker serves task type {task_type!r}: it waits until one starts"


@attrs.frozen
class QueueReport:
    """What ``taskqueue queues`` shows, read in one round trip: the counts, the task types a
    live worker serves, and the policy."""

    stats: QueueStats
    served: frozenset[str]
    policy: PolicyView

    @property
    def unserved(self) -> list[str]:
        """Task types with live tasks (pending, scheduled or active) that no live worker serves."""
        live = {
            t
            for (state, t), n in self.stats.by_state_and_type.items()
            if n and state is not TaskState.DEAD
        }
        return sorted(live - self.served)


CancelOutcome = Literal["cancelled", "requested"]


@attrs.frozen
class Cancellation:
    """What a cancel did (``outcome``), and to a task of which type and priority."""

    outcome: CancelOutcome
    type: str
    priority: Priority


#: The states a bulk cancel ends at once (an active task is asked to stop instead).
BULK_CANCEL_STATES = (TaskState.BLOCKED, TaskState.PENDING, TaskState.SCHEDULED)
#: The states whose tasks can be purged: the finished ones.
PURGEABLE_STATES = tuple(s for s in TaskState if s.is_terminal)


@attrs.frozen(kw_only=True)
class BulkCancellation:
    """What a bulk cancel of one task type did: how many waiting tasks it cancelled (by state
    and by priority) and of how many running ones it asked their workers to stop them."""

    type: str
    by_state: Mapping[TaskState, int]
    by_priority: Mapping[Priority, int]
    requested: int = 0

    @property
    def cancelled(self) -> int:
        return sum(self.by_state.values())


@attrs.frozen
class TaskView:
    """A task as a response shows it: each field larger than the reader's limit was left in
    Redis (a JSON value) or shortened (a text), and ``truncated`` names it with its full size
    in bytes as stored."""

    task: Task
    truncated: Mapping[str, int]


@attrs.frozen
class Page(Generic[Item]):
    """One page of a listing; pass ``next_cursor`` back for the next one (None: the end)."""

    items: list[Item]
    next_cursor: str | None


# -- the worker's operations ------------------------------------------------------------------


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
    #: A snoozed task's wait before it runs again, in milliseconds.
    snooze_ms: int = 0


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
    #: pending, dead, or expired when its retry would start past its deadline), or it was
    #: cancelled (its cancellation had been asked for).
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
    #: Epoch ms of the next scheduled task or deadline, or None when there is neither.
    next_due_ms: int | None
    #: The type and priority of each task ended expired (its deadline passed as it waited).
    expired: list[tuple[str, Priority]] = attrs.field(factory=list)
