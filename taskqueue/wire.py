"""The documents of the REST API and of the ``taskqueue`` command's ``--json`` output.

Each is a :class:`msgspec.Struct`: the REST app validates request bodies by converting them to
one, encodes replies from one, and publishes their JSON Schemas as the OpenAPI components, so
the document, the checks and the replies cannot drift apart. A task or worker document is the
model itself (:mod:`taskqueue.models`) with a few derived fields, so a field added to the model
appears here with nothing more to write.

Times stay Unix epoch milliseconds, as stored, so nothing is lost or rounded; each is repeated
as an RFC 3339 string (``*_at``) for people and for clients that parse dates anyway.

Kept out of the REST package so the command line need not import the web stack to use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from taskqueue import models, schedules
from taskqueue.broker import BulkCancellation, PolicyView, QueueReport, Submitted, TaskView
from taskqueue.models import MAX_BATCH, Count, DebounceOutcome, Policy, Submission, TaskEvent

__all__ = [
    "BatchResult",
    "BulkCancel",
    "Health",
    "Policy",
    "PolicyDocument",
    "PolicyScope",
    "Problem",
    "Purged",
    "QueueStats",
    "Readiness",
    "Requeued",
    "Schedule",
    "SchedulePage",
    "Submission",
    "SubmissionBatch",
    "Submitted",
    "SubmittedTask",
    "Task",
    "TaskEvent",
    "TaskPage",
    "TasksCancelled",
    "TasksPurged",
    "Worker",
    "WorkerList",
    "cancellation_from_document",
    "cancelled_document",
    "cancelled_json",
    "iso",
    "policy_document",
    "policy_json",
    "policy_scope",
    "policy_scope_json",
    "policy_view",
    "report_document",
    "report_from_document",
    "report_json",
    "schedule_document",
    "schedule_json",
    "stats_json",
    "submitted_json",
    "submitted_task_document",
    "task_document",
    "task_json",
    "worker_document",
    "worker_json",
]

Iso = Annotated[
    str,
    Meta(description="The same time, RFC 3339 (UTC).", extra_json_schema={"format": "date-time"}),
]


class SubmissionBatch(Struct, forbid_unknown_fields=True):
    tasks: Annotated[list[Submission], Meta(min_length=1, max_length=MAX_BATCH)]


class BatchResult(Struct):
    tasks: list[Submitted]


class Task(models.Task, kw_only=True):
    """A task and everything known about it. Times are Unix epoch milliseconds (`*_ms`), each
    repeated as an RFC 3339 string (`*_at`)."""

    attempts_left: Count
    created_at: Iso
    ready_at: Iso
    started_at: Iso | None
    finished_at: Iso | None
    truncated: Annotated[
        dict[str, Count],
        Meta(
            description="The fields this document cut, each with its full size in bytes as "
            "stored (UTF-8; JSON text for `payload`, `result` and `progress`): `payload`, "
            "`result` and `progress` are null, `error` and `traceback` keep their start. "
            "Lists cut them past a few hundred bytes (fetch the task alone to read them); a "
            "single task only past the payload limit. Empty: nothing was cut."
        ),
    ] = msgspec.field(default_factory=dict)


class SubmittedTask(Task, kw_only=True):
    """The task just submitted (or found by its idempotency key), and what to know about it."""

    warnings: Annotated[
        list[str],
        Meta(
            description="What was accepted but may not go as hoped, e.g. that no live worker "
            "serves the task's type."
        ),
    ]
    debounced: Annotated[
        DebounceOutcome | None,
        Meta(
            description="For a debounced submission: `created` the task, `replaced` the "
            "payload of the waiting one, or `joined` it (its first payload kept)."
        ),
    ] = None


class PolicyScope(Struct):
    """The queue policy of one scope (every type, or one), layer by layer."""

    live: Annotated[Policy, Meta(description="Set by operators (API, `taskqueue policy`).")]
    config: Annotated[
        Policy,
        Meta(description="Written at start by daemons (`[task]`) and workers (plugins)."),
    ]
    effective: Annotated[
        Policy,
        Meta(
            description="What a submission gets: live, then config, then (for a type) the "
            "global scope's, then the server's defaults."
        ),
    ]


class PolicyDocument(Struct, rename={"global_": "global"}):
    global_: Annotated[PolicyScope, Meta(description="Every task type's.")]
    types: Annotated[
        dict[str, PolicyScope], Meta(description="Task types with a policy of their own.")
    ]


class TaskPage(Struct):
    tasks: list[Task]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the next page; null on the last page.")
    ]


class Worker(models.WorkerInfo, kw_only=True):
    """A worker's registration, as its last heartbeat left it."""

    started_at: Iso
    last_heartbeat_at: Iso
    dead: Annotated[
        bool,
        Meta(
            description="Its last heartbeat is older than `worker.worker_timeout` (of the "
            "server answering): taken for dead, its tasks are returned and it is forgotten at "
            "the reaper's next pass."
        ),
    ] = False


