"""How much of a task one response carries: a list bounded by bytes, a single task whole.

A task's payload is bounded at submission (``task.max_payload_bytes``) and its result and
progress when the worker writes them (``task.max_result_bytes``), but a page holds up to
:data:`~taskqueue.models.MAX_PAGE` tasks: a page of large results made a 300 MiB response.
So a list reads its tasks as :class:`~taskqueue.broker.TaskView`: each field of
:data:`~taskqueue.broker.codec.CUT_JSON_FIELDS` over :data:`LIST_FIELD_BYTES` bytes is left in
Redis (null in the document), each of :data:`~taskqueue.broker.codec.CUT_TEXT_FIELDS` is
shortened to that many, and the document's ``truncated`` names each cut field with its full
size: the client fetches that task alone to read it. The cut happens in Redis, so a page of
big tasks never passes through the daemon whole. A single task is cut the same way only beyond
the submit limit, so a payload always comes back whole.
"""

from __future__ import annotations

from typing import Final

from taskqueue.broker.codec import CUT_JSON_FIELDS, CUT_TEXT_FIELDS
from taskqueue.models import MAX_PAGE

#: Most bytes (as stored: UTF-8, JSON text for the JSON values) each cut field keeps in a list.
LIST_FIELD_BYTES: Final = 512
#: JSON writes a control character of a text in 6 characters (``\u001f``): the most a kept
#: text can grow by in a document.
_ESCAPED: Final = 6
#: All of a listed task but its cut fields: ids, type and idempotency key (200 characters
#: each at most, escaped), state, priority, times and counters.
_OTHER_FIELDS_BYTES: Final = 4 * 2**10
#: A bound on one listed task's document (its parts summed below, rounded up), and so on a
#: page of them.
LISTED_TASK_BYTES: Final = 12 * 2**10
assert (
    len(CUT_JSON_FIELDS) * LIST_FIELD_BYTES
    + len(CUT_TEXT_FIELDS) * _ESCAPED * LIST_FIELD_BYTES
    + _OTHER_FIELDS_BYTES
    <= LISTED_TASK_BYTES
)
MAX_LIST_BYTES: Final = MAX_PAGE * LISTED_TASK_BYTES
