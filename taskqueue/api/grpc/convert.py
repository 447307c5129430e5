"""Between the data model and the protobuf messages, both ways, without I/O.

What the proto file promises is kept here: JSON text in ``*_json`` fields, epoch milliseconds,
an ``UNSPECIFIED`` enum value meaning "the default", request field names in errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import betterproto

from taskqueue import _json, schedules
from taskqueue.api.grpc.gen.taskqueue import v1 as pb
from taskqueue.broker import PolicyView, QueueReport, Submission, Submitted, TaskView
from taskqueue.errors import InvalidTaskError
from taskqueue.models import (
    DEFAULT_PAGE,
    MAX_BATCH,
    Debounce,
    DependencyFailure,
    Policy,
    Priority,
    QueueStats,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
    Workflow,
    validated,
)
from taskqueue.schedules import Schedule, ScheduleSpec
from taskqueue.wire import UPCOMING_TICKS

#: The broker's names for a debounce's fields -> the request's.
_DEBOUNCE_FIELD_NAMES = {"window": "window_seconds", "max_wait": "max_wait_seconds"}
#: The broker's names for submission fields -> the request's.
_FIELD_NAMES = {
    "payload": "payload_json",
    "timeout": "timeout_seconds",
    "delay": "delay_seconds",
    "eta": "eta_ms",
    "expires_in": "expires_in_seconds",
    "expires_at": "expires_at_ms",
}


# -- requests ---------------------------------------------------------------------------------


def submission(request: pb.SubmitTaskRequest, idempotency_key: str | None = None) -> Submission:
    """The broker's submission for ``request``; ``idempotency_key`` is the metadata's, used
    when the request carries none. Raises InvalidTaskError naming the request's field."""
    return Submission(
        type=request.type,
        payload=json_value(request.payload_json, "payload_json"),
        priority=priority_name(request.priority, "priority"),  # unset: the task type's default
        max_retries=request.max_retries,
        timeout=request.timeout_seconds,
        delay=request.delay_seconds,
        eta=None if request.eta_ms is None else request.eta_ms / 1000,
        idempotency_key=request.idempotency_key or idempotency_key or None,
        depends_on=[dependency(d, n) for n, d in enumerate(request.depends_on)] or None,
        on_dependency_failure=dependency_failure(request.on_dependency_failure),
        unique=request.unique,
        expires_in=request.expires_in_seconds,
        expires_at=None if request.expires_at_ms is None else request.expires_at_ms / 1000,
        headers=request.headers or None,
        debounce=debounce(request.debounce),
        group=request.group or None,
    )


def debounce(message: pb.Debounce) -> Debounce | None:
    """The submission's debounce, or None when the request sets none."""
    if not betterproto.serialized_on_wire(message):
        return None
    return Debounce(
        key=message.key,
        window=message.window_seconds,
        max_wait=message.max_wait_seconds,
        keep="first" if message.keep_first else "last",
    )


def dependency(message: pb.Dependency, n: int) -> str | int:
    """A dependency's task id, or its index in the batch."""
    ref, value = betterproto.which_one_of(message, "ref")
    if not ref:
        raise InvalidTaskError("give a task_id or an index", field=f"depends_on.{n}")
    return cast("str | int", value)


def dependency_failure(value: pb.DependencyFailure) -> DependencyFailure | None:
    if value == pb.DependencyFailure.UNSPECIFIED:
        return None
    if value.name is None:
        raise InvalidTaskError(
            f"unknown on_dependency_failure {int(value)}", field="on_dependency_failure"
        )
    return DependencyFailure(value.name.lower())


def json_value(text: str, field: str) -> object:
    """The value of a ``*_json`` field: empty text is JSON null, as the proto promises."""
    if not text:
        return None
    try:
        return _json.loads(text)
    except _json.JSONDecodeError as exc:
        raise InvalidTaskError(f"{field} is not valid JSON: {exc}", field=field) from None


def priority_name(value: pb.Priority, field: str) -> str | None:
    """The model's name of a request's priority; None for UNSPECIFIED (the default applies).
    A number this server's proto does not know is refused, naming ``field``."""
    if value == pb.Priority.UNSPECIFIED:
        return None
    if value.name is None:
        raise InvalidTaskError(f"unknown priority {int(value)}", field=field)
    return value.name.lower()


def submissions(request: pb.SubmitTasksRequest) -> list[Submission]:
    if len(request.tasks) > MAX_BATCH:
        raise InvalidTaskError(
            f"a batch holds at most {MAX_BATCH} tasks, not {len(request.tasks)}", field="tasks"
        )
    batch = []
    for index, task in enumerate(request.tasks):
        try:
            batch.append(submission(task))
        except InvalidTaskError as exc:
            raise type(exc)(f"task {index}: {exc}", field=f"{index}.{exc.field}") from None
    return batch