class WorkerList(Struct):
    workers: list[Worker]
    dead_after_seconds: Annotated[
        float,
        Meta(description="`worker.worker_timeout`: a worker silent this long is dead."),
    ]


Counts = dict[str, Count]


class QueueStats(Struct):
    by_state: Annotated[Counts, Meta(description="Tasks in each state.")]
    pending_by_priority: Annotated[Counts, Meta(description="Ready tasks at each priority.")]
    by_type: Annotated[
        dict[str, Counts],
        Meta(
            description="Per task type, its tasks in each live state (pending, scheduled, "
            "active, dead)."
        ),
    ]
    totals: Annotated[
        Counts,
        Meta(
            description="Lifetime counts: submitted, succeeded, failed, retried, dead, "
            "cancelled, expired, reaped."
        ),
    ]
    held_by_limit: Annotated[
        dict[str, str],
        Meta(
            description="Task types whose pending tasks a limit holds back, and which "
            "(`rate` or `concurrency`): a claim left them waiting in the last 5 seconds."
        ),
    ] = msgspec.field(default_factory=dict)
    served_types: Annotated[list[str], Meta(description="Task types some live worker serves.")] = (
        msgspec.field(default_factory=list)
    )
    unserved_types: Annotated[
        list[str],
        Meta(
            description="Task types with live tasks (pending, scheduled, active) no live "
            "worker serves: they wait until one starts."
        ),
    ] = msgspec.field(default_factory=list)
    policy: PolicyDocument | None = None
    groups: Annotated[
        list[models.GroupStats],
        Meta(
            description="Per task type with grouped tasks (fair share), how many groups have "
            "pending and active tasks, and the ten groups with the most pending tasks (then "
            "the busiest of the rest by active tasks)."
        ),
    ] = msgspec.field(default_factory=list)


#: Upcoming ticks a schedule document lists.
UPCOMING_TICKS = 5


class Schedule(schedules.Schedule, kw_only=True, frozen=True):
    """A schedule: its definition (`spec`), its state, and its next ticks. Times are Unix epoch
    milliseconds (`*_ms`), each repeated as an RFC 3339 string (`*_at`)."""

    next_run_at: Iso | None
    last_run_at: Iso | None
    upcoming_at: Annotated[
        list[str],
        Meta(
            description=f"The next {UPCOMING_TICKS} ticks (RFC 3339), even while paused: the "
            "times it would fire at."
        ),
    ]


class SchedulePage(Struct):
    schedules: list[Schedule]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the next page; null on the last page.")
    ]


class Requeued(Struct):
    requeued: Annotated[int, Meta(ge=0, description="Dead-lettered tasks queued again.")]


class Purged(Struct):
    purged: Annotated[int, Meta(ge=0, description="Dead-lettered tasks deleted.")]


class BulkCancel(Struct, forbid_unknown_fields=True):
    """Which tasks of one type a bulk cancel ends."""

    type: models.TaskType
    states: (
        Annotated[
            list[models.TaskState],
            Meta(
                min_length=1,
                description="The waiting states to cancel: `pending`, `scheduled` or both "
                "(the default).",
            ),
        ]
        | None
    ) = None
    include_active: Annotated[
        bool,
        Meta(
            description="Also ask the workers of the type's running tasks to stop them (each "
            "then ends `cancelled`, as a single cancel's would)."
        ),
    ] = False


class TasksCancelled(Struct):
    type: str
    cancelled: Annotated[int, Meta(ge=0, description="Waiting tasks cancelled.")]
    by_state: Annotated[
        dict[str, int], Meta(description="The cancelled tasks by the state they were in.")
    ]
    by_priority: Annotated[dict[str, int], Meta(description="The cancelled tasks by priority.")]
    requested: Annotated[
        int, Meta(ge=0, description="Running tasks whose workers were asked to stop them.")
    ]


