"""How much of a task one response carries: a list bounded by bytes, a single task whole.

A task's payload is bounded at submission (``task.max_payload_bytes``), but a page holds up to
:data:`~taskqueue.models.MAX_PAGE` tasks, and results, progress, errors and tracebacks are
whatever the processor left: a page of large results made a 300 MiB response. So in a list
each of :data:`CUT_FIELDS` over :data:`LIST_FIELD_CHARS` characters of JSON is cut (a JSON
value to null, a text to its first characters), and the document's ``truncated`` names each
cut field with its full size: the client fetches that task alone to read it. A single task
is cut the same way only beyond the submit limit, so a payload always comes back whole and
no document exceeds what a submission could carry, field by field.
"""

from __future__ import annotations

from typing import Final

import msgspec

from taskqueue import _json
from taskqueue.models import MAX_PAGE, Task

#: Fields that hold JSON values: cut to null.
JSON_FIELDS: Final = ("payload", "result", "progress")
#: Fields that hold text: cut to their first characters.
TEXT_FIELDS: Final = ("error", "traceback")
CUT_FIELDS: Final = JSON_FIELDS + TEXT_FIELDS
#: Most characters of JSON each cut field keeps in a list.
LIST_FIELD_CHARS: Final = 512
#: A bound on one listed task's document (the cut fields, a 200-character type and
#: idempotency key, the id, times and counters), and so on a page of them.
LISTED_TASK_BYTES: Final = 8 * 2**10
MAX_LIST_BYTES: Final = MAX_PAGE * LISTED_TASK_BYTES


def cut(task: Task, limit: int) -> tuple[Task, dict[str, int]]:
    """``task`` with each of :data:`CUT_FIELDS` over ``limit`` characters of JSON cut, and
    the full size of each field cut, by name."""
    changes: dict[str, object] = {}
    truncated: dict[str, int] = {}
    for name in JSON_FIELDS:
        value = getattr(task, name)
        if value is not None and (size := len(_json.dumps(value))) > limit:
            changes[name] = None
            truncated[name] = size
    for name in TEXT_FIELDS:
        text: str | None = getattr(task, name)
        if text is not None and (size := len(_json.dumps(text))) > limit:
            changes[name] = _prefix(text, limit)
            truncated[name] = size
    if not changes:
        return task, truncated
    return msgspec.structs.replace(task, **changes), truncated


def listed(task: Task) -> tuple[Task, dict[str, int]]:
    """``task`` as a list shows it."""
    return cut(task, LIST_FIELD_CHARS)


def _prefix(text: str, limit: int) -> str:
    """A start of ``text`` whose JSON is at most ``limit`` characters: all it can hold, or
    (when escapes lengthen it) halved until it fits."""
    prefix = text[: max(0, limit - 2)]  # the quotes
    while len(_json.dumps(prefix)) > limit:
        prefix = prefix[: len(prefix) // 2]
    return prefix
