"""``taskqueue bench``: load-test the running workers and report throughput and latency.

The generator itself (pacing, following the tasks, the arithmetic) is
:mod:`taskqueue.cli.loadgen`; this module is the command around it.
"""

from __future__ import annotations

from typing import Any

import click

from taskqueue.cli.common import (
    DURATION,
    EXIT_FAILED,
    PRIORITIES,
    Session,
    client_options,
    fail,
    read_payload,
)
from taskqueue.cli.loadgen import BenchPlan, BenchReport, report_details, run_bench
from taskqueue.cli.views import span
from taskqueue.client import Client


@click.command()
@click.option("--count", "-n", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--type", "task_type", metavar="TYPE", default="noop", show_default=True)
@click.option("--payload", metavar="JSON", help="Payload of every task, as JSON text.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Submit this many tasks per second (default: as fast as batches go).",
)
@click.option("--batch", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option(
    "--priority",
    type=click.Choice(PRIORITIES),
    help="Default: the task type's own, else medium.",
)
@click.option(
    "--timeout",
    **DURATION,
    default="5m",
    show_default=True,
    help="How long to wait for the tasks after the last submission.",
)
@client_options
def bench(
    count: int,
    task_type: str,
    payload: str | None,
    rate: float | None,
    batch: int,
    priority: str | None,
    timeout: float,
    config_path: str | None,
    json_mode: bool,
    **flags: Any,
) -> None:
    """Load-test the running workers: submit tasks, wait for all, report throughput and latency.

    Latency is submit to finish, from the task records (p50/p90/p99/max). Exit 1 if a task did
    not succeed or did not end within --timeout.
    """
    plan = BenchPlan(
        count=count,
        task_type=task_type,
        payload=read_payload(payload, None),
        rate=rate,
        batch=batch,
        priority=priority,
        timeout=timeout,
    )
    s = Session.start(config_path, flags, json_mode)
    out = s.out

    async def measure(client: Client) -> BenchReport:
        found = await client.workers()
        if not any(task_type in w.task_types for w in found):
            out.note(
                f"no live worker runs {task_type} tasks yet: they will wait for one "
                f"(up to --timeout {span(timeout)})"
            )
        with out.progress(("submitted", count), ("finished", count)) as bars:
            return await run_bench(client, plan, bars)

    report = s.call_redis(measure)
    if json_mode:
        out.json(report.to_json())
    else:
        out.show(report_details(report))
    if report.timed_out:
        fail(
            f"{count - report.finished} of {count} tasks had not ended after {span(timeout)}",
            EXIT_FAILED,
        )
    if not report.ok:
        fail(
            f"{count - report.by_state.get('succeeded', 0)} of {count} tasks did not succeed",
            EXIT_FAILED,
        )
