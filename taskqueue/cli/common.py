"""What every command shares: exit codes, the one-line error, configuration flags, and the
:class:`Session` that runs an operation under trio on an :class:`~taskqueue.operating.Operator`:
a :class:`~taskqueue.client.Client` on Redis, or with ``taskqueue --api URL`` a
:class:`~taskqueue.rest_client.RestClient` on the REST API.

A command never lets a traceback reach the operator: :func:`explain` maps every error
taskqueue knows onto an exit code and one line, and :meth:`Session.call` prints that line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
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
    ScheduleNotFoundError,
    TaskNotFoundError,
    TooManySchedulesError,
    UnservedTypeError,
)
from taskqueue.models import Priority, TaskState
from taskqueue.operating import Operator
from taskqueue.redis import AuthenticationError, NotRedisError, RedisConnectionError, RedisError
from taskqueue.rest_client import ApiTokenError, ApiUnreachableError, RestClient, RestError

T = TypeVar("T")

# Exit codes: they mean the same for every command.
EXIT_OK = 0
#: The task failed (``submit --wait``: it ended dead, cancelled or expired, or did not end in
#: time), or the operation does not apply to the task as it is (cancel a finished task, requeue
#: one that is not dead), or Redis refused it (queue full, a task type no live worker serves).
EXIT_FAILED = 1
#: Bad usage or input: an unknown option, a payload that is not JSON, an invalid field, a bad
#: configuration. Click's own usage errors exit 2 as well.
EXIT_USAGE = 2
#: No task with that id.
EXIT_NOT_FOUND = 3
#: Redis cannot be reached (refused, timed out, wrong password); with ``--api``: the API cannot
#: be reached (refused, timed out, TLS refused) or is not ready (503).
EXIT_UNREACHABLE = 4
#: The data directory is in use: another ``taskqueue run`` holds its lock.
EXIT_BUSY = 5
#: With ``--api``: the API refused the bearer token (none given, an unknown one, or a read
#: token for a command that writes). Not 4: retrying will not help, another token will.
EXIT_TOKEN = 6
#: Ctrl-C in a one-shot command, as shells report SIGINT. ``--watch`` ends on Ctrl-C with 0.
EXIT_INTERRUPTED = 130

#: The environment's stand-ins for the global ``--api`` options.
API_ENV_VAR = "TASKQUEUE_API_URL"
TOKEN_ENV_VAR = "TASKQUEUE_API_TOKEN"
TOKEN_FILE_ENV_VAR = "TASKQUEUE_API_TOKEN_FILE"
CAFILE_ENV_VAR = "TASKQUEUE_API_CAFILE"

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
            click.option(
                "--redis-url",
                help="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL"
                " (redis.url).",
            ),
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
    if isinstance(exc, ApiTokenError):
        return EXIT_TOKEN, message + _TOKEN_HINTS[exc.problem]
    if isinstance(exc, ApiUnreachableError) and exc.untrusted:
        return EXIT_UNREACHABLE, f"{message}; name its CA with --api-cafile (${CAFILE_ENV_VAR})"
    if isinstance(exc, ApiUnreachableError):
        return EXIT_UNREACHABLE, message
    if isinstance(exc, RestError):
        return EXIT_FAILED, message
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
    if isinstance(exc, TaskNotFoundError | ScheduleNotFoundError):
        return EXIT_NOT_FOUND, message
    if isinstance(exc, UnservedTypeError):
        return EXIT_FAILED, message
    if isinstance(exc, InvalidTaskError):
        return EXIT_USAGE, message
    if isinstance(
        exc, ConflictingStateError | QueueFullError | TooManySchedulesError | TimeoutError
    ):
        return EXIT_FAILED, message
    if isinstance(exc, RedisError):
        return EXIT_FAILED, f"Redis error: {message}"
    return None, f"unexpected error: {type(exc).__name__}: {message}"


_TOKEN_HINTS = {
    "missing": f"; give one with --token-file PATH, --token or ${TOKEN_FILE_ENV_VAR}",
    "unknown": f" (check --token-file, --token, ${TOKEN_FILE_ENV_VAR} or ${TOKEN_ENV_VAR})",
    "read-only": "; use an admin token for this command",
}


# -- the API ------------------------------------------------------------------------------------


@attrs.frozen
class ApiTarget:
    """Where ``taskqueue --api`` sends a command, and with which token and CA."""

    url: str
    token: str | None
    cafile: str | None

    def client(self) -> RestClient:
        return RestClient(self.url, token=self.token, cafile=self.cafile)


def api_options(func: Any) -> Any:
    """The global options that send the operator tools through the REST API."""
    return stack_options(
        func,
        [
            click.option(
                "--api",
                "api_url",
                metavar="URL",
                envvar=API_ENV_VAR,
                help=f"Run the command through the REST API at URL (http:// or https://) "
                f"instead of Redis (${API_ENV_VAR}).",
            ),
            click.option(
                "--token-file",
                type=click.Path(dir_okay=False),
                envvar=TOKEN_FILE_ENV_VAR,
                help=f"Read the API's bearer token from this file (${TOKEN_FILE_ENV_VAR}).",
            ),
            click.option(
                "--token",
                envvar=TOKEN_ENV_VAR,
                help=f"The API's bearer token (${TOKEN_ENV_VAR}; a file keeps it out of ps "
                "and shell history).",
            ),
            click.option(
                "--api-cafile",
                type=click.Path(dir_okay=False),
                envvar=CAFILE_ENV_VAR,
                help=f"CA bundle that signs the API's certificate (default: the system's "
                f"store; ${CAFILE_ENV_VAR}).",
            ),
        ],
    )


def api_target(
    ctx: click.Context,
    api_url: str | None,
    token: str | None,
    token_file: str | None,
    api_cafile: str | None,
) -> ApiTarget | None:
    """The API the command goes through (None: Redis), after checking the options agree."""
    if api_url is None:
        for name, value in (
            ("token", token),
            ("token_file", token_file),
            ("api_cafile", api_cafile),
        ):
            if (
                value is not None
                and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
            ):
                fail(f"--{name.replace('_', '-')} is for --api; give --api URL as well")
        return None
    if token is not None and token_file is not None:
        # A flag wins over the environment's variable; two flags (or two variables) clash.
        by_flag = click.core.ParameterSource.COMMANDLINE
        if ctx.get_parameter_source("token") is ctx.get_parameter_source("token_file"):
            both = f"--token (${TOKEN_ENV_VAR}) or --token-file (${TOKEN_FILE_ENV_VAR})"
            fail(f"give one token: {both}")
        if ctx.get_parameter_source("token") is by_flag:
            token_file = None
        else:
            token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"--token-file {token_file}: cannot read it: {exc.strerror}")
        except UnicodeDecodeError as exc:
            fail(f"--token-file {token_file}: not text: {exc}")
        if not token or len(token.split()) != 1:
            fail(f"--token-file {token_file}: expected one token on one line")
    return ApiTarget(api_url, token or None, api_cafile)


def current_api() -> ApiTarget | None:
    """The ``--api`` target of the running command (None: it works on Redis)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, ApiTarget) else None


