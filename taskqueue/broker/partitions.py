"""Partitions: one namespace spread over several hash tags, so one busy queue can use more
than one Redis Cluster primary.

A namespace of N partitions keeps N copies of today's layout: partition 0 under the namespace
itself (``{ns}``), partition p under ``{ns:p}``. Each partition is a whole queue of its own
(tasks, queues, counters, policy, worker leases) whose scripts stay atomic in their one slot;
the broker places each submission on one partition and fans the namespace-wide operations
out. Partition 0 keeping the plain namespace means a queue that grows from one partition to
several keeps its tasks where they are.

Where a task lives is read off its id: the last four hex digits of the id's random part,
modulo N, name its partition (:func:`partition_of`), so reading, cancelling or reporting a
task costs no lookup. A submission whose meaning depends on finding other tasks goes to the
partition its key names (:func:`key_partition`): an idempotency key, a debounce key, a
unique task's type and payload, a fair-share group, or a dependency's id; the rest go round
robin.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

from taskqueue import _json
from taskqueue.broker.keys import Keys
from taskqueue.errors import InvalidTaskError
from taskqueue.models import MAX_PARTITIONS, Submission

#: How many hex digits at the end of a task id name its partition.
_ID_DIGITS: Final = 4
_ID_SPAN: Final = 16**_ID_DIGITS


def partition_keys(namespace: str, count: int) -> list[Keys]:
    """The keys of each partition: ``{ns}:...``, then ``{ns:1}:...`` and so on."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be 1 to {MAX_PARTITIONS}, not {count}")
    return [Keys(namespace, partition) for partition in range(count)]


def partition_of(task_id: str, count: int) -> int:
    """The partition a task id names (0 for anything that is not one of our ids)."""
    if count == 1:
        return 0
    try:
        return int(task_id[-_ID_DIGITS:], 16) % count
    except ValueError:
        return 0


def tag_id(task_id: str, partition: int, count: int) -> str:
    """``task_id`` with its last hex digits changed (as little as it takes) to name
    ``partition`` of ``count``; the rest of its random part is kept."""
    if count == 1:
        return task_id
    digits = int(task_id[-_ID_DIGITS:], 16)
    tagged = digits - digits % count + partition
    if tagged >= _ID_SPAN:
        tagged -= count
    return f"{task_id[:-_ID_DIGITS]}{tagged:0{_ID_DIGITS}x}"


def key_partition(key: str, count: int) -> int:
    """The partition a placement key names: the same key, the same partition, everywhere."""
    if count == 1:
        return 0
    return zlib.crc32(key.encode()) % count


def type_home(task_type: str, count: int) -> int:
    """The partition that holds every task of ``task_type`` while the type has a limit (a
    rate, a concurrency or a queue depth), so the limit counts the whole namespace's."""
    return key_partition("type:" + task_type, count)


def away_types(submissions: Sequence[Submission], partition: int, count: int) -> list[str]:
    """The types of ``submissions`` whose home is not ``partition``: enqueue.lua refuses one
    that has a limit (:class:`AwayFromHome`). None for a batch with dependencies, which
    stays beside them whatever its types."""
    if count == 1 or any(s.depends_on for s in submissions):
        return []
    return sorted({s.type for s in submissions if type_home(s.type, count) != partition})


class AwayFromHome(Exception):
    """A partition refused a batch (writing nothing) holding tasks of a limited type whose
    home is elsewhere; the submitter places them there from now on and submits again."""

    def __init__(self, task_type: str) -> None:
        super().__init__(f"tasks of {task_type!r} live in its home partition")
        self.task_type = task_type


def placement_key(submission: Submission) -> str | None:
    """What pins ``submission`` to one partition, or None when any partition will do.

    The key is whatever the submission's script must find other tasks by: its idempotency
    key, its debounce key, its type and payload when unique, or its group (whose concurrency
    and rate limits hold within one partition). Dependencies by id are placed by the caller.
    """
    if submission.idempotency_key is not None:
        return "idem:" + submission.idempotency_key
    if submission.debounce is not None:
        return f"debounce:{submission.type}|{submission.debounce.key}"
    if submission.unique:
        return f"unique:{submission.type}|{_json.dumps(submission.payload)}"
    if submission.group is not None:
        return f"group:{submission.type}|{submission.group}"
    return None


class Placer:
    """Chooses each submission's partition: by its key when it has one, else round robin."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._turn = 0
        #: Types known to have a limit: their tasks go to their home partition.
        self.homed: set[str] = set()

    def home(self, task_type: str) -> None:
        """Place ``task_type``'s tasks in its home partition from now on."""
        self.homed.add(task_type)

    def place(self, submissions: Sequence[Submission]) -> list[int]:
        """The partition of each submission of one batch.

        A batch whose tasks depend on each other (by index) stays in one partition, since a
        dependency must live beside its dependents: the partition its pinned tasks name, or
        the next turn's. A dependency by id pins its dependent to the dependency's
        partition. Tasks free to go anywhere share one turn per batch, so a bulk submit
        costs one script per partition it touches, not one per task. Tasks that would have
        to be in two partitions at once are refused (:class:`InvalidTaskError`).
        """
        count = self.count
        if count == 1:
            return [0] * len(submissions)
        turn = self._turn % count
        self._turn += 1
        together_by_index = any(isinstance(d, int) for s in submissions for d in s.depends_on or ())
        pins = [self._pins(s, homing=not together_by_index) for s in submissions]
        for index, pinned in enumerate(pins):
            if len(pinned) > 1:
                raise _split(index, len(submissions), "its dependencies and key")
        if together_by_index:
            together = {p for pinned in pins for p in pinned}
            if len(together) > 1:
                raise _split(None, len(submissions), "the dependencies and keys of this batch")
            return [next(iter(together), turn)] * len(submissions)
        return [next(iter(pinned), turn) for pinned in pins]

    def _pins(self, submission: Submission, *, homing: bool) -> set[int]:
        """The partitions ``submission`` must be in: its dependencies', else (``homing``)
        its limited type's home, else its key's."""
        pinned = {
            partition_of(dependency, self.count)
            for dependency in submission.depends_on or ()
            if isinstance(dependency, str)
        }
        if homing and not pinned and submission.type in self.homed:
            return {type_home(submission.type, self.count)}
        key = placement_key(submission)
        if key is not None:
            pinned.add(key_partition(key, self.count))
        return pinned


def _split(index: int | None, size: int, what: str) -> InvalidTaskError:
    where = f"task {index}: " if index is not None and size > 1 else ""
    field = "depends_on" if index is None or size == 1 else f"{index}.depends_on"
    return InvalidTaskError(
        f"{where}{what} fall in different partitions of this namespace (redis.partitions):"
        " a task lives beside its dependencies and its key's other tasks; submit dependent"
        " tasks in one batch, without keys that place them apart",
        field=field,
    )
