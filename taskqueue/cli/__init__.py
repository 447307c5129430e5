"""The ``taskqueue`` command line: the daemon (``run``, ``worker``, ``server``) and the tools an
operator steers it with (``submit``, ``status``, ``cancel``, ``tasks``, ``purge``, ``workers``,
``queues``, ``policy``, ``dlq``, ``plugins``, ``config check``, ``bench``), and ``systemd install``.

The tools talk to Redis through :class:`taskqueue.Client` (the same scripts the API and the
workers run), so they need no API server; or, with ``taskqueue --api URL`` and a bearer token,
to the REST API through :class:`taskqueue.rest_client.RestClient`, for operators with no Redis
route. Each command is written once, against :class:`taskqueue.operating.Operator`. One module
per command group; what they print is built in :mod:`taskqueue.cli.views` and printed by
:mod:`taskqueue.cli.output`: tables on a terminal, plain columns in a pipe, ``--json`` for
scripts (the same documents whichever way the command went).

Exit codes mean the same for every command (:mod:`taskqueue.cli.common`): 0 ok, 1 the task
failed or the operation does not apply, 2 usage or invalid input, 3 no such task, 4 Redis
cannot be reached (with ``--api``: the API cannot be reached or is not ready), 5 the data
directory is in use by another ``taskqueue run``, 6 the API refused the token. Errors are one
line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from taskqueue.cli.bench import bench
from taskqueue.cli.common import (
    API_ENV_VAR,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TOKEN,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    api_options,
    api_target,
    fail,
)
from taskqueue.cli.configuration import config_group
from taskqueue.cli.daemon import run, server, worker
from taskqueue.cli.dlq import dlq
from taskqueue.cli.observe import queues, workers
from taskqueue.cli.pausing import pause, resume
from taskqueue.cli.plugins import plugins
from taskqueue.cli.policy import policy_group
from taskqueue.cli.schedules import schedules_group
from taskqueue.cli.systemd import systemd_group
from taskqueue.cli.tasks import cancel, purge, status, submit, tasks, workflow

__all__ = [
    "EXIT_BUSY",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TOKEN",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "main",
]


class _Commands(click.Group):
    """The command group, with click's own errors (a missing argument, an unknown option, a
    bad value) said in one line like every other error, instead of a usage block."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **extra)
        try:
            code = super().main(args, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `taskqueue` alone: the help, as click shows it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "taskqueue"
            fail(f"{exc.format_message()} (see `{where} --help`)", EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("interrupted", EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else EXIT_OK)


#: The commands that run through the REST API with ``--api``; the others work on Redis, or on
#: this machine, and refuse ``--api``.
OVER_API = (
    "submit",
    "status",
    "workflow",
    "cancel",
    "tasks",
    "workers",
    "queues",
    "stats",
    "dlq",
    "purge",
    "policy",
    "pause",
    "resume",
    "schedules",
)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskqueue")
@api_options
@click.pass_context
def main(
    ctx: click.Context,
    api_url: str | None,
    token: str | None,
    token_file: str | None,
    api_cafile: str | None,
) -> None:
    """taskqueue: a distributed task queue on trio and Redis.

    With --api URL (and --token-file), the operator tools (submit, status, workflow, cancel,
    tasks, purge, workers, queues, dlq, policy, pause, resume, schedules) run through the REST
    API instead of Redis.
    """
    ctx.obj = api_target(ctx, api_url, token, token_file, api_cafile)
    command = ctx.invoked_subcommand
    if ctx.obj is not None and command is not None and command not in OVER_API:
        given = ctx.get_parameter_source("api_url") is click.core.ParameterSource.COMMANDLINE
        drop = "without --api" if given else f"with ${API_ENV_VAR} unset"
        fail(
            f"`taskqueue {command}` does not run through the API; run it {drop}. "
            f"Through the API: {', '.join(OVER_API)}",
            EXIT_USAGE,
        )


for command in (
    run,
    worker,
    server,
    submit,
    status,
    workflow,
    cancel,
    tasks,
    purge,
    workers,
    queues,
    dlq,
    plugins,
    policy_group,
    pause,
    resume,
    schedules_group,
    config_group,
    bench,
    systemd_group,
):
    main.add_command(command)
main.add_command(queues, name="stats")