class TasksPurged(Struct):
    state: models.TaskState
    type: str | None
    purged: Annotated[int, Meta(ge=0, description="Finished tasks deleted.")]


class Problem(Struct, omit_defaults=True):
    """An error, as RFC 9457 problem details."""

    type: Annotated[str, Meta(description="A URI naming the kind of problem.")]
    title: str
    status: int
    detail: Annotated[str, Meta(description="What exactly is wrong.")]
    field: (
        Annotated[
            str, Meta(description="The request field at fault (dotted path), for 413 and 422.")
        ]
        | None
    ) = None


class Health(Struct):
    status: Literal["ok"] = "ok"


class Readiness(Struct):
    ready: bool
    redis: Annotated[str, Meta(description="`ok`, or why Redis is not reachable.")]
    services: dict[str, bool]
    draining: bool


# -- from the model ---------------------------------------------------------------------------


def iso(ms: int | None) -> str | None:
    """``ms`` (epoch milliseconds) as RFC 3339 UTC with milliseconds, e.g. ``…T12:00:00.250Z``."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_document(task: models.Task, truncated: Mapping[str, int] | None = None) -> Task:
    """``task``'s document; ``truncated`` names the fields already cut from ``task``."""
    return Task(
        **msgspec.structs.asdict(task),
        truncated=dict(truncated or {}),
        attempts_left=task.attempts_left,
        created_at=iso(task.created_ms) or "",
        ready_at=iso(task.ready_ms) or "",
        started_at=iso(task.started_ms),
        finished_at=iso(task.finished_ms),
    )


def worker_document(
    worker: models.WorkerInfo, *, now_ms: int = 0, dead_after: float | None = None
) -> Worker:
    """``worker``'s document; with ``dead_after`` (seconds, the worker timeout) it says whether
    the worker is dead at ``now_ms``, which a registration that outlives it (a worker with a
    longer timeout, a skewed clock) shows until a reaper forgets it."""
    silent_ms = now_ms - worker.last_heartbeat_ms
    return Worker(
        **msgspec.structs.asdict(worker),
        started_at=iso(worker.started_ms) or "",
        last_heartbeat_at=iso(worker.last_heartbeat_ms) or "",
        dead=dead_after is not None and silent_ms > dead_after * 1000,
    )


def schedule_document(schedule: schedules.Schedule, now_ms: int) -> Schedule:
    return Schedule(
        **msgspec.structs.asdict(schedule),
        next_run_at=iso(schedule.next_run_ms),
        last_run_at=iso(schedule.last_run_ms),
        upcoming_at=[
            iso(tick) or "" for tick in schedules.upcoming(schedule.spec, now_ms, UPCOMING_TICKS)
        ],
    )


def schedule_json(schedule: schedules.Schedule, now_ms: int) -> dict[str, Any]:
    return msgspec.to_builtins(schedule_document(schedule, now_ms))  # type: ignore[no-any-return]


def stats_document(stats: models.QueueStats) -> QueueStats:
    by_type: dict[str, dict[str, int]] = {}
    for (state, task_type), count in sorted(stats.by_state_and_type.items()):
        by_type.setdefault(task_type, {})[state.value] = count
    return QueueStats(
        by_state={state.value: n for state, n in stats.by_state.items()},
        pending_by_priority={p.value: n for p, n in stats.pending_by_priority.items()},
        by_type=by_type,
        totals=dict(stats.totals),
        held_by_limit=dict(sorted(stats.held_by_limit.items())),
        groups=list(stats.groups),
    )


def view_document(view: TaskView) -> Task:
    """The document of a task as a response read it (its large fields cut in Redis)."""
    return task_document(view.task, view.truncated)


def submitted_task_document(view: TaskView, submitted: Submitted) -> SubmittedTask:
    return SubmittedTask(
        **msgspec.structs.asdict(view_document(view)),
        warnings=list(submitted.warnings),
        debounced=submitted.debounced,
    )


def policy_scope(view: PolicyView, task_type: str | None) -> PolicyScope:
    return PolicyScope(
        live=view.layer("live", task_type),
        config=view.layer("config", task_type),
        effective=view.effective(task_type),
    )


