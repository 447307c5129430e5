"""``/api/v1/tasks``: submit, read, list and cancel tasks."""

from __future__ import annotations

from typing import Any

from quart_trio.wrappers import TrioResponse

from taskqueue.api.rest.routing import (
    API_PREFIX,
    TASK_ID_PATTERN,
    Access,
    Call,
    Operation,
    Param,
    Reply,
    RouteTable,
    json_response,
)
from taskqueue.api.rest.schema import (
    DEFAULT_PAGE,
    IDEMPOTENCY_KEY,
    MAX_PAGE,
    STATE,
    Schema,
    invalid,
    parse_datetime,
    ref,
)
from taskqueue.broker import Submission
from taskqueue.errors import InvalidTaskError
from taskqueue.models import TaskState
from taskqueue.wire import submitted_json, task_json

routes = RouteTable()

TASK_ID_SCHEMA: Schema = {
    "type": "string",
    "format": "uuid",
    "pattern": f"^{TASK_ID_PATTERN}$",
    "description": "A UUIDv7, as the server gives it.",
}
TASK_ID = Param("task_id", TASK_ID_SCHEMA, "The task's id.", required=True, converter="task_id")
TYPE_FILTER = Param("type", {"type": "string", "minLength": 1}, "Only tasks of this type.")
LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    "Page size.",
)
CURSOR = Param(
    "cursor",
    {"type": "string", "minLength": 1},
    "The `next_cursor` of the previous page; omit for the first page.",
)
_NOT_FOUND = "No task has this id (it never existed, or its record expired)."


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/tasks",
        operation_id="submitTask",
        summary="Submit a task",
        description="Queues one task. With an idempotency key (in the body or the "
        "`Idempotency-Key` header) a repeat within the window returns the first task, "
        "with status 200 instead of 201.",
        tag="tasks",
        access=Access.WRITE,
        headers=(
            Param("Idempotency-Key", IDEMPOTENCY_KEY, "Same as the body's `idempotency_key`."),
        ),
        body=ref("Submission"),
        replies={
            201: Reply("The new task.", ref("Task"), headers={"Location": "The task's URL."}),
            200: Reply("An earlier task with the same idempotency key.", ref("Task")),
        },
        errors={429: "The task type's queue is over `task.max_queue_depth`; retry later."},
    )
)
async def submit_task(call: Call) -> TrioResponse:
    body: dict[str, Any] = call.body
    header_key = call.headers.get("Idempotency-Key")
    body_key = body.get("idempotency_key")
    if header_key is not None and body_key is not None and header_key != body_key:
        raise invalid("idempotency_key", "differs from the Idempotency-Key header")
    if header_key is not None:
        body = {**body, "idempotency_key": header_key}
    broker = call.api.context.broker
    submitted = await broker.enqueue(submission(body))
    task = await broker.get(submitted.id)
    if not submitted.created:
        return json_response(task_json(task), 200)
    return json_response(
        task_json(task), 201, headers={"Location": f"{API_PREFIX}/tasks/{task.id}"}
    )


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/tasks/batch",
        operation_id="submitTasks",
        summary="Submit many tasks at once",
        description="Queues all the tasks in one atomic step (one round trip to Redis), or "
        "none of them: the first invalid one is named in the error (`tasks.<index>.<field>`). "
        "201 when at least one task is new, 200 when every one matched an idempotency key.",
        tag="tasks",
        access=Access.WRITE,
        body=ref("SubmissionBatch"),
        replies={
            201: Reply("The tasks, in the order submitted.", ref("BatchResult")),
            200: Reply("Every task matched an earlier idempotency key.", ref("BatchResult")),
        },
        errors={429: "A task type's queue would exceed `task.max_queue_depth`; retry later."},
    )
)
async def submit_tasks(call: Call) -> TrioResponse:
    submissions = [submission(item) for item in call.body["tasks"]]
    try:
        results = await call.api.context.broker.enqueue_many(submissions)
    except InvalidTaskError as exc:
        field = f"tasks.{exc.field}" if exc.field else "tasks"
        raise type(exc)(str(exc), field=field) from None
    status = 201 if any(r.created for r in results) else 200
    return json_response({"tasks": [submitted_json(r) for r in results]}, status)


def submission(body: dict[str, Any]) -> Submission:
    """A validated ``Submission`` body as the broker takes it."""
    eta: Any = body.get("eta")  # epoch seconds, or RFC 3339 text
    if isinstance(eta, str):
        eta = parse_datetime(eta)  # the schema has checked that it parses
    return Submission(
        type=body["type"],
        payload=body.get("payload"),
        priority=body.get("priority"),  # unset: the task type's default
        max_retries=body.get("max_retries"),
        timeout=body.get("timeout"),
        delay=body.get("delay"),
        eta=eta,
        idempotency_key=body.get("idempotency_key"),
    )


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/tasks/{{task_id}}",
        operation_id="getTask",
        summary="Get a task",
        tag="tasks",
        access=Access.READ,
        path_params=(TASK_ID,),
        replies={200: Reply("The task.", ref("Task"))},
        errors={404: _NOT_FOUND},
    )
)
async def get_task(call: Call) -> TrioResponse:
    task = await call.api.context.broker.get(call.path["task_id"])
    return json_response(task_json(task))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/tasks",
        operation_id="listTasks",
        summary="List the tasks in one state",
        description="Pending tasks come by priority then oldest first; scheduled by start "
        "time; active by lease deadline; finished ones newest first.",
        tag="tasks",
        access=Access.READ,
        query=(
            Param("state", {**STATE, "default": TaskState.PENDING.value}, "Tasks in this state."),
            TYPE_FILTER,
            LIMIT,
            CURSOR,
        ),
        replies={200: Reply("One page of tasks.", ref("TaskPage"))},
    )
)
async def list_tasks(call: Call) -> TrioResponse:
    return await task_page(call, TaskState(call.query.get("state", TaskState.PENDING.value)))


async def task_page(call: Call, state: TaskState) -> TrioResponse:
    """One page of the tasks in ``state``, as the ``type``, ``limit`` and ``cursor`` query
    parameters ask (shared by ``/tasks`` and ``/dead-letters``)."""
    q = call.query
    page = await call.api.context.broker.list_tasks(
        state, task_type=q.get("type"), limit=q.get("limit", DEFAULT_PAGE), cursor=q.get("cursor")
    )
    return json_response(
        {"tasks": [task_json(t) for t in page.items], "next_cursor": page.next_cursor}
    )


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/tasks/{{task_id}}/cancel",
        operation_id="cancelTask",
        summary="Cancel a task",
        description="A waiting task is cancelled at once (200). A running one is asked to "
        "stop (202): its worker interrupts it and it ends `cancelled`.",
        tag="tasks",
        access=Access.WRITE,
        path_params=(TASK_ID,),
        replies={
            200: Reply("Cancelled.", ref("Task")),
            202: Reply("Running: cancellation requested.", ref("Task")),
        },
        errors={404: _NOT_FOUND, 409: "The task has already ended."},
    )
)
async def cancel_task(call: Call) -> TrioResponse:
    broker = call.api.context.broker
    outcome = await broker.cancel(call.path["task_id"])
    task = await broker.get(call.path["task_id"])
    return json_response(task_json(task), 200 if outcome == "cancelled" else 202)
