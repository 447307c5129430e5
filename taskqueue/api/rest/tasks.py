"""``/api/v1/tasks``: submit, read, list and cancel tasks."""

from __future__ import annotations

from taskqueue import tracing
from taskqueue.api import views
from taskqueue.api.rest.inputs import NonEmpty, PageSize, TaskId
from taskqueue.api.rest.routing import (
    API_PREFIX,
    Access,
    Call,
    Operation,
    Param,
    Reply,
    RouteTable,
    json_response,
)
from taskqueue.api.rest.send import Response
from taskqueue.broker.model import BULK_CANCEL_STATES
from taskqueue.errors import InvalidTaskError
from taskqueue.models import (
    DEFAULT_PAGE,
    MAX_PAGE,
    IdempotencyKey,
    TaskState,
    TaskType,
    Workflow,
)
from taskqueue.wire import (
    BatchResult,
    BulkCancel,
    Submission,
    SubmissionBatch,
    SubmittedTask,
    Task,
    TaskPage,
    TasksCancelled,
    TasksPurged,
    cancelled_document,
    submitted_task_document,
    view_document,
)

routes = RouteTable()

TASK_ID = Param("task_id", TaskId, "The task's id.", required=True, converter="task_id")
TYPE_FILTER = Param("type", NonEmpty, "Only tasks of this type.")
LIMIT = Param(
    "limit",
    PageSize,
    f"Page size (at most {MAX_PAGE}). A page is bounded by bytes too: each task's "
    f"`payload`, `result`, `progress`, `error` and `traceback` over {views.LIST_FIELD_BYTES} "
    "bytes is cut and named in its `truncated`, so one listed task is at most "
    f"{views.LISTED_TASK_BYTES // 1024} KiB and a page at most "
    f"{views.MAX_LIST_BYTES // 10**6} MB; fetch a task alone to read it whole.",
    default=DEFAULT_PAGE,
)
CURSOR = Param(
    "cursor", NonEmpty, "The `next_cursor` of the previous page; omit for the first page."
)
_NOT_FOUND = "No task has this id (it never existed, or its record expired)."
_UNSERVED = (
    "A field is invalid; or no live worker serves the task type and the policy's "
    "`refuse_unserved` refuses it (the problem's `field` is `type`)."
)


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
            Param(
                "Idempotency-Key", IdempotencyKey, "The body's key, as a header.", body_field=True
            ),
        ),
        body=Submission,
        replies={
            201: Reply("The new task.", SubmittedTask, headers={"Location": "The task's URL."}),
            200: Reply("An earlier task with the same idempotency key.", SubmittedTask),
        },
        errors={
            422: _UNSERVED,
            429: "The task type's queue is over its policy's `max_queue_depth`, or a type "
            "without tasks would exceed `max_task_types`; retry later.",
        },
    )
)
async def submit_task(call: Call) -> Response:
    broker = call.api.context.broker
    with tracing.sending((call.body,), call.headers.get) as (submission,):
        submitted, view = await broker.enqueue_and_view(
            submission, broker.settings.max_payload_bytes
        )
    task = submitted_task_document(view, submitted)
    if not submitted.created:
        return json_response(task, 200)
    return json_response(task, 201, headers={"Location": f"{API_PREFIX}/tasks/{task.id}"})


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
        body=SubmissionBatch,
        replies={
            201: Reply("The tasks, in the order submitted.", BatchResult),
            200: Reply("Every task matched an earlier idempotency key.", BatchResult),
        },
        errors={
            422: _UNSERVED,
            429: "A task type's queue would exceed its policy's `max_queue_depth`, or the "
            "batch's types `max_task_types`; retry later.",
        },
    )
)
async def submit_tasks(call: Call) -> Response:
    batch: SubmissionBatch = call.body
    try:
        with tracing.sending(batch.tasks, call.headers.get) as submissions:
            results = await call.api.context.broker.enqueue_many(submissions)
    except InvalidTaskError as exc:
        field = f"tasks.{exc.field}" if exc.field else "tasks"
        raise type(exc)(str(exc), field=field) from None
    status = 201 if any(r.created for r in results) else 200
    return json_response(BatchResult(tasks=results), status)


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/tasks/{{task_id}}",
        operation_id="getTask",
        summary="Get a task",
        tag="tasks",
        access=Access.READ,
        path_params=(TASK_ID,),
        replies={
            200: Reply(
                "The task, whole (a result, progress, error or traceback longer than the "
                "payload limit, `task.max_payload_bytes`, is cut and named in `truncated`).",
                Task,
            )
        },
        errors={404: _NOT_FOUND},
    )
)
async def get_task(call: Call) -> Response:
    return json_response(await single_document(call, call.path["task_id"]))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/tasks/{{task_id}}/workflow",
        operation_id="getWorkflow",
        summary="Get the workflow a task belongs to",
        description="Every task linked to this one through `depends_on` and `dependents`, "
        "read at one moment: each one's state and links, and how many are in each state.",
        tag="tasks",
        access=Access.READ,
        path_params=(TASK_ID,),
        replies={200: Reply("The workflow, this task first.", Workflow)},
        errors={404: _NOT_FOUND},
    )
)
async def get_workflow(call: Call) -> Response:
    return json_response(await call.api.context.broker.workflow(call.path["task_id"]))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/tasks/by-idempotency-key",
        operation_id="getTaskByIdempotencyKey",
        summary="Get the task an idempotency key maps to",
        description="The task a submission with this key created, as `getTask` returns it, "
        "while the key's window (`idempotency_window`) lasts and the task's record exists.",
        tag="tasks",
        access=Access.READ,
        query=(Param("key", IdempotencyKey, "The idempotency key.", required=True),),
        replies={200: Reply("The task, whole (as `getTask` gives it).", Task)},
        errors={
            404: "No task has this key: it was never used, its window passed, or its task's "
            "record expired."
        },
    )
)
async def get_task_by_key(call: Call) -> Response:
    broker = call.api.context.broker
    view = await broker.view_by_key(call.query["key"], broker.settings.max_payload_bytes)
    return json_response(view_document(view))