def policy_document(view: PolicyView) -> PolicyDocument:
    return PolicyDocument(
        global_=policy_scope(view, None),
        types={t: policy_scope(view, t) for t in view.task_types},
    )


def report_document(report: QueueReport) -> QueueStats:
    """The queues document with what only a report has: served types and the policy."""
    return msgspec.structs.replace(
        stats_document(report.stats),
        served_types=sorted(report.served),
        unserved_types=report.unserved,
        policy=policy_document(report.policy),
    )


def cancelled_document(cancellation: BulkCancellation) -> TasksCancelled:
    return TasksCancelled(
        type=cancellation.type,
        cancelled=cancellation.cancelled,
        by_state={state.value: n for state, n in cancellation.by_state.items()},
        by_priority={
            p.value: cancellation.by_priority[p]
            for p in models.Priority
            if p in cancellation.by_priority
        },
        requested=cancellation.requested,
    )


# -- as plain JSON values, for the command line --------------------------------------------------


def task_json(task: models.Task) -> dict[str, Any]:
    return msgspec.to_builtins(task_document(task))  # type: ignore[no-any-return]


def worker_json(
    worker: models.WorkerInfo, *, now_ms: int = 0, dead_after: float | None = None
) -> dict[str, Any]:
    document = worker_document(worker, now_ms=now_ms, dead_after=dead_after)
    return msgspec.to_builtins(document)  # type: ignore[no-any-return]


def stats_json(stats: models.QueueStats) -> dict[str, Any]:
    return msgspec.to_builtins(stats_document(stats))  # type: ignore[no-any-return]


def report_json(report: QueueReport) -> dict[str, Any]:
    return msgspec.to_builtins(report_document(report))  # type: ignore[no-any-return]


def policy_json(view: PolicyView) -> dict[str, Any]:
    return msgspec.to_builtins(policy_document(view))  # type: ignore[no-any-return]


def policy_scope_json(view: PolicyView, task_type: str | None) -> dict[str, Any]:
    return msgspec.to_builtins(policy_scope(view, task_type))  # type: ignore[no-any-return]


def cancelled_json(cancellation: BulkCancellation) -> dict[str, Any]:
    return msgspec.to_builtins(cancelled_document(cancellation))  # type: ignore[no-any-return]


def submitted_json(submitted: Submitted) -> dict[str, Any]:
    return msgspec.to_builtins(submitted)  # type: ignore[no-any-return]


# -- back to the model, for clients of the REST API -----------------------------------------------


def cancellation_from_document(document: TasksCancelled) -> BulkCancellation:
    return BulkCancellation(
        type=document.type,
        by_state={models.TaskState(s): n for s, n in document.by_state.items()},
        by_priority={models.Priority(p): n for p, n in document.by_priority.items()},
        requested=document.requested,
    )


def policy_view(document: PolicyDocument) -> PolicyView:
    """The :class:`PolicyView` a policy document was made from, as far as it tells: the global
    scope's effective policy stands in for the server's defaults below the layers, which gives
    every scope the same effective policy as on the server."""
    scopes: dict[str | None, PolicyScope] = {None: document.global_}
    scopes.update(document.types)
    return PolicyView(
        live={t: s.live for t, s in scopes.items()},
        config={t: s.config for t, s in scopes.items()},
        fallback=document.global_.effective,
    )


def report_from_document(document: QueueStats) -> QueueReport:
    """The :class:`QueueReport` a queues document was made from (the registered-worker count
    and the per-priority split of non-pending states, which the document leaves out, are 0)."""
    by_state_and_type = {
        (models.TaskState(state), task_type): n
        for task_type, counts in document.by_type.items()
        for state, n in counts.items()
    }
    pending = models.TaskState.PENDING
    stats = models.QueueStats(
        by_state={models.TaskState(s): n for s, n in document.by_state.items()},
        pending_by_priority={
            models.Priority(p): n for p, n in document.pending_by_priority.items()
        },
        pending_by_type={t: n for (s, t), n in by_state_and_type.items() if s is pending},
        by_state_and_type=by_state_and_type,
        totals=dict(document.totals),
        held_by_limit=dict(document.held_by_limit),
        groups=list(document.groups),
    )
    policy = document.policy or PolicyDocument(
        global_=PolicyScope(live=Policy(), config=Policy(), effective=Policy()), types={}
    )
    return QueueReport(stats, frozenset(document.served_types), policy_view(policy))
