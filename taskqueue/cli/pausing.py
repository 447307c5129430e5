"""``taskqueue pause|resume TYPE...``: stop and restart the claiming of task types across
every worker, while submissions still queue. Pausing is the live policy setting ``paused`` of
each type, so it lasts across restarts until resumed (see :mod:`taskqueue.broker.policy`)."""

from __future__ import annotations

from typing import Any

import click

from taskqueue.cli.common import Session, client_options
from taskqueue.models import QueueStats
from taskqueue.operating import Operator


@click.command()
@click.argument("task_types", nargs=-1, required=True, metavar="TYPE...")
@client_options
def pause(
    task_types: tuple[str, ...], config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """Pause task types: workers claim none of their tasks (running ones finish);
    submissions still queue. ``taskqueue resume`` undoes it."""
    _apply(task_types, config_path, json_mode, flags, paused=True)


@click.command()
@click.argument("task_types", nargs=-1, required=True, metavar="TYPE...")
@client_options
def resume(
    task_types: tuple[str, ...], config_path: str | None, json_mode: bool, **flags: Any
) -> None:
    """Resume paused task types: the workers claim their waiting tasks at once."""
    _apply(task_types, config_path, json_mode, flags, paused=False)


def _apply(
    task_types: tuple[str, ...],
    config_path: str | None,
    json_mode: bool,
    flags: dict[str, Any],
    *,
    paused: bool,
) -> None:
    s = Session.start(config_path, flags, json_mode)

    async def apply(client: Operator) -> QueueStats:
        for task_type in task_types:
            if paused:
                await client.set_policy(task_type, paused=True)
            else:
                await client.unset_policy("paused", task_type=task_type)
        return await client.stats()

    stats = s.call(apply)
    if s.out.json_mode:
        s.out.json({t: {"paused": paused, "pending": stats.pending_by_type.get(t, 0)}
                    for t in task_types})  # fmt: skip
        return
    verb = "paused" if paused else "resumed"
    for task_type in task_types:
        s.out.line(f"{verb} {task_type} ({stats.pending_by_type.get(task_type, 0)} pending)")
