"""What every command shares: exit codes, the one-line error, configuration flags, and the
:class:`Session` that runs an operation on a :class:`~taskqueue.client.Client` under trio.

A command never lets a traceback reach the operator: :func:`explain` maps every error
taskqueue knows onto an exit code and one line, and :meth:`Session.call` prints that line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import IO, Any, NoReturn, TypeVar

import attrs
import click
import trio

from taskqueue.cli.output import Output
from taskqueue.client import Client
from taskqueue.config import Config, load_config, parse_duration
from taskqueue.discovery import URL_ENV_VAR, Source, find_redis
from taskqueue.errors import (
    ConfigError,
    ConflictingStateError,
    DurabilityUnsupportedError,
    InvalidTaskError,
    ListenError,
    NotDurableError,
    QueueFullError,
    TaskNotFoundError,
    UnservedTypeError,
)
from taskqueue.models import Priority, TaskState
from taskqueue.redis import AuthenticationError, NotRedisError, RedisConnectionError, RedisError

T = TypeVar("T")

# Exit codes: they mean the same for every command.
EXIT_OK = 0
#: The task failed (``submit --wait``: it ended dead or cancelled, or did not end in time), or
#: the operation does not apply to the task as it is (cancel a finished task, requeue one that
#: is not dead), or Redis refused it (queue full, a task type no live worker serves).
EXIT_FAILED = 1
#: Bad usage or input: an unknown option, a payload that is not JSON, an invalid field, a bad
#: configuration. Click's own usage errors exit 2 as well.
EXIT_USAGE = 2
#: No task with that id.
EXIT_NOT_FOUND = 3
#: Redis cannot be reached (refused, timed out, wrong password).
EXIT_UNREACHABLE = 4
#: The data directory is in use: another ``taskqueue run`` holds its lock.
EXIT_BUSY = 5
#: Ctrl-C in a one-shot command, as shells report SIGINT. ``--watch`` ends on Ctrl-C with 0.
EXIT_INTERRUPTED = 130

PRIORITIES = [p.value for p in Priority]
STATES = [s.value for s in TaskState]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Say what went wrong in one line on stderr and exit with ``code``."""
    click.echo(f"taskqueue: {message}", err=True)
    sys.exit(code)


