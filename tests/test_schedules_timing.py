"""When schedules fire: intervals, cron in a time zone across daylight saving changes, missed
ticks after downtime, and the checks on a definition. Pure computation, no Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskqueue.errors import InvalidTaskError
from taskqueue.schedules import MissedPolicy, firing, next_tick, schedule_spec, upcoming
from taskqueue.schedules.timing import MISSED_AFTER_MS


def ms(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp() * 1000)  # type: ignore[arg-type,misc]


def utc(tick: int) -> datetime:
    return datetime.fromtimestamp(tick / 1000, UTC)


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    spec = schedule_spec({"name": "n", "type": "echo", "every": "30s"})
    assert spec.every == 30.0
    assert upcoming(spec, 1_000, 3) == [30_000, 60_000, 90_000]
    assert next_tick(spec, 30_000) == 60_000  # strictly after


def test_cron_in_berlin_fires_once_a_day_across_both_changes() -> None:
    spec = schedule_spec(
        {"name": "n", "type": "echo", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    )
    # Spring: 02:30 does not exist on 29 March 2026; it fires at 03:00 CEST instead.
    spring = [utc(t) for t in upcoming(spec, ms(2026, 3, 27), 4)]
    assert spring == [
        datetime(2026, 3, 27, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    # Autumn: 02:30 happens twice on 25 October 2026; it fires at the first only.
    autumn = [utc(t) for t in upcoming(spec, ms(2026, 10, 24), 3)]
    assert autumn == [
        datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


def test_cron_with_any_hour_keeps_firing_through_the_repeated_hour() -> None:
    spec = schedule_spec(
        {"name": "n", "type": "echo", "cron": "*/30 * * * *", "timezone": "Europe/Berlin"}
    )
    ticks = upcoming(spec, ms(2026, 10, 24, 23, 59), 6)
    assert [t - ticks[0] for t in ticks] == [i * 1_800_000 for i in range(6)]


def test_six_fields_put_seconds_first() -> None:
    spec = schedule_spec({"name": "n", "type": "echo", "cron": "*/20 * * * * *"})
    assert upcoming(spec, ms(2026, 1, 1), 3) == [ms(2026, 1, 1) + s * 1000 for s in (20, 40, 60)]


def test_a_late_scheduler_coalesces_the_ticks_it_missed_into_one_firing() -> None:
    spec = schedule_spec({"name": "n", "type": "echo", "every": 1})
    plan = firing(spec, due_ms=10_000, now_ms=15_500)
    assert (plan.tick, plan.next_run, plan.passed) == (15_000, 16_000, 5)


@pytest.mark.parametrize(("missed", "tick"), [("skip", None), ("once", 3_600_000)])
def test_after_downtime_missed_decides_whether_one_task_still_runs(
    missed: str, tick: int | None
) -> None:
    spec = schedule_spec({"name": "n", "type": "echo", "every": "1h", "missed": missed})
    assert spec.missed is MissedPolicy(missed)
    now = 3_600_000 + MISSED_AFTER_MS + 1
    plan = firing(spec, due_ms=3_600_000, now_ms=now)
    assert (plan.tick, plan.next_run) == (tick, 7_200_000)


def test_a_tick_less_than_a_minute_late_fires_under_skip() -> None:
    spec = schedule_spec({"name": "n", "type": "echo", "every": "1h"})
    plan = firing(spec, due_ms=3_600_000, now_ms=3_600_000 + MISSED_AFTER_MS)
    assert plan.tick == 3_600_000


@pytest.mark.parametrize(
    ("definition", "field", "words"),
    [
        ({"type": "echo", "every": 5}, "name", "required"),
        ({"name": "a:b", "type": "echo", "every": 5}, "name", "ASCII letters"),
        ({"name": "n", "type": "echo"}, "cron", "exactly one"),
        ({"name": "n", "type": "echo", "every": 5, "cron": "* * * * *"}, "cron", "exactly one"),
        ({"name": "n", "type": "echo", "cron": "* *"}, "cron", "2 fields"),
        ({"name": "n", "type": "echo", "cron": "61 * * * *"}, "cron", "not a valid"),
        ({"name": "n", "type": "echo", "every": "soon"}, "every", "duration"),
        ({"name": "n", "type": "echo", "every": 0.5}, "every", ">= 1"),
        ({"name": "n", "type": "echo", "every": 5, "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"name": "n", "type": "echo", "every": 5, "missed": "twice"}, "missed", "skip"),
        ({"name": "n", "type": "echo", "every": 5, "color": "red"}, "color", "unknown"),
        ({"name": "n", "type": "no pe", "every": 5}, "type", "ASCII letters"),
    ],
)
def test_a_bad_definition_names_its_field(
    definition: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidTaskError) as caught:
        schedule_spec(definition)
    assert caught.value.field == field
    assert words in str(caught.value)
