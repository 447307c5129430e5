"""``taskqueue workers`` and ``queues`` (alias ``stats``): what runs and what waits, once or
``--watch``-ed.

A watch on a terminal redraws one screen in place; piped, it prints one snapshot after another
(one JSON document per line with ``--json``), which is what a log file or ``jq`` wants.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import trio
from rich.live import Live
from rich.text import Text

from taskqueue.broker import QueueReport, wall_clock_ms
from taskqueue.cli.common import DURATION, Session, client_options, fail
from taskqueue.cli.policy_views import policy_listing, unserved_listing
from taskqueue.cli.views import (
    View,
    span,
    stats_views,
    worker_listing,
)
from taskqueue.models import WorkerInfo
from taskqueue.operating import Operator
from taskqueue.redis import RedisConnectionError
from taskqueue.rest_client import ApiUnreachableError
from taskqueue.wire import iso, report_json, worker_json

T = TypeVar("T")


def watch_options(func: Any) -> Any:
    func = click.option(
        "--interval",
        **DURATION,
        default="2s",
        show_default=True,
        help="Time between refreshes with --watch.",
    )(func)
    return click.option("--watch", "-w", is_flag=True, help="Refresh until Ctrl-C.")(func)


@click.command()
@watch_options
@client_options
def workers(
    watch: bool, interval: float, config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """List the live workers: load, counts, uptime, last heartbeat and task types."""

    def views(found: list[WorkerInfo], now: int) -> list[View]:
        return [worker_listing(found, now)]

    def as_json(found: list[WorkerInfo]) -> Any:
        now, dead_after = wall_clock_ms(), s.config.worker.worker_timeout
        return [worker_json(w, now_ms=now, dead_after=dead_after) for w in found]

    s = Session.start(config_path, flags, json_mode)
    observe(s, "workers", lambda client: client.workers(), views, as_json, watch, interval)


@click.command()
@watch_options
@client_options
def queues(
    watch: bool, interval: float, config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """Queue depths: tasks by state, live tasks by type, lifetime totals, the task types no
    live worker serves, and the queue policy (also: ``stats``)."""

    def views(report: QueueReport, now: int) -> list[View]:
        return [*stats_views(report.stats), unserved_listing(report), policy_listing(report.policy)]

    s = Session.start(config_path, flags, json_mode)
    observe(s, "queues", lambda client: client.queue_report(), views, report_json, watch, interval)


def observe(
    s: Session,
    title: str,
    fetch: Callable[[Operator], Awaitable[T]],
    views: Callable[[T, int], list[View]],
    as_json: Callable[[T], Any],
    watch: bool,
    interval: float,
) -> None:
    """Show ``fetch``'s result once, or every ``interval`` seconds with ``watch``."""
    if not watch:
        value = s.call(fetch)
        if s.out.json_mode:
            s.out.json(as_json(value))
        else:
            s.out.show(*views(value, wall_clock_ms()))
        return
    if interval <= 0:
        fail("--interval must be above 0")
    s.call(
        lambda client: _watch(s, client, title, fetch, views, as_json, interval), interrupt_ok=True
    )


async def _watch(
    s: Session,
    client: Operator,
    title: str,
    fetch: Callable[[Operator], Awaitable[T]],
    views: Callable[[T, int], list[View]],
    as_json: Callable[[T], Any],
    interval: float,
) -> None:
    """Until Ctrl-C (which exits 0). A Redis (or an API) that goes away after the first snapshot is
    reported and retried, not fatal: a watch is what an operator leaves open while they
    restart things."""
    out = s.out
    live = Live(console=out.console, auto_refresh=False) if out.rich else None
    first = True
    with live if live is not None else contextlib.nullcontext():
        while True:
            now = wall_clock_ms()
            clock = datetime.now().strftime("%H:%M:%S")
            try:
                value = await fetch(client)
            except (RedisConnectionError, ApiUnreachableError) as exc:
                if first:
                    raise
                if live is not None:
                    live.update(Text(f"{clock}  {exc} (retrying)", style="red"), refresh=True)
                else:
                    out.note(f"{clock}  {exc} (retrying)")
            else:
                if live is not None:
                    header = Text(
                        f"{title} · {clock} · every {span(interval)} · Ctrl-C to stop",
                        style="dim",
                    )
                    live.update(out.renderable(views(value, now), header), refresh=True)
                elif out.json_mode:
                    out.json(as_json(value), compact=True)
                else:
                    out.line(f"# {title} at {iso(now)}")
                    out.show(*views(value, now))
                    out.line("")
            first = False
            await trio.sleep(interval)