# -- sessions ---------------------------------------------------------------------------------


@attrs.frozen
class Session:
    """What one tool invocation works with: the effective configuration and where to print."""

    config: Config
    out: Output
    #: Which step of the search named the Redis, for the hint when it cannot be reached.
    source: Source = Source.CONFIG
    #: With ``--api``: the API the command goes through instead of Redis.
    api: ApiTarget | None = None

    @classmethod
    def start(cls, config_path: str | None, flags: dict[str, Any], json_mode: bool) -> Session:
        """The session of a command, on the Redis :func:`~taskqueue.discovery.find_redis`
        names: beside a ``taskqueue run``, the embedded Redis it advertises in its data
        directory, so the tools need no more configuration than the daemon. With ``--api``,
        on that API: no Redis is looked for or touched."""
        config = load(config_path, flags)
        api = current_api()
        if api is not None:
            if flags.get("redis_url") is not None:
                fail("--redis-url and --api name two ways to the queue: give one")
            return cls(config, Output(json_mode=json_mode), api=api)
        found = find_redis(config, url=flags.get("redis_url"))
        assert found is not None  # the default is allowed
        config = attrs.evolve(config, redis=attrs.evolve(config.redis, url=found.url))
        return cls(config, Output(json_mode=json_mode), found.source)

    def call(
        self, operation: Callable[[Operator], Awaitable[T]], *, interrupt_ok: bool = False
    ) -> T:
        """Run ``operation`` with a fresh client under trio (on the API with ``--api``, else on
        Redis); any failure becomes an exit code and one line on stderr. Ctrl-C exits 130, or
        0 with ``interrupt_ok`` (a ``--watch`` is ended that way). Only ``--log-level debug``
        lets a traceback through, and only for an error taskqueue does not know."""

        async def with_client() -> T:
            if self.api is not None:
                async with self.api.client() as remote:
                    return await operation(remote)
            async with self._redis_client() as client:
                return await operation(client)

        return self._run(with_client, interrupt_ok)

    def call_redis(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """:meth:`call` for a command that only Redis serves (``bench`` reads tasks in bulk)."""

        async def with_client() -> T:
            async with self._redis_client() as client:
                return await operation(client)

        return self._run(with_client, False)

    def _redis_client(self) -> Client:
        # Two connection attempts: an operator waiting at a prompt wants the verdict soon.
        # The URL found at start: --redis-url must win over TASKQUEUE_REDIS__URL here too.
        url = self.config.redis.url
        return Client.from_config(self.config, url=url, pool_size=4, connect_attempts=2)

    def _run(self, with_client: Callable[[], Awaitable[T]], interrupt_ok: bool) -> T:
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
            if code == EXIT_UNREACHABLE and self.source is Source.DEFAULT and self.api is None:
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
