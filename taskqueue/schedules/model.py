"""What a schedule is: its definition (:class:`ScheduleSpec`, what operators write) and what a
reader sees (:class:`Schedule`, the definition with its state).

A definition is checked once, by :func:`schedule_spec`, whatever its source: the config file's
``[[schedules]]`` tables, the REST and gRPC APIs, the clients and the command line.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
from croniter import croniter
from msgspec import Meta, Struct

from taskqueue.errors import InvalidTaskError
from taskqueue.models import (
    MAX_DELAY,
    MAX_SCHEDULE_NAME_LENGTH,
    SCHEDULE_NAME_PATTERN,
    SCHEDULE_NAME_RULE,
    MaxRetries,
    Millis,
    PriorityName,
    TaskState,
    TaskType,
    Timeout,
    validated,
)

#: Schedules in one namespace: each daemon's scheduler reads the due ones every tick.
MAX_SCHEDULES: Final = 10_000
#: Fields a cron expression may have: minute hour day month weekday, or with seconds first.
CRON_FIELDS: Final = (5, 6)

ScheduleName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_SCHEDULE_NAME_LENGTH,
        pattern=SCHEDULE_NAME_PATTERN,
        description=SCHEDULE_NAME_RULE + ".",
        examples=["nightly-report"],
    ),
]
Cron = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        description="A cron expression: `minute hour day month weekday`, or six fields with "
        "seconds first (`*/10 * * * * *`), in `timezone`. Not with `every`.",
        examples=["0 3 * * *"],
    ),
]
Every = Annotated[
    float,
    Meta(
        ge=1,
        le=MAX_DELAY,
        description="Fire every this many seconds (at whole multiples of it since the Unix "
        "epoch, so every daemon agrees on the ticks). Not with `cron`.",
    ),
]
TimeZone = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        description="The IANA time zone `cron` is read in.",
        examples=["Europe/Berlin"],
        # What the zone database holds (checked when a definition is: see schedule_spec).
        extra_json_schema={"enum": sorted(available_timezones())},
    ),
]


class MissedPolicy(enum.StrEnum):
    """What a schedule does with ticks that passed while no scheduler ran (over a minute ago).

    Ticks missed by less than a minute, or several at once, always coalesce into one task.
    """

    SKIP = "skip"  # submit nothing for them; the next tick fires as usual
    ONCE = "once"  # submit one task for all of them, at once


class ScheduleSpec(
    Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A schedule as written: when to fire (`cron` or `every`) and the task to submit."""

    name: ScheduleName
    type: TaskType
    payload: Annotated[Any, Meta(description="The submitted task's payload: any JSON value.")] = (
        None
    )
    cron: Cron | None = None
    every: Every | None = None
    timezone: TimeZone = "UTC"
    missed: MissedPolicy = MissedPolicy.SKIP
    priority: PriorityName | None = None
    max_retries: MaxRetries | None = None
    timeout: Timeout | None = None

    @property
    def timing(self) -> str:
        """When it fires, for people: ``cron 0 3 * * * Europe/Berlin`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron} {self.timezone}"
        from taskqueue.config.units import format_duration

        return f"every {format_duration(self.every or 0)}"


class Schedule(Struct, kw_only=True, frozen=True):
    """A schedule as read back: its definition and its state."""

    spec: ScheduleSpec
    paused: bool = False
    #: The next tick it fires at; None while paused.
    next_run_ms: Millis | None = None
    #: The tick it last fired for, and when (they differ by the scheduler's lateness).
    last_tick_ms: Millis | None = None
    last_run_ms: Millis | None = None
    last_task_id: str | None = None
    #: The last submitted task's state; None once its record expired (or before it fired).
    last_task_state: TaskState | None = None
    fired: int = 0
    #: Ticks passed over by the ``skip`` policy after downtime.
    skipped: int = 0
    #: Why its last firing submitted nothing (e.g. the type's queue was full); None after a
    #: firing that did.
    last_error: str | None = None
    created_ms: Millis = 0
    updated_ms: Millis = 0


#: What a request body's JSON Schema adds to a definition's: one of `cron` and `every` is
#: given, not both (as :func:`schedule_spec` checks).
ONE_TIMING: Final = Meta(
    extra_json_schema={"oneOf": [{"required": ["cron"]}, {"required": ["every"]}]}
)


def schedule_name(name: str) -> str:
    """``name`` if it may name a schedule (a REST path's or a gRPC request's, which no
    definition checks); else :class:`InvalidTaskError` about the field ``name``."""
    try:
        msgspec.convert(name, ScheduleName)
    except msgspec.ValidationError:
        raise InvalidTaskError(
            f"name: invalid schedule name {name!r}: {SCHEDULE_NAME_RULE}", field="name"
        ) from None
    return name


def schedule_spec(data: object, *, prefix: str = "") -> ScheduleSpec:
    """``data`` (plain Python data, e.g. decoded JSON or TOML) as a checked definition.

    ``every`` may be a number of seconds or a duration text (``"30s"``, ``"5m"``). Raises
    :class:`InvalidTaskError` naming the field at fault.
    """
    where = f"{prefix}." if prefix else ""
    if isinstance(data, Mapping) and isinstance(data.get("every"), str):
        from taskqueue.config.units import parse_duration

        try:
            data = {**data, "every": parse_duration(data["every"])}
        except ValueError as error:
            raise InvalidTaskError(f"{where}every: {error}", field=f"{where}every") from None
    spec = validated(data, ScheduleSpec, prefix=prefix)
    if (spec.cron is None) == (spec.every is None):
        raise InvalidTaskError(
            f"{where}cron: give exactly one of 'cron' and 'every'", field=f"{where}cron"
        )
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTaskError(
            f"{where}timezone: unknown time zone {spec.timezone!r}: expected an IANA name such"
            " as 'UTC' or 'Europe/Berlin'",
            field=f"{where}timezone",
        ) from None
    if spec.cron is not None:
        _check_cron(spec.cron, where)
    if spec.payload is not None:
        try:
            msgspec.json.encode(spec.payload)
        except (TypeError, OverflowError) as error:
            raise InvalidTaskError(f"{where}payload: {error}", field=f"{where}payload") from None
    return spec


def _check_cron(expression: str, where: str) -> None:
    fields = len(expression.split())
    problem = ""
    if fields not in CRON_FIELDS:
        problem = f"has {fields} fields, expected 5 (minute hour day month weekday) or 6"
    elif not croniter.is_valid(expression, second_at_beginning=fields == 6):
        problem = "is not a valid cron expression"
    if problem:
        raise InvalidTaskError(
            f"{where}cron: {expression!r} {problem}", field=f"{where}cron"
        ) from None
