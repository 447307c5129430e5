"""The one place that converts tasks and worker records to and from their Redis form.

A task is a Redis hash whose fields are the :class:`~taskqueue.models.Task` attributes;
times are integer milliseconds, payload/result/progress are JSON text, and empty strings stand
for "none" (Redis hashes have no null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from taskqueue import _json
from taskqueue.models import ClaimedTask, Priority, Task, TaskState, WorkerInfo

#: Claim replies carry these fields per task, in this order (see claim.lua).
CLAIM_FIELDS = 8


def _opt_int(value: str | None) -> int | None:
    return int(value) if value else None


def _opt_json(value: str | None) -> Any:
    return _json.loads(value) if value else None


def task_from_hash(fields: Mapping[str, str]) -> Task:
    """The task stored in ``fields`` (an HGETALL reply)."""
    return Task(
        id=fields["id"],
        type=fields["type"],
        priority=Priority(fields["priority"]),
        payload=_opt_json(fields.get("payload")),
        state=TaskState(fields["state"]),
        attempt=int(fields.get("attempt") or 0),
        max_retries=int(fields["max_retries"]),
        timeout_ms=int(fields["timeout_ms"]),
        created_ms=int(fields["created_ms"]),
        ready_ms=int(fields.get("ready_ms") or 0),
        started_ms=_opt_int(fields.get("started_ms")),
        finished_ms=_opt_int(fields.get("finished_ms")),
        result=_opt_json(fields.get("result")),
        error=fields.get("error") or None,
        traceback=fields.get("traceback") or None,
        idempotency_key=fields.get("idempotency_key") or None,
        worker_id=fields.get("worker_id") or None,
        cancel_requested=fields.get("cancel_requested") == "1",
        progress=_opt_json(fields.get("progress")),
    )


def claimed_from_reply(reply: list[Any], started_ms: int) -> list[ClaimedTask]:
    """The tasks of a claim.lua reply (a flat list, :data:`CLAIM_FIELDS` per task)."""
    loads = _json.loads
    return [
        ClaimedTask(
            id=reply[i],
            type=reply[i + 1],
            priority=Priority(reply[i + 2]),
            payload=loads(reply[i + 3]),
            attempt=reply[i + 4],
            max_retries=int(reply[i + 5]),
            timeout_ms=int(reply[i + 6]),
            ready_ms=int(reply[i + 7]),
            started_ms=started_ms,
        )
        for i in range(0, len(reply), CLAIM_FIELDS)
    ]


def worker_to_json(worker: WorkerInfo) -> str:
    return _json.dumps(
        {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "task_types": worker.task_types,
            "concurrency": worker.concurrency,
            "in_flight": worker.in_flight,
            "started_ms": worker.started_ms,
            "processed": worker.processed,
            "failed": worker.failed,
        }
    )


def worker_from_hash(fields: Mapping[str, str]) -> WorkerInfo:
    info = _json.loads(fields["info"])
    return WorkerInfo(
        id=info["id"],
        host=info["host"],
        pid=info["pid"],
        task_types=info["task_types"],
        concurrency=info["concurrency"],
        in_flight=info["in_flight"],
        started_ms=info["started_ms"],
        last_heartbeat_ms=int(fields["last_heartbeat_ms"]),
        processed=info.get("processed", 0),
        failed=info.get("failed", 0),
    )


@attrs.frozen
class TaskEvent:
    """One change of a task's state, as the scripts publish it on the events channel.

    ``state`` is a :class:`~taskqueue.models.TaskState` value, or ``"progress"`` when a
    running task reported progress.
    """

    id: str
    type: str
    state: str

    @property
    def is_end(self) -> bool:
        """The task reached a terminal state (succeeded, dead or cancelled)."""
        return self.state in _TERMINAL


_TERMINAL = frozenset(s.value for s in TaskState if s.is_terminal)


def events_from_message(data: str) -> list[TaskEvent]:
    """The events of one message on the events channel (a JSON list of triples)."""
    return [TaskEvent(task_id, task_type, state) for task_id, task_type, state in _json.loads(data)]