class Refused(Exception):
    """A command's own reason to stop, raised inside trio and turned into ``fail`` outside."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- flags ------------------------------------------------------------------------------------

#: Command-line flag -> the configuration key it sets.
FLAG_KEYS = {
    "redis_url": "redis.url",
    "log_level": "logging.level",
    "log_format": "logging.format",
    "concurrency": "worker.concurrency",
    "worker_id": "worker.id",
    "task_types": "worker.task_types",
    "processors": "worker.processors",
    "host": "server.host",
    "port": "server.port",
}


def stack_options(func: Any, options: list[Callable[[Any], Any]]) -> Any:
    """Apply click ``options`` to ``func`` so that ``--help`` lists them in the given order."""
    for option in reversed(options):
        func = option(func)
    return func


def config_options(func: Any) -> Any:
    """The flags every command shares; each maps onto one configuration key."""
    return stack_options(
        func,
        [
            click.option(
                "--config",
                "-c",
                "config_path",
                type=click.Path(dir_okay=False),
                help="TOML configuration file (default: $TASKQUEUE_CONFIG).",
            ),
            click.option("--redis-url", help="redis://, rediss:// or unix:// URL (redis.url)."),
            click.option("--log-level", help="debug, info, warning, error (logging.level)."),
            click.option("--log-format", help="auto, json, console, journald (logging.format)."),
        ],
    )


def client_options(func: Any) -> Any:
    """The shared configuration flags plus ``--json``, for every command that reads Redis."""
    func = click.option(
        "--json",
        "json_mode",
        is_flag=True,
        help="Print JSON (the REST API's shapes) instead of a table.",
    )(func)
    return config_options(func)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Seconds from ``30``, ``250ms``, ``5m``..., as the configuration file takes durations."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: The keyword arguments of a duration option (a callback rather than a ParamType subclass,
#: which click 8.1 and 8.2+ type differently).
DURATION: dict[str, Any] = {"type": str, "callback": _duration, "metavar": "DURATION"}


def load(config_path: str | None, flags: dict[str, Any]) -> Config:
    """The effective configuration: defaults, file, ``TASKQUEUE_*`` variables, then flags."""
    overrides = {FLAG_KEYS[name]: value for name, value in flags.items() if name in FLAG_KEYS}
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc))


def read_payload(payload: str | None, payload_file: IO[str] | None) -> Any:
    """The payload from ``--payload`` or ``--payload-file`` (JSON either way; None if neither)."""
    if payload is not None and payload_file is not None:
        fail("give --payload or --payload-file, not both")
    if payload_file is not None:
        text, source = payload_file.read(), f"--payload-file {payload_file.name}"
    elif payload is not None:
        text, source = payload, "--payload"
    else:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"{source} is not JSON: {exc}")


# -- errors -----------------------------------------------------------------------------------


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def explain(exc: BaseException) -> tuple[int | None, str]:
    """The exit code and one-line message for ``exc`` (None: not an error taskqueue knows).

    Nurseries wrap errors in exception groups; what matters is the leaf that started it, so
    the groups are flattened and cancellations (the echo of that leaf) are skipped.
    """
    leaves = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)] or [exc]
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        return EXIT_INTERRUPTED, "interrupted"
    exc = leaves[0]
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, Refused):
        return exc.code, message
    if isinstance(exc, NotRedisError | DurabilityUnsupportedError | NotDurableError):
        return EXIT_UNREACHABLE, message
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, message
    if isinstance(exc, ListenError):
        return EXIT_FAILED, message
    if isinstance(exc, AuthenticationError):
        return EXIT_UNREACHABLE, f"Redis refused the credentials: {message}"
    if isinstance(exc, RedisConnectionError):
        return EXIT_UNREACHABLE, f"{message} (is Redis running? check redis.url)"
    if isinstance(exc, TaskNotFoundError):
        return EXIT_NOT_FOUND, message
    if isinstance(exc, UnservedTypeError):
        return EXIT_FAILED, message
    if isinstance(exc, InvalidTaskError):
        return EXIT_USAGE, message
    if isinstance(exc, ConflictingStateError | QueueFullError | TimeoutError):
        return EXIT_FAILED, message
    if isinstance(exc, RedisError):
        return EXIT_FAILED, f"Redis error: {message}"
    return None, f"unexpected error: {type(exc).__name__}: {message}"


# -- sessions ---------------------------------------------------------------------------------


@attrs.frozen
class Session:
    """What one tool invocation works with: the effective configuration and where to print."""

    config: Config
    out: Output
    #: Which step of the search named the Redis, for the hint when it cannot be reached.
    source: Source = Source.CONFIG

    @classmethod
    def start(cls, config_path: str | None, flags: dict[str, Any], json_mode: bool) -> Session:
        """The session of a command, on the Redis :func:`~taskqueue.discovery.find_redis`
        names: beside a ``taskqueue run``, the embedded Redis it advertises in its data
        directory, so the tools need no more configuration than the daemon."""
        config = load(config_path, flags)
        found = find_redis(config, url=flags.get("redis_url"))
        assert found is not None  # the default is allowed
        config = attrs.evolve(config, redis=attrs.evolve(config.redis, url=found.url))
        return cls(config, Output(json_mode=json_mode), found.source)

    def call(self, operation: Callable[[Client], Awaitable[T]], *, interrupt_ok: bool = False) -> T:
        """Run ``operation`` with a fresh client under trio; any failure becomes an exit code
        and one line on stderr. Ctrl-C exits 130, or 0 with ``interrupt_ok`` (a ``--watch``
        is ended that way). Only ``--log-level debug`` lets a traceback through, and only for
        an error taskqueue does not know."""

        async def with_client() -> T:
            # Two connection attempts: an operator waiting at a prompt wants the verdict soon.
            # The URL found at start: --redis-url must win over TASKQUEUE_REDIS__URL here too.
            url = self.config.redis.url
            async with Client.from_config(
                self.config, url=url, pool_size=4, connect_attempts=2
            ) as client:
                return await operation(client)

        try:
            return trio.run(with_client)
        except (SystemExit, click.exceptions.Exit):
            raise
        except BaseException as exc:
            if isinstance(exc, BrokenPipeError):
                raise  # click's own handling: the reader went away (`... | head`)
            code, message = explain(exc)
            if code == EXIT_INTERRUPTED and interrupt_ok:
                sys.exit(EXIT_OK)
            if code == EXIT_UNREACHABLE and self.source is Source.DEFAULT:
                message += (
                    f"; no redis.url is configured ({URL_ENV_VAR}, --redis-url or the config "
                    "file) and no `taskqueue run` advertises one in the data directory"
                )
            if code is None:
                if self.config.logging.level == "debug":
                    raise
                message += " (--log-level debug shows the traceback)"
                code = EXIT_FAILED
            fail(message, code)
