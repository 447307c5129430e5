"""How the data model looks as JSON: the REST API's documents (the schemas of
:mod:`taskqueue.api.rest.schema`) and the ``taskqueue`` command's ``--json`` output.

Kept out of the REST package so the command line need not import the web stack to use it.

Times stay Unix epoch milliseconds, as stored, so nothing is lost or rounded; each is repeated
as an RFC 3339 string for people and for clients that parse dates anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskqueue.broker import Submitted
from taskqueue.models import QueueStats, Task, WorkerInfo


def iso(ms: int | None) -> str | None:
    """``ms`` (epoch milliseconds) as RFC 3339 UTC with milliseconds, e.g. ``…T12:00:00.250Z``."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "type": task.type,
        "priority": task.priority.value,
        "state": task.state.value,
        "payload": task.payload,
        "attempt": task.attempt,
        "max_retries": task.max_retries,
        "attempts_left": task.attempts_left,
        "timeout_ms": task.timeout_ms,
        "created_ms": task.created_ms,
        "created_at": iso(task.created_ms),
        "ready_ms": task.ready_ms,
        "ready_at": iso(task.ready_ms),
        "started_ms": task.started_ms,
        "started_at": iso(task.started_ms),
        "finished_ms": task.finished_ms,
        "finished_at": iso(task.finished_ms),
        "result": task.result,
        "error": task.error,
        "traceback": task.traceback,
        "idempotency_key": task.idempotency_key,
        "worker_id": task.worker_id,
        "cancel_requested": task.cancel_requested,
        "progress": task.progress,
    }


def submitted_json(submitted: Submitted) -> dict[str, Any]:
    return {"id": submitted.id, "state": submitted.state.value, "created": submitted.created}


def worker_json(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "task_types": dict(worker.task_types),
        "concurrency": worker.concurrency,
        "in_flight": worker.in_flight,
        "processed": worker.processed,
        "failed": worker.failed,
        "started_ms": worker.started_ms,
        "started_at": iso(worker.started_ms),
        "last_heartbeat_ms": worker.last_heartbeat_ms,
        "last_heartbeat_at": iso(worker.last_heartbeat_ms),
    }


def stats_json(stats: QueueStats) -> dict[str, Any]:
    by_type: dict[str, dict[str, int]] = {}
    for (state, task_type), count in sorted(stats.by_state_and_type.items()):
        by_type.setdefault(task_type, {})[state.value] = count
    return {
        "by_state": {state.value: n for state, n in stats.by_state.items()},
        "pending_by_priority": {p.value: n for p, n in stats.pending_by_priority.items()},
        "by_type": by_type,
        "totals": dict(stats.totals),
    }