def request_field(exc: InvalidTaskError) -> InvalidTaskError:
    """``exc`` with its field renamed as the request names it: ``timeout`` ->
    ``timeout_seconds``, a batch's ``2.timeout`` -> ``tasks[2].timeout_seconds``."""
    if exc.field is None:
        return exc
    index, dot, path = exc.field.partition(".")
    if not (dot and index.isdigit()):
        index, path = "", exc.field
    name, dot, at = path.partition(".")  # depends_on.2 -> depends_on[2]
    if name == "debounce" and dot:  # debounce.window -> debounce.window_seconds
        name = f"debounce.{_DEBOUNCE_FIELD_NAMES.get(at, at)}"
    else:
        name = _FIELD_NAMES.get(name, name) + (f"[{at}]" if dot else "")
    field = f"tasks[{index}].{name}" if index else name
    return type(exc)(str(exc), field=field)


def state_of(value: pb.TaskState, *, field: str = "state") -> TaskState:
    """The model's state for a request's; UNSPECIFIED and unknown numbers are refused."""
    if value == pb.TaskState.UNSPECIFIED or value.name is None:
        names = ", ".join(s.name for s in pb.TaskState if s != pb.TaskState.UNSPECIFIED)
        raise InvalidTaskError(f"{field} must be one of {names}", field=field)
    return TaskState[value.name]


def required(value: str, field: str) -> str:
    if not value:
        raise InvalidTaskError(f"{field} is required", field=field)
    return value


def page_limit(limit: int) -> int:
    """A request's page size: 0 means the default (the broker checks the range)."""
    return limit or DEFAULT_PAGE


#: The model's names for policy settings -> the message's.
_POLICY_NAMES = {"timeout": "timeout_seconds", "idempotency_window": "idempotency_window_seconds"}


def policy(message: pb.Policy) -> Policy:
    """The model's policy for a request's, its constraints checked (errors name the field as
    the message does, under ``live``)."""
    values: dict[str, object] = {
        "max_queue_depth": message.max_queue_depth,
        "max_retries": message.max_retries,
        "timeout": message.timeout_seconds,
        "idempotency_window": message.idempotency_window_seconds,
        "refuse_unserved": message.refuse_unserved,
        "max_task_types": message.max_task_types,
        "rate_limit": message.rate_limit,
        "rate_burst": message.rate_burst,
        "concurrency": message.concurrency,
        "paused": message.paused,
        "group_concurrency": message.group_concurrency,
        "group_rate_limit": message.group_rate_limit,
        "unique": message.unique,
        "max_snoozes": message.max_snoozes,
    }
    values["priority"] = priority_name(message.priority, "live.priority")
    try:
        return validated({k: v for k, v in values.items() if v is not None}, Policy)
    except InvalidTaskError as exc:
        name = _POLICY_NAMES.get(exc.field or "", exc.field)
        raise InvalidTaskError(str(exc), field=f"live.{name}") from None


def schedule_spec(message: pb.ScheduleSpec | None, *, field: str = "spec") -> ScheduleSpec:
    """The definition a request's ``spec`` gives, checked by :func:`schedules.schedule_spec`
    (as a REST body or the config file's is); errors name the field as the message does
    (``spec.every_seconds``). Unset fields are left out, so the definition's defaults apply."""
    message = message or pb.ScheduleSpec()
    data: dict[str, object] = {}
    for name in ("name", "type", "timezone"):
        if value := getattr(message, name):
            data[name] = value
    if (payload := json_value(message.payload_json, f"{field}.payload_json")) is not None:
        data["payload"] = payload
    timing, value = betterproto.which_one_of(message, "timing")
    if timing:
        data["cron" if timing == "cron" else "every"] = value
    if message.missed != pb.MissedPolicy.UNSPECIFIED:
        if message.missed.name is None:
            raise InvalidTaskError(
                f"unknown missed policy {int(message.missed)}", field=f"{field}.missed"
            )
        data["missed"] = message.missed.name.lower()
    if (priority := priority_name(message.priority, f"{field}.priority")) is not None:
        data["priority"] = priority
    if message.max_retries is not None:
        data["max_retries"] = message.max_retries
    if message.timeout_seconds is not None:
        data["timeout"] = message.timeout_seconds
    try:
        return schedules.schedule_spec(data)
    except InvalidTaskError as exc:
        raise spec_field(exc, field) from None


