"""When a schedule fires: its ticks, in epoch milliseconds, derived from its definition alone.

Every daemon computes the same ticks from the same definition (intervals count from the Unix
epoch; cron expressions are read by croniter in the schedule's time zone), so the tick a
firing is for can name the task it submits, and a second daemon racing the first submits
nothing new.

Daylight saving time, as cron has always done it: a wall time skipped when clocks go forward
fires at the first time after the gap; a wall time that happens twice when they go back fires
once (the first time) for an expression with fixed hours, and every time for one whose hour
field is ``*`` (``*/15 * * * *`` keeps firing every 15 minutes through the repeated hour).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import attrs
from croniter import croniter

from taskqueue.schedules.model import MissedPolicy, ScheduleSpec

#: Ticks later than this are missed (the scheduler did not run); ``missed`` decides.
MISSED_AFTER_MS = 60_000
#: The most upcoming ticks one call lists.
MAX_UPCOMING = 100


@attrs.frozen
class Firing:
    """What a scheduler does with a schedule due at ``due_ms``."""

    #: The tick the submitted task is for; None: submit nothing (missed ticks skipped).
    tick: int | None
    #: The schedule's next run after this firing (strictly later than now).
    next_run: int
    #: Ticks that pass without a task of their own (coalesced or skipped).
    passed: int


def next_tick(spec: ScheduleSpec, after_ms: int) -> int:
    """The first tick of ``spec`` strictly after ``after_ms``."""
    if spec.every is not None:
        every = _every_ms(spec.every)
        return (after_ms // every + 1) * every
    assert spec.cron is not None
    return _cron_next(spec.cron, spec.timezone, after_ms)


def upcoming(spec: ScheduleSpec, after_ms: int, count: int) -> list[int]:
    """The next ``count`` (at most :data:`MAX_UPCOMING`) ticks after ``after_ms``."""
    ticks: list[int] = []
    at = after_ms
    for _ in range(min(count, MAX_UPCOMING)):
        at = next_tick(spec, at)
        ticks.append(at)
    return ticks


def firing(spec: ScheduleSpec, due_ms: int, now_ms: int) -> Firing:
    """How the schedule fires when a scheduler finds it due (``due_ms <= now_ms``).

    All ticks from ``due_ms`` to now coalesce into one firing for the latest of them; if even
    that one is over :data:`MISSED_AFTER_MS` old, the scheduler was away, and ``missed``
    decides whether it still submits a task.
    """
    latest = max(due_ms, _latest_tick(spec, now_ms))
    next_run = next_tick(spec, now_ms)
    passed = _ticks_between(spec, due_ms, latest)
    if now_ms - latest > MISSED_AFTER_MS and spec.missed is MissedPolicy.SKIP:
        return Firing(tick=None, next_run=next_run, passed=passed + 1)
    return Firing(tick=latest, next_run=next_run, passed=passed)


def _latest_tick(spec: ScheduleSpec, at_ms: int) -> int:
    """The last tick at or before ``at_ms``."""
    if spec.every is not None:
        every = _every_ms(spec.every)
        return at_ms // every * every
    assert spec.cron is not None
    return _cron_prev(spec.cron, spec.timezone, at_ms + 1)


def _ticks_between(spec: ScheduleSpec, first_ms: int, last_ms: int) -> int:
    """How many ticks lie in ``[first_ms, last_ms)``, counted exactly for intervals and up to
    a thousand for cron (beyond, the count says "at least")."""
    if last_ms <= first_ms:
        return 0
    if spec.every is not None:
        every = _every_ms(spec.every)
        return (last_ms - first_ms + every - 1) // every
    count, at = 1, first_ms
    while count < 1000:
        at = next_tick(spec, at)
        if at >= last_ms:
            break
        count += 1
    return count


def _every_ms(every: float) -> int:
    return max(1, round(every * 1000))


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _cron(expression: str, timezone: str, at_ms: int) -> croniter:
    start = datetime.fromtimestamp(at_ms / 1000, _zone(timezone))
    return croniter(expression, start, second_at_beginning=len(expression.split()) == 6)


def _cron_next(expression: str, timezone: str, after_ms: int) -> int:
    it = _cron(expression, timezone, after_ms)
    fixed_hours = expression.split()[-4] != "*"
    while True:
        when: datetime = it.get_next(datetime)
        if fixed_hours and _second_occurrence(when):
            continue
        tick = round(when.timestamp() * 1000)
        if tick > after_ms:
            return tick


def _cron_prev(expression: str, timezone: str, before_ms: int) -> int:
    when: datetime = _cron(expression, timezone, before_ms).get_prev(datetime)
    return round(when.timestamp() * 1000)


def _second_occurrence(when: datetime) -> bool:
    """Whether ``when`` is a wall time's second occurrence, as clocks go back."""
    local = datetime.fromtimestamp(when.timestamp(), when.tzinfo)  # sets ``fold`` right
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
