"""The schedules' operations, free of I/O like :mod:`taskqueue.broker.operations` (whose
steps and drivers they share): define, read, pause, delete, and the scheduler's two steps, read
what is due and record what fired.

A definition is stored as its JSON encoding, which is the same for the same definition, so
daemons that start with the same ``[[schedules]]`` leave it (and its next run) untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import msgspec

from taskqueue.broker import cursors
from taskqueue.broker.keys import Keys
from taskqueue.broker.model import BrokerSettings, Page
from taskqueue.broker.operations import Call, Operation, _script, pairs
from taskqueue.errors import (
    ConflictingStateError,
    InvalidTaskError,
    PayloadTooLargeError,
    ScheduleNotFoundError,
    TooManySchedulesError,
)
from taskqueue.models import DEFAULT_PAGE, MAX_PAGE, TaskState
from taskqueue.schedules.model import MAX_SCHEDULES, Schedule, ScheduleSpec
from taskqueue.schedules.timing import next_tick

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ScheduleSpec)


@attrs.frozen
class DueSchedule:
    spec: ScheduleSpec
    #: The next run it was read at: the value the firing compares and sets.
    due_ms: int


@attrs.frozen
class DueSchedules:
    due: list[DueSchedule]
    #: When the first schedule not yet due is (None: none is).
    next_run_ms: int | None


@attrs.frozen(kw_only=True)
class Fired:
    """What a scheduler did with one due schedule, to record."""

    name: str
    due_ms: int
    next_run_ms: int
    tick_ms: int | None
    task_id: str | None
    passed: int
    error: str | None = None


def encode_spec(spec: ScheduleSpec) -> str:
    return _ENCODER.encode(spec).decode()


def put_schedule(
    settings: BrokerSettings, keys: Keys, spec: ScheduleSpec, now: int, *, create_only: bool
) -> Operation[str]:
    """Store ``spec``: ``created``, ``replaced`` or ``unchanged``. Raises
    :class:`ConflictingStateError` if the name exists and ``create_only``, and
    :class:`TooManySchedulesError` past :data:`MAX_SCHEDULES`."""
    payload = _ENCODER.encode(spec.payload)
    if len(payload) > settings.max_payload_bytes:
        raise PayloadTooLargeError(
            f"payload: {len(payload)} bytes of JSON, over task.max_payload_bytes "
            f"({settings.max_payload_bytes})",
            field="payload",
        )
    outcome: str = yield _script(
        keys,
        "put_schedule",
        spec.name,
        encode_spec(spec),
        next_tick(spec, now),
        now,
        MAX_SCHEDULES,
        1 if create_only else 0,
    )
    if outcome == "exists":
        raise ConflictingStateError(
            f"a schedule named {spec.name!r} exists: replace it or delete it first"
        )
    if outcome == "full":
        raise TooManySchedulesError(
            f"the namespace holds {MAX_SCHEDULES} schedules, the most it may: delete some first"
        )
    return outcome


def schedule(keys: Keys, name: str) -> Operation[Schedule]:
    """One schedule; :class:`ScheduleNotFoundError` if there is none."""
    (found,) = yield from _read(keys, [name])
    if found is None:
        raise ScheduleNotFoundError(name)
    return found


def schedules(
    keys: Keys, cursor: str | None = None, limit: int = DEFAULT_PAGE
) -> Operation[Page[Schedule]]:
    """A page of the schedules, by name."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidTaskError(f"limit: expected 1 to {MAX_PAGE}, got {limit}", field="limit")
    offset = cursors.read_offset(cursor)
    names = sorted((yield Call(("HKEYS", keys.schedules))))
    page = names[offset : offset + limit]
    found = yield from _read(keys, page)
    end = offset + len(page)
    return Page(
        [s for s in found if s is not None],
        cursors.offset_cursor(end) if end < len(names) else None,
    )


def _read(keys: Keys, names: Sequence[str]) -> Operation[list[Schedule | None]]:
    if not names:
        return []
    replies = yield _script(keys, "read_schedules", *names)
    return [_schedule_from(reply) for reply in replies]


def _schedule_from(reply: Sequence[Any]) -> Schedule | None:
    if not reply[0]:
        return None
    spec_json, next_run, flat_state, last_state = reply
    state = pairs(flat_state)

    def number(field: str) -> int | None:
        value = state.get(field)
        return int(value) if value else None

    return Schedule(
        spec=_DECODER.decode(spec_json),
        paused=state.get("paused") == "1",
        next_run_ms=None if next_run < 0 else int(next_run),
        last_tick_ms=number("last_tick"),
        last_run_ms=number("last_run"),
        last_task_id=state.get("last_task"),
        last_task_state=TaskState(last_state) if last_state else None,
        fired=number("fired") or 0,
        skipped=number("skipped") or 0,
        last_error=state.get("last_error"),
        created_ms=number("created") or 0,
        updated_ms=number("updated") or 0,
    )


def pause_schedule(keys: Keys, name: str, paused: bool, now: int) -> Operation[None]:
    """Pause the schedule, or resume it from its next tick after now."""
    next_run = 0
    if not paused:
        spec_json = yield Call(("HGET", keys.schedules, name))
        if spec_json is None:
            raise ScheduleNotFoundError(name)
        next_run = next_tick(_DECODER.decode(spec_json), now)
    found = yield _script(keys, "pause_schedule", name, 1 if paused else 0, next_run, now)
    if not found:
        raise ScheduleNotFoundError(name)


def delete_schedule(keys: Keys, name: str) -> Operation[None]:
    if not (yield _script(keys, "delete_schedule", name)):
        raise ScheduleNotFoundError(name)


def due_schedules(keys: Keys, now: int, limit: int) -> Operation[DueSchedules]:
    """Up to ``limit`` schedules whose next run has come."""
    later, *flat = yield _script(keys, "due_schedules", now, limit)
    due = [
        DueSchedule(_DECODER.decode(flat[i + 2]), int(flat[i + 1]))
        for i in range(0, len(flat), 3)
        if flat[i + 2]  # a definition deleted between the two reads is gone
    ]
    return DueSchedules(due, None if later < 0 else int(later))


def fire_schedules(keys: Keys, fired: Sequence[Fired], now: int) -> Operation[list[bool]]:
    """Record firings; for each, whether this call did (False: another scheduler had)."""
    if not fired:
        return []
    args: list[str | int] = [now]
    for f in fired:
        args += [
            f.name,
            f.due_ms,
            f.next_run_ms,
            "" if f.tick_ms is None else f.tick_ms,
            f.task_id or "",
            f.passed,
            f.error or "",
        ]
    won = yield _script(keys, "fire_schedules", *args)
    return [bool(w) for w in won]
