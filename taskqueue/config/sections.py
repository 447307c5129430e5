"""The sections of the configuration (``[server]``, ``[redis]``, ...) and :class:`Config`.

Each setting is one field declared with :func:`~taskqueue.config.fields.setting`: its default,
its limits, and the words of its docstring are all here, in the order ``config/taskqueue.toml``
documents them. Adding a setting is adding one field.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from functools import cache
from typing import ClassVar, Final

import attrs
import msgspec
from attrs import AttrsInstance

from taskqueue.config.fields import Conflict, FieldSpec, setting, show_settings, specs_of
from taskqueue.config.units import MASK, format_duration, mask_url_value
from taskqueue.dev_processors import is_module_path
from taskqueue.models import (
    DEFAULT_MAX_SNOOZES,
    DEFAULT_MAX_TASK_TYPES,
    MAX_PARTITIONS,
    MAX_SNOOZES,
    MAX_TASK_TYPES,
    Policy,
)
from taskqueue.redis.url import RedisAddress
from taskqueue.schedules import ScheduleSpec

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("auto", "json", "console", "journald")


def _namespace_ok(name: str) -> bool:
    return not any(char in name for char in "{}:") and name == name.strip()


def _worker_id_ok(name: str) -> bool:
    return not any(char in name for char in "{}") and not any(char.isspace() for char in name)


def _redis_url_ok(url: str) -> bool:
    """A URL the Redis client can use (its own parser decides: one definition)."""
    try:
        address = RedisAddress.from_url(url)
    except ValueError:
        return False
    return bool(address.path) if url.startswith("unix:") else True


_PORT = "a port number from 0 to 65535"


@attrs.define(frozen=True, kw_only=True)
class ServerConfig:
    """The API server: where it listens, who may call it, how large a request may be.

    Bearer tokens come from ``tokens`` and/or ``token_file`` (one sha256 hex digest per line,
    so the file never holds a usable secret). ``allow_unauthenticated_public`` must be set on
    purpose to serve a non-loopback address without any token.
    """

    _section: ClassVar[str] = "server"

    host: str = setting("127.0.0.1")
    port: int = setting(9090, minimum=0, maximum=65535, expected=_PORT)
    tokens: tuple[str, ...] = setting((), secret=True)
    token_file: str | None = setting(None)
    allow_unauthenticated_public: bool = setting(False)
    certfile: str | None = setting(None)
    keyfile: str | None = setting(None)
    open_health_endpoints: bool = setting(True)
    max_request_bytes: int = setting(2 * 2**20, kind="size", positive=True)
    #: Connections served at once; one more is refused (HTTP/1.1 503, HTTP/2 GOAWAY). 0: none.
    max_connections: int = setting(1000, minimum=0)
    #: Bind with SO_REUSEPORT, so several processes serve one port (``--processes`` sets it).
    reuse_port: bool = setting(False)

    def __attrs_post_init__(self) -> None:
        if self.keyfile is not None and self.certfile is None:
            raise Conflict(
                {"server.keyfile": repr(self.keyfile), "server.certfile": "None"},
                "server.certfile as well: a key alone does not make TLS",
            )


@attrs.define(frozen=True, kw_only=True)
class RedisConfig:
    """Where tasks live. ``url = None`` starts an embedded redis-server under ``data_dir``.

    ``namespace`` prefixes every key inside a ``{...}`` hash tag (one Redis Cluster slot per
    namespace), which is why it may not contain braces or the ``:`` separator.
    ``password_file`` names a file holding the password (a relative name is a systemd
    ``LoadCredential=`` credential), so the secret needs neither this file nor the environment.
    ``partitions`` spreads the namespace over that many hash tags (``{ns}``, ``{ns:1}``, ...),
    so that on Redis Cluster one queue can use several primaries; every producer and worker
    of the namespace must agree on it. Growing it keeps the tasks already queued; shrinking
    it strands those in the partitions it drops, so drain them first.
    ``durable_submit`` makes each submission of this process wait until Redis has it on disk
    (``WAITAOF``, Redis 7.2+ with ``appendonly yes``), for at most ``durable_timeout``.
    """

    _section: ClassVar[str] = "redis"

    url: str | None = setting(
        None,
        mask=mask_url_value,
        check=_redis_url_ok,
        expected="a URL like redis://host:6379/0, rediss://host:6380/0, unix:///path/redis.sock, "
        "redis+sentinel://host:26379,host2:26379/service/0 or redis+cluster://host:7000,host2:7001/",
    )
    db: int = setting(0, minimum=0)
    username: str | None = setting(None)
    password: str | None = setting(None, secret=True)
    password_file: str | None = setting(None)
    pool_size: int = setting(16, minimum=1)
    namespace: str = setting(
        "taskqueue",
        check=_namespace_ok,
        expected="a non-empty name without '{', '}' or ':'",
    )
    partitions: int = setting(1, minimum=1, maximum=MAX_PARTITIONS)
    connect_timeout: float = setting(5.0, kind="duration", positive=True)
    data_dir: str = setting("./data")
    durable_submit: bool = setting(False)
    durable_timeout: float = setting(2.0, kind="duration", positive=True)

    def __attrs_post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise Conflict(
                {"redis.password": MASK, "redis.password_file": repr(self.password_file)},
                "only one of redis.password and redis.password_file",
            )


@attrs.define(frozen=True, kw_only=True)
class WorkerConfig:
    """The consumer: how many tasks at once, how often it proves it is alive, how it stops.

    ``worker_timeout`` is how long a silent worker is trusted before the reaper takes its tasks
    back, so it must exceed ``heartbeat_interval`` (a few intervals is sensible).
    ``priority_guard = N`` makes every Nth claim first take one task from each lower priority,
    so a flood of urgent work cannot starve the rest forever; 0 keeps priorities strict.
    """

    _section: ClassVar[str] = "worker"

    id: str | None = setting(
        None, check=_worker_id_ok, expected="a name without spaces, '{' or '}'"
    )
    concurrency: int = setting(50, minimum=1)
    prefetch: int = setting(50, minimum=0)
    heartbeat_interval: float = setting(2.0, kind="duration", positive=True)
    worker_timeout: float = setting(8.0, kind="duration", positive=True)
    cleanup_interval: float = setting(60.0, kind="duration", positive=True)
    drain_timeout: float = setting(30.0, kind="duration")
    priority_guard: int = setting(0, minimum=0)
    task_types: tuple[str, ...] = setting(())
    skip_broken_plugins: bool = setting(False)
    #: Development mode: modules imported as plugins beside the installed ones
    #: (:mod:`taskqueue.dev_processors`).
    processors: tuple[str, ...] = setting(
        (),
        check=is_module_path,
        expected='a list of module paths such as ["mypkg.tasks"] (dotted, not file names)',
    )

    def __attrs_post_init__(self) -> None:
        if self.worker_timeout <= self.heartbeat_interval:
            raise Conflict(
                {
                    "worker.worker_timeout": format_duration(self.worker_timeout),
                    "worker.heartbeat_interval": format_duration(self.heartbeat_interval),
                },
                "worker.worker_timeout > worker.heartbeat_interval, "
                "or live workers are taken for dead",
            )


@attrs.define(frozen=True, kw_only=True)
class TaskConfig:
    """Defaults for tasks that do not set their own, and limits on what may be submitted.

    A retry waits ``min(retry_max_delay, retry_base_delay * 2**attempt)`` with full jitter.
    """

    _section: ClassVar[str] = "task"

    default_timeout: float = setting(300.0, kind="duration", positive=True)
    max_retries: int = setting(3, minimum=0)
    retry_base_delay: float = setting(1.0, kind="duration")
    retry_max_delay: float = setting(300.0, kind="duration")
    max_payload_bytes: int = setting(2**20, kind="size", positive=True)
    max_result_bytes: int = setting(2**20, kind="size", positive=True)
    idempotency_window: float = setting(86400.0, kind="duration", positive=True)
    max_queue_depth: int = setting(0, minimum=0)
    refuse_unserved: bool = setting(False)
    max_task_types: int = setting(DEFAULT_MAX_TASK_TYPES, minimum=0, maximum=MAX_TASK_TYPES)
    #: Most times a processor may snooze one task (``taskqueue.Snooze``); one more is dead.
    max_snoozes: int = setting(DEFAULT_MAX_SNOOZES, minimum=0, maximum=MAX_SNOOZES)

    def __attrs_post_init__(self) -> None:
        if self.retry_max_delay < self.retry_base_delay:
            raise Conflict(
                {
                    "task.retry_max_delay": format_duration(self.retry_max_delay),
                    "task.retry_base_delay": format_duration(self.retry_base_delay),
                },
                "task.retry_max_delay >= task.retry_base_delay",
            )


@attrs.define(frozen=True, kw_only=True)
class RetentionConfig:
    """How long, and how many, finished records Redis keeps: per state, an age and a count.

    A record older than its state's age, or beyond its count (the oldest go first), is deleted
    by the trimmer of any daemon, which checks every ``interval`` and keeps up with any rate
    tasks finish at. 0 turns a limit off. Dead letters dropped this way are counted
    (``taskqueue queues``: ``dead_dropped``), and logged.
    """

    _section: ClassVar[str] = "retention"

    succeeded: float = setting(86400.0, kind="duration")
    succeeded_max: int = setting(1_000_000, minimum=0)
    cancelled: float = setting(86400.0, kind="duration")
    cancelled_max: int = setting(100_000, minimum=0)
    expired: float = setting(86400.0, kind="duration")
    expired_max: int = setting(100_000, minimum=0)
    dead: float = setting(180 * 86400.0, kind="duration")
    dead_max: int = setting(100_000, minimum=0)
    interval: float = setting(1.0, kind="duration", positive=True)


@attrs.define(frozen=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics: served at ``path`` on the API port, or on ``port`` when set.

    On the API port, with tokens configured, the metrics ask for a read token like the rest of
    the API (they name every task type, queue depth and error count); ``public = true`` opens
    them for scrapers that cannot send a bearer token. A worker-only daemon has no API server,
    so it needs ``port`` to be scraped at all. The metrics port listens on ``server.host`` and
    asks for no token: binding it beyond loopback is logged as a warning at start. 0 picks a
    free port.
    """

    _section: ClassVar[str] = "metrics"

    enabled: bool = setting(True)
    public: bool = setting(False)
    port: int | None = setting(None, minimum=0, maximum=65535, expected=_PORT)
    path: str = setting(
        "/metrics", check=lambda path: path.startswith("/"), expected="a path starting with '/'"
    )


