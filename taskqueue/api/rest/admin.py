"""``/api/v1/workers``, ``/queues`` and ``/dead-letters``: what runs, what waits, what failed."""

from __future__ import annotations

from taskqueue.api import views
from taskqueue.api.rest.inputs import NonEmpty, TaskId
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
from taskqueue.api.rest.tasks import CURSOR, LIMIT, TYPE_FILTER, single_document, task_page
from taskqueue.models import TaskState
from taskqueue.wire import (
    Purged,
    QueueStats,
    Requeued,
    Task,
    TaskPage,
    WorkerList,
    report_document,
    worker_document,
)

routes = RouteTable()

DEAD_ID = Param("task_id", TaskId, "The dead task's id.", required=True, converter="task_id")
TYPE_SCOPE = Param("type", NonEmpty, "Only dead tasks of this type (default: all).")


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/workers",
        operation_id="listWorkers",
        summary="List the registered workers",
        description="Workers whose registration has not expired, most recent heartbeat "
        "first; one silent for longer than `dead_after_seconds` is marked `dead` until a "
        "reaper forgets it.",
        tag="workers",
        access=Access.READ,
        replies={200: Reply("The workers.", WorkerList)},
    )
)
async def list_workers(call: Call) -> Response:
    broker = call.api.context.broker
    workers = await broker.workers()
    now, dead_after = broker.clock(), broker.settings.lease_ttl
    documents = [worker_document(w, now_ms=now, dead_after=dead_after) for w in workers]
    return json_response(WorkerList(workers=documents, dead_after_seconds=dead_after))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/queues",
        operation_id="getQueueStats",
        summary="Queue depths and counts",
        description="Tasks per state, ready tasks per priority, live tasks per type and "
        "state, lifetime totals, the task types live workers serve (and those with tasks that "
        "none serves), and the queue policy. One round trip to Redis.",
        tag="queues",
        access=Access.READ,
        replies={200: Reply("The counts.", QueueStats)},
    )
)
async def queue_stats(call: Call) -> Response:
    return json_response(report_document(await call.api.context.broker.queue_report()))


@routes.add(
    Operation(
        method="GET",
        path=f"{API_PREFIX}/dead-letters",
        operation_id="listDeadLetters",
        summary="List dead-lettered tasks",
        description="Tasks that failed their last attempt, newest first.",
        tag="dead-letters",
        access=Access.READ,
        query=(TYPE_FILTER, LIMIT, CURSOR),
        replies={
            200: Reply(
                "One page of dead tasks, large fields cut (see `limit`): at most "
                f"{views.MAX_LIST_BYTES // 10**6} MB.",
                TaskPage,
            )
        },
    )
)
async def list_dead(call: Call) -> Response:
    return await task_page(call, TaskState.DEAD)


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/dead-letters/{{task_id}}/requeue",
        operation_id="requeueDeadLetter",
        summary="Requeue one dead task",
        description="Gives the task a fresh set of attempts and queues it again.",
        tag="dead-letters",
        access=Access.WRITE,
        path_params=(DEAD_ID,),
        replies={200: Reply("The task, pending again.", Task)},
        errors={404: "No task has this id.", 409: "The task is not dead."},
    )
)
async def requeue_one(call: Call) -> Response:
    broker = call.api.context.broker
    await broker.requeue_dead(call.path["task_id"])
    return json_response(await single_document(call, call.path["task_id"]))


@routes.add(
    Operation(
        method="POST",
        path=f"{API_PREFIX}/dead-letters/requeue",
        operation_id="requeueDeadLetters",
        summary="Requeue every dead task (of one type)",
        tag="dead-letters",
        access=Access.WRITE,
        query=(TYPE_SCOPE,),
        replies={200: Reply("How many were requeued.", Requeued)},
    )
)
async def requeue_all(call: Call) -> Response:
    count = await call.api.context.broker.requeue_all_dead(call.query.get("type"))
    return json_response(Requeued(requeued=count))


@routes.add(
    Operation(
        method="DELETE",
        path=f"{API_PREFIX}/dead-letters",
        operation_id="purgeDeadLetters",
        summary="Delete every dead task (of one type)",
        tag="dead-letters",
        access=Access.WRITE,
        query=(TYPE_SCOPE,),
        replies={200: Reply("How many were deleted.", Purged)},
    )
)
async def purge(call: Call) -> Response:
    count = await call.api.context.broker.purge_dead(call.query.get("type"))
    return json_response(Purged(purged=count))
