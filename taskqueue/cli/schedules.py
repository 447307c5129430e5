"""``taskqueue schedules``: periodic tasks, listed with their last and next runs, and made,
paused, resumed and deleted at run time (in Redis, or through the API with ``--api``).

A schedule in a daemon's ``[[schedules]]`` is written again when that daemon starts: to stop one
for good, delete it from the file too.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from taskqueue.broker import wall_clock_ms
from taskqueue.cli.common import (
    DURATION,
    EXIT_FAILED,
    PRIORITIES,
    Session,
    client_options,
    fail,
    read_payload,
)
from taskqueue.cli.schedule_views import schedule_details, schedule_listing
from taskqueue.errors import InvalidTaskError
from taskqueue.models import MAX_PAGE
from taskqueue.schedules import MissedPolicy, Schedule, schedule_spec
from taskqueue.wire import schedule_json


@click.group("schedules", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=100, show_default=True)
@click.option("--cursor", help="Where the previous page ended (printed on stderr after it).")
@client_options
@click.pass_context
def schedules_group(
    ctx: click.Context,
    /,
    limit: int,
    cursor: str | None,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """List the schedules (periodic tasks) with their next and last runs; or make and change
    them with the commands below."""
    if ctx.invoked_subcommand is not None:
        return
    s = Session.start(config_path, flags, json_mode)
    page = s.call(lambda client: client.schedules(limit=limit, cursor=cursor))
    now = wall_clock_ms()
    if json_mode:
        s.out.json([schedule_json(schedule, now) for schedule in page.items])
    else:
        s.out.show(schedule_listing(page.items, now))
    if page.next_cursor is not None:
        s.out.note(f"more: taskqueue schedules --cursor {page.next_cursor}")


@schedules_group.command("add")
@click.argument("name")
@click.argument("task_type", metavar="TYPE")
@click.option("--cron", metavar="EXPR", help="Cron expression, e.g. '0 3 * * *' (5 or 6 fields).")
@click.option("--every", **DURATION, help="Fixed interval instead, e.g. 30s, 5m, 1h.")
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of --cron.")
@click.option("--payload", metavar="JSON", help="The tasks' payload, as JSON text.")
@click.option(
    "--payload-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the JSON payload from a file ('-': standard input).",
)
@click.option("--priority", type=click.Choice(PRIORITIES), help="The tasks' priority.")
@click.option("--max-retries", type=int, help="The tasks' retries after a failed attempt.")
@click.option("--timeout", **DURATION, help="The tasks' run-time limit, e.g. 30s.")
@click.option(
    "--missed",
    type=click.Choice([m.value for m in MissedPolicy]),
    default="skip",
    show_default=True,
    help="After downtime: skip the ticks missed, or run once for them.",
)
@click.option("--replace", is_flag=True, help="Replace a schedule of that name (its state kept).")
@client_options
def add(
    name: str,
    task_type: str,
    cron: str | None,
    every: float | None,
    timezone: str,
    payload: str | None,
    payload_file: Any,
    priority: str | None,
    max_retries: int | None,
    timeout: float | None,
    missed: str,
    replace: bool,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Make a schedule that submits a TYPE task on --cron or --every.

    \b
    Examples:
      taskqueue schedules add nightly report.build --cron '0 3 * * *' --timezone Europe/Berlin
      taskqueue schedules add poll feed.poll --every 30s --payload '{"feed": "news"}'
    """
    data: dict[str, Any] = {
        "name": name,
        "type": task_type,
        "cron": cron,
        "every": every,
        "timezone": timezone,
        "missed": missed,
        "payload": read_payload(payload, payload_file),
        "priority": priority,
        "max_retries": max_retries,
        "timeout": timeout,
    }
    try:
        spec = schedule_spec({key: value for key, value in data.items() if value is not None})
    except InvalidTaskError as exc:
        fail(str(exc))  # exit 2, naming the field, before anything is sent
    s = Session.start(config_path, flags, json_mode)
    schedule = s.call(lambda client: client.put_schedule(spec, create_only=not replace))
    _done(s, schedule, f"{'replaced' if replace else 'made'} schedule {name}")


@schedules_group.command("show")
@click.argument("name")
@click.option("--next", "next_runs", type=click.IntRange(1, 100), default=5, show_default=True)
@client_options
def show(name: str, next_runs: int, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Show one schedule: its definition, last run and task, and its next runs."""
    s = Session.start(config_path, flags, json_mode)
    schedule = s.call(lambda client: client.schedule(name))
    now = wall_clock_ms()
    if json_mode:
        s.out.json(schedule_json(schedule, now))
    else:
        s.out.show(schedule_details(schedule, now, next_runs=next_runs))


@schedules_group.command("pause")
@click.argument("name")
@client_options
def pause(name: str, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Stop a schedule firing until it is resumed."""
    s = Session.start(config_path, flags, json_mode)
    _done(s, s.call(lambda client: client.pause_schedule(name)), f"paused schedule {name}")


@schedules_group.command("resume")
@click.argument("name")
@client_options
def resume(name: str, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Let a paused schedule fire again, from its next tick after now."""
    s = Session.start(config_path, flags, json_mode)
    _done(s, s.call(lambda client: client.resume_schedule(name)), f"resumed schedule {name}")


@schedules_group.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@client_options
def delete(name: str, yes: bool, config_path: str | None, json_mode: bool, **flags: Any) -> None:
    """Delete a schedule (the tasks it submitted stay).

    Asks first on a terminal; without one it needs --yes.
    """
    s = Session.start(config_path, flags, json_mode)
    s.call(lambda client: client.schedule(name))  # exit 3 for an unknown name, before asking
    if not yes:
        if not sys.stdin.isatty():
            fail(f"delete would remove schedule {name}: pass --yes to confirm")
        if not click.confirm(f"Delete schedule {name}?", err=True):
            fail("delete cancelled; nothing was deleted", EXIT_FAILED)
    s.call(lambda client: client.delete_schedule(name))
    if json_mode:
        s.out.json({"deleted": name})
    else:
        s.out.line(f"deleted schedule {name}")


def _done(s: Session, schedule: Schedule, what: str) -> None:
    now = wall_clock_ms()
    if s.out.json_mode:
        s.out.json(schedule_json(schedule, now))
    else:
        s.out.line(what)
        s.out.show(schedule_details(schedule, now, next_runs=3))
