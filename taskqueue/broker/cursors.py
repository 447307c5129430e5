"""What a listing's cursor says, written and read in one place.

A cursor is only ever one the server issued: a finished-state listing's is the offset into its
sorted set (``"200"``); a pending listing's names the queue it stopped in and the offset there
(``"normal:mail.send:100"``), so that a type appearing between two pages does not shift it.
Anything else, however close (``"¹"``, ``" 5"``, ``"1_0"``, twenty digits), is refused with an
:class:`~taskqueue.InvalidTaskError` naming ``cursor``, never a 500.
"""

from __future__ import annotations

from taskqueue.errors import InvalidTaskError
from taskqueue.models import Priority
from taskqueue.numerals import natural

FIELD = "cursor"
_PRIORITIES = {p.value for p in Priority}


def _invalid(cursor: str) -> InvalidTaskError:
    shown = cursor if len(cursor) <= 60 else cursor[:60] + "…"
    return InvalidTaskError(
        f"invalid cursor {shown!r}: pass back the next_cursor of the previous page", field=FIELD
    )


def offset_cursor(offset: int) -> str:
    return str(offset)


def read_offset(cursor: str | None) -> int:
    """The offset of a finished-state listing's cursor (0 for the first page)."""
    if cursor is None:
        return 0
    offset = natural(cursor)
    if offset is None:
        raise _invalid(cursor)
    return offset


def queue_cursor(priority: str, task_type: str, offset: int) -> str:
    return f"{priority}:{task_type}:{offset}"


def read_queue(cursor: str) -> tuple[str, str, int]:
    """The (priority, type, offset) of a pending listing's cursor."""
    priority, _, rest = cursor.partition(":")
    task_type, _, at = rest.rpartition(":")
    offset = natural(at)
    if priority not in _PRIORITIES or not task_type or offset is None:
        raise _invalid(cursor)
    return priority, task_type, offset


def partition_cursor(partition: int, inner: str | None) -> str:
    """A listing's cursor in a namespace of several partitions: the partition it stopped in,
    and that partition's own cursor (empty: from its start)."""
    return f"{partition}|{inner or ''}"


def read_partition(cursor: str | None, count: int) -> tuple[int, str | None]:
    """The (partition, partition's own cursor) of a cursor of :func:`partition_cursor`."""
    if cursor is None:
        return 0, None
    head, bar, inner = cursor.partition("|")
    partition = natural(head)
    if not bar or partition is None or partition >= count:
        raise _invalid(cursor)
    return partition, inner or None
