"""What an operator's tools do with a queue, whichever way they reach it.

:class:`taskqueue.Client` satisfies :class:`Operator` over Redis (the fast path, inside the
network) and :class:`taskqueue.rest_client.RestClient` over the REST API (for operators who
hold a bearer token but no Redis route). The ``taskqueue`` command's tools are written once,
against this interface, and run over either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self

from taskqueue.broker import (
    BulkCancellation,
    CancelOutcome,
    Page,
    PolicyView,
    QueueReport,
    Submission,
    Submitted,
)
from taskqueue.models import QueueStats, Task, TaskState, WorkerInfo, Workflow
from taskqueue.schedules import Schedule, ScheduleSpec

__all__ = ["Operator"]


class Operator(Protocol):
    """Reading and steering one taskqueue namespace. Errors are taskqueue's own:
    :class:`~taskqueue.TaskNotFoundError`, :class:`~taskqueue.ConflictingStateError`,
    :class:`~taskqueue.InvalidTaskError`, :class:`~taskqueue.QueueFullError`..."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def submit_many(
        self, submissions: Iterable[Submission], *, strict: bool = False
    ) -> list[Submitted]: ...

    async def served_types(self) -> frozenset[str]: ...

    async def get(self, task_id: str) -> Task: ...

    async def workflow(self, task_id: str) -> Workflow: ...

    async def wait(self, task_id: str, *, timeout: float | None = None) -> Task: ...  # noqa: ASYNC109

    async def list_tasks(
        self,
        state: TaskState | str,
        *,
        task_type: str | None = None,
        limit: int = ...,
        cursor: str | None = None,
    ) -> Page[Task]: ...

    async def stats(self) -> QueueStats: ...

    async def queue_report(self) -> QueueReport: ...

    async def workers(self) -> list[WorkerInfo]: ...

    async def cancel(self, task_id: str) -> CancelOutcome: ...

    async def cancel_all(
        self,
        task_type: str,
        *,
        states: Iterable[TaskState | str] | None = None,
        include_active: bool = False,
    ) -> BulkCancellation: ...

    async def purge(self, state: TaskState | str, task_type: str | None = None) -> int: ...

    async def dead_letters(
        self, *, task_type: str | None = None, limit: int = ..., cursor: str | None = None
    ) -> Page[Task]: ...

    async def requeue(self, task_id: str) -> None: ...

    async def requeue_all(self, task_type: str | None = None) -> int: ...

    async def purge_dead(self, task_type: str | None = None) -> int: ...

    async def policy(self) -> PolicyView: ...

    async def set_policy(self, task_type: str | None = None, **settings: Any) -> None: ...

    async def unset_policy(self, *names: str, task_type: str | None = None) -> None: ...

    async def put_schedule(
        self, spec: ScheduleSpec | Mapping[str, Any], *, create_only: bool = False
    ) -> Schedule: ...

    async def schedule(self, name: str) -> Schedule: ...

    async def schedules(self, *, limit: int = ..., cursor: str | None = None) -> Page[Schedule]: ...

    async def pause_schedule(self, name: str) -> Schedule: ...

    async def resume_schedule(self, name: str) -> Schedule: ...

    async def delete_schedule(self, name: str) -> None: ...