def schedule_name(name: str) -> str:
    """A request's schedule name, checked as a definition's is."""
    try:
        return schedules.schedule_name(name)
    except InvalidTaskError as exc:
        raise spec_field(exc) from None


#: The definition's names for fields -> the message's (the rest are the same).
_SPEC_NAMES = {"payload": "payload_json", "every": "every_seconds", "timeout": "timeout_seconds"}


def spec_field(exc: InvalidTaskError, prefix: str = "") -> InvalidTaskError:
    """``exc`` (of its own class) about a definition's field, named as the message under
    ``prefix`` names it; the model's own ``field: `` lead is dropped, since the call's status
    message puts the request's name first."""
    if exc.field is None:
        return exc
    head, dot, rest = exc.field.partition(".")
    name = _SPEC_NAMES.get(head, head) + dot + rest
    return type(exc)(
        str(exc).removeprefix(f"{exc.field}: "), field=f"{prefix}.{name}" if prefix else name
    )


# -- responses --------------------------------------------------------------------------------


def submitted_message(submitted: Submitted) -> pb.SubmitTaskResponse:
    return pb.SubmitTaskResponse(
        id=submitted.id,
        state=pb.TaskState[submitted.state.name],
        created=submitted.created,
        warnings=list(submitted.warnings),
        debounced=submitted.debounced or "",
    )


def policy_message(p: Policy) -> pb.Policy:
    return pb.Policy(
        max_queue_depth=p.max_queue_depth,
        max_retries=p.max_retries,
        timeout_seconds=p.timeout,
        priority=pb.Priority.UNSPECIFIED
        if p.priority is None
        else pb.Priority[Priority(p.priority).name],
        idempotency_window_seconds=p.idempotency_window,
        refuse_unserved=p.refuse_unserved,
        max_task_types=p.max_task_types,
        rate_limit=p.rate_limit,
        rate_burst=p.rate_burst,
        concurrency=p.concurrency,
        paused=p.paused,
        group_concurrency=p.group_concurrency,
        group_rate_limit=p.group_rate_limit,
        unique=p.unique,
        max_snoozes=p.max_snoozes,
    )


def policy_scope_message(view: PolicyView, task_type: str | None) -> pb.PolicyScope:
    return pb.PolicyScope(
        live=policy_message(view.layer("live", task_type)),
        config=policy_message(view.layer("config", task_type)),
        effective=policy_message(view.effective(task_type)),
    )


def task_message(task: Task, truncated: Mapping[str, int] | None = None) -> pb.Task:
    """``task``'s message; ``truncated`` names the fields already cut from ``task`` (a field
    cut to null is sent empty)."""
    truncated = truncated or {}
    succeeded = task.state is TaskState.SUCCEEDED and "result" not in truncated
    return pb.Task(
        id=task.id,
        type=task.type,
        priority=pb.Priority[task.priority.name],
        payload_json="" if "payload" in truncated else _json.dumps(task.payload),
        state=pb.TaskState[task.state.name],
        attempt=task.attempt,
        snoozes=task.snoozes,
        max_retries=task.max_retries,
        timeout_ms=task.timeout_ms,
        created_ms=task.created_ms,
        ready_ms=task.ready_ms,
        started_ms=task.started_ms,
        finished_ms=task.finished_ms,
        expires_ms=task.expires_ms,
        headers=task.headers,
        group=task.group,
        result_json=_json.dumps(task.result) if succeeded else None,
        error=task.error,
        traceback=task.traceback,
        idempotency_key=task.idempotency_key,
        worker_id=task.worker_id,
        cancel_requested=task.cancel_requested,
        progress_json=None if task.progress is None else _json.dumps(task.progress),
        truncated={_JSON_NAMES.get(name, name): size for name, size in truncated.items()},
        depends_on=list(task.depends_on),
        dependents=list(task.dependents),
        waiting_for=list(task.waiting_for),
        on_dependency_failure=pb.DependencyFailure[task.on_dependency_failure.name]
        if task.depends_on
        else pb.DependencyFailure.UNSPECIFIED,
        inputs_json=None if task.inputs is None else _json.dumps(task.inputs),
    )


#: The model's names for JSON fields -> the message's.
_JSON_NAMES = {
    "payload": "payload_json",
    "result": "result_json",
    "progress": "progress_json",
    "inputs": "inputs_json",
}


