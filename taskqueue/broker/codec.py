"""The one place that converts tasks and worker records to and from their Redis form.

A task is a Redis hash whose fields are the :class:`~taskqueue.models.Task` fields: numbers as
decimal text, the fields of any JSON value (payload, result, progress) as JSON text, and empty
strings for "none" (Redis hashes have no null). The conversion is derived from the model, so a
field added there is read back here with nothing more to write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect

from taskqueue import _json
from taskqueue.models import (
    Claim,
    ClaimedTask,
    HandOff,
    Priority,
    Task,
    TaskEvent,
    TaskState,
    WorkerInfo,
    Workflow,
    WorkflowTask,
)

#: Claim replies carry these fields per task, in this order (see claim.lua).
CLAIM_FIELDS = 12
#: Workflow replies carry these fields per task, in this order (see view_workflow.lua).
WORKFLOW_FIELDS = 7


def _bare(kind: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``kind`` without its annotations (descriptions, constraints)."""
    return kind.type if isinstance(kind, msgspec.inspect.Metadata) else kind


_TASK_FIELDS = frozenset(Task.__struct_fields__)
#: Fields that hold any JSON value, stored as JSON text (so are mappings: the headers).
_ANY_FIELDS = frozenset(
    field.name
    for field in msgspec.inspect.type_info(Task).fields  # type: ignore[attr-defined]
    if isinstance(_bare(field.type), msgspec.inspect.AnyType)
)
_JSON_FIELDS = _ANY_FIELDS | frozenset(
    field.name
    for field in msgspec.inspect.type_info(Task).fields  # type: ignore[attr-defined]
    if isinstance(_bare(field.type), msgspec.inspect.DictType)
)

#: Fields that hold a list of task ids, stored as comma-separated text (ids have no commas),
#: which Lua appends to and walks without decoding JSON.
_ID_LIST_FIELDS = frozenset(
    field.name
    for field in msgspec.inspect.type_info(Task).fields  # type: ignore[attr-defined]
    if isinstance(_bare(field.type), msgspec.inspect.ListType)
)


#: The fields a response may cut (see ``view.lua``): those of any JSON value, left out whole;
#: those of text, shortened. The rest (ids, names, times, counters, headers) are small by rule.
CUT_JSON_FIELDS = ("payload", "result", "progress", "inputs")
CUT_TEXT_FIELDS = ("error", "traceback")
assert set(CUT_JSON_FIELDS) == _ANY_FIELDS


def task_from_hash(fields: Mapping[str, str]) -> Task:
    """The task stored in ``fields`` (an HGETALL reply)."""
    loads = _json.loads
    values = {
        name: loads(value)
        if name in _JSON_FIELDS
        else id_list(value)
        if name in _ID_LIST_FIELDS
        else value
        for name, value in fields.items()
        if value != "" and name in _TASK_FIELDS
    }
    return msgspec.convert(values, Task, strict=False)


def id_list(text: str) -> list[str]:
    """A field of task ids, as stored (comma-separated; empty: none)."""
    return text.split(",") if text else []


def workflow_from_reply(reply: list[Any]) -> Workflow:
    """A view_workflow.lua reply: whether it is complete, then :data:`WORKFLOW_FIELDS` per
    task."""
    tasks = [
        WorkflowTask(
            id=reply[i],
            type=reply[i + 1],
            state=TaskState(reply[i + 2]),
            priority=Priority(reply[i + 3]),
            depends_on=id_list(reply[i + 4]),
            dependents=id_list(reply[i + 5]),
            error=reply[i + 6] or None,
        )
        for i in range(1, len(reply), WORKFLOW_FIELDS)
    ]
    by_state = dict.fromkeys(TaskState, 0)
    for task in tasks:
        by_state[task.state] += 1
    return Workflow(tasks=tasks, by_state=by_state, complete=reply[0] == 1)


def claimed_task(fields: list[Any], i: int, started_ms: int) -> ClaimedTask:
    """The task whose :data:`CLAIM_FIELDS` start at ``fields[i]`` (a claim's reply, or a
    hand-off's message: see _lib.lua)."""
    loads = _json.loads
    return ClaimedTask(
        id=fields[i],
        type=fields[i + 1],
        priority=Priority(fields[i + 2]),
        payload=loads(fields[i + 3]),
        attempt=fields[i + 4],
        max_retries=int(fields[i + 5]),
        timeout_ms=int(fields[i + 6]),
        ready_ms=int(fields[i + 7]),
        started_ms=started_ms,
        inputs=loads(fields[i + 8]) if fields[i + 8] else None,
        expires_ms=int(fields[i + 9]) if fields[i + 9] else None,
        headers=loads(fields[i + 10]) if fields[i + 10] else {},
        group=fields[i + 11] or None,
    )


def claim_from_reply(reply: list[Any], started_ms: int) -> Claim:
    """A claim.lua reply: when a rate limit lets a held-back task start (0: none), the type
    and priority of each task it ended expired, the worker's unacknowledged hand-off, then
    :data:`CLAIM_FIELDS` per task."""
    tasks = [claimed_task(reply, i, started_ms) for i in range(3, len(reply), CLAIM_FIELDS)]
    held = int(reply[0]) or None
    handed = [_hand_off(reply[2], started_ms)] if reply[2] else []
    expired = reply[1]
    if not expired:
        return Claim(tasks, held, handed=handed) if handed else Claim(tasks, held)
    pairs = [(expired[i], Priority(expired[i + 1])) for i in range(0, len(expired), 2)]
    return Claim(tasks, held, pairs, handed)


def hand_off_from_message(data: str, received_ms: int) -> HandOff:
    """A hand-off message (on a worker's channel): the task leased to the worker, and the
    hand-off's token."""
    return _hand_off(_json.loads(data), received_ms)


def _hand_off(fields: list[Any], received_ms: int) -> HandOff:
    return HandOff(claimed_task(fields, 0, received_ms), fields[CLAIM_FIELDS])


def worker_to_json(worker: WorkerInfo) -> str:
    """The worker's record as the heartbeat stores it (its last beat is a field of its own)."""
    info = msgspec.structs.asdict(worker)
    del info["last_heartbeat_ms"]
    return _json.dumps(info)


def worker_from_hash(fields: Mapping[str, str]) -> WorkerInfo:
    info = _json.loads(fields["info"])
    info["last_heartbeat_ms"] = int(fields["last_heartbeat_ms"])
    return msgspec.convert(info, WorkerInfo)


def events_from_message(data: str) -> list[TaskEvent]:
    """The events of one message on the events channel (a JSON list of triples)."""
    return [TaskEvent(task_id, task_type, state) for task_id, task_type, state in _json.loads(data)]
