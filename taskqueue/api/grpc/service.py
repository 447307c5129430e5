"""The ``taskqueue.v1.TaskQueue`` service: each method one broker call (or an event watch).

Errors are raised, never turned into statuses here: the dispatcher maps them through
:func:`taskqueue.api.errors.api_error`, the mapping the REST API uses too. The only care taken
here is that an invalid field is named as the request names it (``timeout_seconds``, not the
broker's ``timeout``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from taskqueue import tracing
from taskqueue.api import views
from taskqueue.api.events import EventHub
from taskqueue.api.grpc import convert, fastpath, offload
from taskqueue.api.grpc.context import current_call
from taskqueue.api.grpc.dispatcher import Access, WireMethod
from taskqueue.api.grpc.gen.taskqueue import v1 as pb
from taskqueue.api.patches.betterproto_streams import ClosingStreams
from taskqueue.broker import Broker, Submission, task_type_problem
from taskqueue.broker.model import BULK_CANCEL_STATES
from taskqueue.errors import InvalidTaskError
from taskqueue.models import TaskState
from taskqueue.schedules import ScheduleSpec

#: Methods that change tasks, policy or schedules; they need a token with write scope.
WRITE_METHODS = frozenset(
    {
        "SubmitTask",
        "SubmitTasks",
        "CancelTask",
        "RequeueDeadLetters",
        "PurgeDeadLetters",
        "CancelTasks",
        "PurgeTasks",
        "SetPolicy",
        "CreateSchedule",
        "PutSchedule",
        "PauseSchedule",
        "ResumeSchedule",
        "DeleteSchedule",
    }
)


def access(method: str) -> Access:
    return Access.WRITE if method in WRITE_METHODS else Access.READ


class TaskQueueService(ClosingStreams, pb.TaskQueueBase):
    def __init__(self, broker: Broker, events: EventHub) -> None:
        self.broker = broker
        self.events = events

    async def submit_task(self, request: pb.SubmitTaskRequest) -> pb.SubmitTaskResponse:
        try:
            call = current_call()
            submission = convert.submission(request, call.get("idempotency-key"))
            with tracing.sending((submission,), call.get) as traced:
                submitted = await self.broker.enqueue(traced[0])
        except InvalidTaskError as exc:
            raise convert.request_field(exc) from None
        return convert.submitted_message(submitted)

    async def submit_tasks(self, request: pb.SubmitTasksRequest) -> pb.SubmitTasksResponse:
        try:
            with tracing.sending(convert.submissions(request), current_call().get) as batch:
                submitted = await self.broker.enqueue_many(batch)
        except InvalidTaskError as exc:
            raise convert.request_field(exc) from None
        return pb.SubmitTasksResponse(results=[convert.submitted_message(s) for s in submitted])

    def wire_methods(self) -> Mapping[str, WireMethod]:
        """SubmitTasks's fast path (:mod:`~taskqueue.api.grpc.fastpath`), for the dispatcher;
        not taken by a subclass that overrides :meth:`submit_tasks`."""
        if type(self).submit_tasks is not TaskQueueService.submit_tasks:
            return {}
        return {
            "/taskqueue.v1.TaskQueue/SubmitTasks": WireMethod(
                fastpath.submissions, self._submit_tasks_wire
            )
        }

    async def _submit_tasks_wire(self, batch: list[Submission]) -> bytes:
        """:meth:`submit_tasks` of a batch already converted, answered in bytes."""
        try:
            with tracing.sending(batch, current_call().get) as traced:
                submitted = await self.broker.enqueue_many(traced)
        except InvalidTaskError as exc:
            raise convert.request_field(exc) from None
        return fastpath.submitted_bytes(submitted)

    async def get_task(self, request: pb.GetTaskRequest) -> pb.Task:
        task_id = convert.required(request.id, "id")
        return convert.view_message(
            await self.broker.view(task_id, self.broker.settings.max_payload_bytes)
        )

    async def get_workflow(self, request: pb.GetWorkflowRequest) -> pb.Workflow:
        task_id = convert.required(request.id, "id")
        return convert.workflow_message(await self.broker.workflow(task_id))

    async def list_tasks(self, request: pb.ListTasksRequest) -> pb.ListTasksResponse:
        page = await self.broker.list_views(
            convert.state_of(request.state),
            cut_at=views.LIST_FIELD_BYTES,
            task_type=request.type or None,
            limit=convert.page_limit(request.limit),
            cursor=request.cursor or None,
        )
        return await offload.build(convert.tasks_message, page.items, page.next_cursor)

    async def cancel_task(self, request: pb.CancelTaskRequest) -> pb.CancelTaskResponse:
        outcome = await self.broker.cancel(convert.required(request.id, "id"))
        return pb.CancelTaskResponse(
            outcome=pb.CancelTaskResponseOutcome.OUTCOME_CANCELLED
            if outcome == "cancelled"
            else pb.CancelTaskResponseOutcome.OUTCOME_REQUESTED
        )

    async def list_workers(self, request: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        workers = await self.broker.workers()
        return pb.ListWorkersResponse(workers=[convert.worker_message(w) for w in workers])

    async def get_queue_stats(self, request: pb.GetQueueStatsRequest) -> pb.QueueStats:
        return convert.report_message(await self.broker.queue_report())

    async def list_dead_letters(self, request: pb.ListDeadLettersRequest) -> pb.ListTasksResponse:
        page = await self.broker.list_views(
            TaskState.DEAD,
            cut_at=views.LIST_FIELD_BYTES,
            task_type=request.type or None,
            limit=convert.page_limit(request.limit),
            cursor=request.cursor or None,
        )
        return await offload.build(convert.tasks_message, page.items, page.next_cursor)

    async def requeue_dead_letters(
        self, request: pb.RequeueDeadLettersRequest
    ) -> pb.RequeueDeadLettersResponse:
        if request.id:
            if request.type:
                raise InvalidTaskError("give id or type, not both", field="type")
            await self.broker.requeue_dead(request.id)
            return pb.RequeueDeadLettersResponse(requeued=1)
        requeued = await self.broker.requeue_all_dead(request.type or None)
        return pb.RequeueDeadLettersResponse(requeued=requeued)

    async def purge_dead_letters(
        self, request: pb.PurgeDeadLettersRequest
    ) -> pb.PurgeDeadLettersResponse:
        return pb.PurgeDeadLettersResponse(
            purged=await self.broker.purge_dead(request.type or None)
        )

    async def cancel_tasks(self, request: pb.CancelTasksRequest) -> pb.CancelTasksResponse:
        states = [convert.state_of(s, field="states") for s in request.states]
        cancellation = await self.broker.cancel_all(
            convert.required(request.type, "type"),
            states=states or BULK_CANCEL_STATES,
            include_active=request.include_active,
        )
        return pb.CancelTasksResponse(
            cancelled=cancellation.cancelled,
            pending=cancellation.by_state.get(TaskState.PENDING, 0),
            scheduled=cancellation.by_state.get(TaskState.SCHEDULED, 0),
            requested=cancellation.requested,
        )

    async def purge_tasks(self, request: pb.PurgeTasksRequest) -> pb.PurgeTasksResponse:
        purged = await self.broker.purge(convert.state_of(request.state), request.type or None)
        return pb.PurgeTasksResponse(purged=purged)

    async def get_policy(self, request: pb.GetPolicyRequest) -> pb.PolicyScope:
        task_type = _policy_type(request.type)
        return convert.policy_scope_message(await self.broker.policy(), task_type)

    async def set_policy(self, request: pb.SetPolicyRequest) -> pb.PolicyScope:
        """Replaces the scope's live layer: what ``live`` leaves unset is unset."""
        task_type = _policy_type(request.type)
        await self.broker.set_policy(
            convert.policy(request.live or pb.Policy()), task_type, replace=True
        )
        return convert.policy_scope_message(await self.broker.policy(), task_type)

    async def create_schedule(self, request: pb.CreateScheduleRequest) -> pb.Schedule:
        """Create-only, as REST's POST: a taken name is FAILED_PRECONDITION."""
        spec = convert.schedule_spec(request.spec)
        await self._put_schedule(spec, create_only=True)
        return await self._schedule(spec.name)

    async def put_schedule(self, request: pb.PutScheduleRequest) -> pb.PutScheduleResponse:
        """Creates or replaces, as REST's PUT: a replaced schedule keeps its state."""
        spec = convert.schedule_spec(request.spec)
        outcome = await self._put_schedule(spec, create_only=False)
        return pb.PutScheduleResponse(
            schedule=await self._schedule(spec.name), created=outcome == "created"
        )

    async def get_schedule(self, request: pb.GetScheduleRequest) -> pb.Schedule:
        return await self._schedule(convert.schedule_name(request.name))

    async def list_schedules(self, request: pb.ListSchedulesRequest) -> pb.ListSchedulesResponse:
        page = await self.broker.schedules(
            cursor=request.cursor or None, limit=convert.page_limit(request.limit)
        )
        return await offload.build(
            convert.schedules_message, page.items, page.next_cursor, self.broker.clock()
        )

    async def pause_schedule(self, request: pb.PauseScheduleRequest) -> pb.Schedule:
        name = convert.schedule_name(request.name)
        await self.broker.pause_schedule(name)
        return await self._schedule(name)

    async def resume_schedule(self, request: pb.ResumeScheduleRequest) -> pb.Schedule:
        name = convert.schedule_name(request.name)
        await self.broker.pause_schedule(name, paused=False)
        return await self._schedule(name)

    async def delete_schedule(self, request: pb.DeleteScheduleRequest) -> pb.DeleteScheduleResponse:
        await self.broker.delete_schedule(convert.schedule_name(request.name))
        return pb.DeleteScheduleResponse()

    async def _put_schedule(self, spec: ScheduleSpec, *, create_only: bool) -> str:
        try:
            return await self.broker.put_schedule(spec, create_only=create_only)
        except InvalidTaskError as exc:  # the payload's size, checked by the broker
            raise convert.spec_field(exc, "spec") from None

    async def _schedule(self, name: str) -> pb.Schedule:
        """The schedule as it is now, with its next ticks from now, as REST documents it."""
        return convert.schedule_message(await self.broker.schedule(name), self.broker.clock())

    async def watch_tasks(self, request: pb.WatchTasksRequest) -> AsyncIterator[pb.TaskEvent]:
        """Events from now on. The call ends only from outside: the client cancels, the
        deadline passes, or the daemon shuts down (the dispatcher cancels this generator)."""
        async with self.events.watch(
            task_id=request.task_id or None, task_type=request.type or None
        ) as events:
            async for event in events:
                yield convert.event_message(event)


def _policy_type(task_type: str) -> str | None:
    """A policy request's scope: a valid task type, or (empty) the global policy."""
    if task_type and (problem := task_type_problem(task_type)) is not None:
        raise InvalidTaskError(problem, field="type")
    return task_type or None