def workflow_message(flow: Workflow) -> pb.Workflow:
    return pb.Workflow(
        tasks=[
            pb.WorkflowTask(
                id=t.id,
                type=t.type,
                state=pb.TaskState[t.state.name],
                priority=pb.Priority[t.priority.name],
                depends_on=t.depends_on,
                dependents=t.dependents,
                error=t.error,
            )
            for t in flow.tasks
        ],
        by_state={state.value: n for state, n in flow.by_state.items()},
        complete=flow.complete,
    )


def view_message(view: TaskView) -> pb.Task:
    """The message of a task as a response read it (its large fields cut in Redis)."""
    return task_message(view.task, view.truncated)


def tasks_message(page: Sequence[TaskView], next_cursor: str | None) -> pb.ListTasksResponse:
    """A page of tasks, each as a list reads it (large fields cut: :mod:`taskqueue.api.views`)."""
    return pb.ListTasksResponse(
        tasks=[view_message(v) for v in page], next_cursor=next_cursor or ""
    )


def worker_message(worker: WorkerInfo) -> pb.Worker:
    return pb.Worker(
        id=worker.id,
        host=worker.host,
        pid=worker.pid,
        task_types=dict(worker.task_types),
        concurrency=worker.concurrency,
        in_flight=worker.in_flight,
        started_ms=worker.started_ms,
        last_heartbeat_ms=worker.last_heartbeat_ms,
        processed=worker.processed,
        failed=worker.failed,
    )


def report_message(report: QueueReport) -> pb.QueueStats:
    message = stats_message(report.stats)
    message.served_types = sorted(report.served)
    message.unserved_types = report.unserved
    return message


def stats_message(stats: QueueStats) -> pb.QueueStats:
    return pb.QueueStats(
        by_state={state.value: n for state, n in stats.by_state.items()},
        pending_by_priority={p.value: n for p, n in stats.pending_by_priority.items()},
        pending_by_type=dict(stats.pending_by_type),
        by_state_and_type=[
            pb.StateTypeCount(state=pb.TaskState[state.name], type=task_type, count=n)
            for (state, task_type), n in sorted(stats.by_state_and_type.items())
        ],
        totals=dict(stats.totals),
        held_by_limit=dict(stats.held_by_limit),
        groups=[
            pb.GroupStats(
                type=g.type,
                groups_pending=g.groups_pending,
                groups_active=g.groups_active,
                top=[
                    pb.GroupLoad(group=t.group, pending=t.pending, active=t.active) for t in g.top
                ],
            )
            for g in stats.groups
        ],
    )


def event_message(event: TaskEvent) -> pb.TaskEvent:
    if event.state == "progress":
        return pb.TaskEvent(
            task_id=event.task_id, type=event.type, state=pb.TaskState.ACTIVE, progress=True
        )
    return pb.TaskEvent(
        task_id=event.task_id, type=event.type, state=pb.TaskState[event.state.upper()]
    )


def spec_message(spec: ScheduleSpec) -> pb.ScheduleSpec:
    message = pb.ScheduleSpec(
        name=spec.name,
        type=spec.type,
        payload_json=_json.dumps(spec.payload),
        timezone=spec.timezone,
        missed=pb.MissedPolicy[spec.missed.name],
        priority=pb.Priority.UNSPECIFIED
        if spec.priority is None
        else pb.Priority[Priority(spec.priority).name],
        max_retries=spec.max_retries,
        timeout_seconds=spec.timeout,
    )
    if spec.cron is not None:
        message.cron = spec.cron
    else:
        message.every_seconds = spec.every or 0.0
    return message


def schedule_message(schedule: Schedule, now_ms: int) -> pb.Schedule:
    """``schedule`` with its next ticks after ``now_ms``, as many as a REST document lists."""
    return pb.Schedule(
        spec=spec_message(schedule.spec),
        paused=schedule.paused,
        next_run_ms=schedule.next_run_ms,
        last_tick_ms=schedule.last_tick_ms,
        last_run_ms=schedule.last_run_ms,
        last_task_id=schedule.last_task_id,
        last_task_state=pb.TaskState.UNSPECIFIED
        if schedule.last_task_state is None
        else pb.TaskState[schedule.last_task_state.name],
        last_error=schedule.last_error,
        fired=schedule.fired,
        skipped=schedule.skipped,
        created_ms=schedule.created_ms,
        updated_ms=schedule.updated_ms,
        upcoming_ms=schedules.upcoming(schedule.spec, now_ms, UPCOMING_TICKS),
    )


def schedules_message(
    page: Sequence[Schedule], next_cursor: str | None, now_ms: int
) -> pb.ListSchedulesResponse:
    return pb.ListSchedulesResponse(
        schedules=[schedule_message(s, now_ms) for s in page], next_cursor=next_cursor or ""
    )