async def single_document(call: Call, task_id: str) -> Task:
    """One task's document: whole up to the submit limit (see :mod:`taskqueue.api.views`)."""
    broker = call.api.context.broker
    return view_document(await broker.view(task_id, broker.settings.max_payload_bytes))


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
            Param("state", TaskState, "Tasks in this state.", default=TaskState.PENDING),
            TYPE_FILTER,
            LIMIT,
            CURSOR,
        ),
        replies={
            200: Reply(
                "One page of tasks, large fields cut (see `limit`): at most "
                f"{views.MAX_LIST_BYTES // 10**6} MB.",
                TaskPage,
            )
        },
    )
)
async def list_tasks(call: Call) -> Response:
    return await task_page(call, call.query["state"])


async def task_page(call: Call, state: TaskState) -> Response:
    """One page of the tasks in ``state``, as the ``type``, ``limit`` and ``cursor`` query
    parameters ask (shared by ``/tasks`` and ``/dead-letters``)."""
    q = call.query
    page = await call.api.context.broker.list_views(
        state,
        cut_at=views.LIST_FIELD_BYTES,
        task_type=q.get("type"),
        limit=q["limit"],
        cursor=q.get("cursor"),
    )
    tasks = [view_document(v) for v in page.items]
    return json_response(TaskPage(tasks=tasks, next_cursor=page.next_cursor))


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
            200: Reply("Cancelled.", Task),
            202: Reply("Running: cancellation requested.", Task),
        },
        errors={404: _NOT_FOUND, 409: "The task has already ended."},
    )
)
async def cancel_task(call: Call) -> Response:
    broker = call.api.context.broker
    outcome = await broker.cancel(call.path["task_id"])
    task = await single_document(call, call.path["task_id"])
    return json_response(task, 200 if outcome == "cancelled" else 202)


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/tasks/cancel",
        operation_id="cancelTasks",
        summary="Cancel every waiting task of a type",
        description="Cancels the type's blocked, pending and scheduled tasks (or those of the "
        "`states` given) as `cancelTask` cancels one, a thousand per step so Redis serves others "
        "in between; with `include_active`, asks the workers of its running tasks to stop them. "
        "A task submitted meanwhile may or may not be cancelled.",
        tag="tasks",
        access=Access.WRITE,
        body=BulkCancel,
        replies={200: Reply("How many were cancelled, and stop requests sent.", TasksCancelled)},
        errors={422: "An unknown field, an invalid type, or a state that does not wait."},
    )
)
async def cancel_tasks(call: Call) -> Response:
    request: BulkCancel = call.body
    cancellation = await call.api.context.broker.cancel_all(
        request.type,
        states=BULK_CANCEL_STATES if request.states is None else request.states,
        include_active=request.include_active,
    )
    return json_response(cancelled_document(cancellation))


@routes.add(
    Operation(
        method="DELETE",
        path=f"{API_PREFIX}/tasks",
        operation_id="purgeTasks",
        summary="Delete every finished task in one state (of one type)",
        description="Deletes the records of the `succeeded`, `cancelled`, `expired` or `dead` "
        "tasks (of `type`, if given) for good, as retention would once they expire; `dead` is "
        "the dead-letter queue's purge.",
        tag="tasks",
        access=Access.WRITE,
        query=(
            Param("state", TaskState, "Finished tasks in this state.", required=True),
            Param("type", TaskType, "Only tasks of this type."),
        ),
        replies={200: Reply("How many were deleted.", TasksPurged)},
        errors={422: "No state, an unknown one, one that has not finished, or an invalid type."},
    )
)
async def purge_tasks(call: Call) -> Response:
    state, task_type = call.query["state"], call.query.get("type")
    purged = await call.api.context.broker.purge(state, task_type)
    return json_response(TasksPurged(state=state, type=task_type, purged=purged))
