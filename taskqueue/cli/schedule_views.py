"""How ``taskqueue schedules`` shows schedules: a table of them all, and one in detail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.text import Text

from taskqueue.cli.views import Cell, Details, Listing, ago, compact_json, moment, state_text
from taskqueue.schedules import Schedule, upcoming
from taskqueue.wire import iso


def _last_task(schedule: Schedule) -> Cell:
    if schedule.last_task_id is None:
        return "-"
    if schedule.last_task_state is None:
        return f"{schedule.last_task_id} (expired)"
    return Text.assemble(f"{schedule.last_task_id} ", state_text(schedule.last_task_state))


def _tick_text(tick_ms: int, timezone: str) -> str:
    """A tick in UTC, and on the schedule's own clock when that is another zone: a cron of
    ``0 3 * * *`` in Europe/Berlin reads as 03:00 there."""
    text = iso(tick_ms) or ""
    if timezone == "UTC":
        return text
    local = datetime.fromtimestamp(tick_ms / 1000, ZoneInfo(timezone))
    return f"{text} ({local:%Y-%m-%d %H:%M:%S %Z} {timezone})"


def schedule_listing(schedules: Sequence[Schedule], now_ms: int) -> Listing:
    rows: list[tuple[Cell, ...]] = [
        (
            s.spec.name,
            s.spec.type,
            s.spec.timing.removeprefix("cron "),
            Text("paused", style="yellow") if s.paused else ago(s.next_run_ms, now_ms),
            ago(s.last_run_ms, now_ms),
            _last_task(s),
            str(s.fired),
        )
        for s in schedules
    ]
    return Listing(
        ("NAME", "TYPE", "WHEN", "NEXT", "LAST", "LAST TASK", "FIRED"),
        rows,
        title="schedules",
        empty="no schedules",
        numeric=frozenset({6}),
        optional=(5, 6, 4),
    )


def schedule_details(schedule: Schedule, now_ms: int, *, next_runs: int = 5) -> Details:
    spec = schedule.spec
    pairs: list[tuple[str, Cell]] = [
        ("name", spec.name),
        ("type", spec.type),
        ("when", spec.timing),
        ("missed ticks", spec.missed.value),
        ("payload", compact_json(spec.payload, 200)),
        ("state", Text("paused", style="yellow") if schedule.paused else "active"),
        ("next run", "-" if schedule.paused else moment(schedule.next_run_ms, now_ms)),
        ("last run", moment(schedule.last_run_ms, now_ms)),
        ("last task", _last_task(schedule)),
        ("fired", str(schedule.fired)),
        ("skipped", str(schedule.skipped)),
    ]
    if spec.priority is not None:
        pairs.insert(4, ("priority", str(spec.priority)))
    if schedule.last_error:
        pairs.append(("last error", schedule.last_error))
    for i, tick in enumerate(upcoming(spec, now_ms, next_runs)):
        pairs.append(("upcoming" if i == 0 else "", _tick_text(tick, spec.timezone)))
    return Details(pairs, title=f"schedule {spec.name}")