@attrs.define(frozen=True, kw_only=True)
class LoggingConfig:
    """Log level and format. ``auto`` picks journald under systemd, console on a terminal,
    and JSON otherwise."""

    _section: ClassVar[str] = "logging"

    level: str = setting("info", choices=LOG_LEVELS)
    format: str = setting("auto", choices=LOG_FORMATS)


@attrs.define(frozen=True, kw_only=True)
class Config:
    """The whole configuration: one frozen attrs instance per section.

    Build it with :func:`load_config`; ``Config()`` is the defaults. Show it with
    :meth:`masked`, never by printing ``to_dict()``, which holds the secrets.
    """

    server: ServerConfig = attrs.field(factory=ServerConfig)
    redis: RedisConfig = attrs.field(factory=RedisConfig)
    worker: WorkerConfig = attrs.field(factory=WorkerConfig)
    task: TaskConfig = attrs.field(factory=TaskConfig)
    retention: RetentionConfig = attrs.field(factory=RetentionConfig)
    metrics: MetricsConfig = attrs.field(factory=MetricsConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    #: ``[plugins.<name>]`` tables as written, handed to the plugin registering as ``<name>``.
    plugins: Mapping[str, Mapping[str, object]] = attrs.field(factory=dict)
    #: ``[[schedules]]`` tables, checked: each daemon writes them to Redis when it starts.
    schedules: tuple[ScheduleSpec, ...] = ()
    #: ``[limits.<type>]`` tables, checked: a task type's rate and concurrency limits, which
    #: workers write to the policy's config layer when they start.
    limits: Mapping[str, Policy] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, dict[str, object]]:
        """Every value as stored (seconds, bytes; tuples as lists), secrets included."""
        result: dict[str, dict[str, object]] = {}
        for name, cls in section_classes().items():
            section = getattr(self, name)
            result[name] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in ((key, getattr(section, key)) for key in specs_of(cls))
            }
        result["plugins"] = {name: dict(table) for name, table in self.plugins.items()}
        return result

    def masked(
        self, plugin_settings: Mapping[str, object] | None = None
    ) -> dict[str, dict[str, object]]:
        """The effective configuration for people: durations like ``5s``, sizes like ``1MiB``,
        and the redis password, bearer tokens and any password in the redis URL as ``***``.

        ``plugin_settings`` are the plugins' parsed settings by plugin name: their secrets are
        masked as declared. A ``[plugins.<name>]`` table without them is masked whole, since
        nothing says which of its values are secret. Safe to log and to print from ``taskqueue
        config``.
        """
        plugin_settings = plugin_settings or {}
        result: dict[str, dict[str, object]] = {}
        for name, cls in section_classes().items():
            section = getattr(self, name)
            result[name] = {
                key: spec.show(getattr(section, key)) for key, spec in specs_of(cls).items()
            }
        result["plugins"] = {
            name: (
                show_settings(plugin_settings[name], f"plugins.{name}")  # type: ignore[arg-type]
                if name in plugin_settings
                else {key: MASK for key in table}
            )
            for name, table in self.plugins.items()
        }
        if self.limits:
            result["limits"] = {t: msgspec.to_builtins(p) for t, p in self.limits.items()}
        if self.schedules:  # by name: each is a [[schedules]] table of the file
            result["schedules"] = {s.name: msgspec.to_builtins(s) for s in self.schedules}
        return result


@cache
def section_classes() -> dict[str, type[AttrsInstance]]:
    """Config's sections by name, in the order they are documented."""
    hints = typing.get_type_hints(Config)
    return {
        field.name: hints[field.name]
        for field in attrs.fields(Config)
        if field.name not in ("plugins", "schedules", "limits")
    }


def all_specs() -> dict[str, FieldSpec]:
    """Every key of every section, by ``section.key``."""
    return {spec.key: spec for cls in section_classes().values() for spec in specs_of(cls).values()}
