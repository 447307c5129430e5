"""The ``taskqueue`` command line."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
import trio

from taskqueue.config import Config, load_config
from taskqueue.errors import ConfigError
from taskqueue.logs import configure_logging
from taskqueue.processors import LoadedPlugins, PluginLoadError, load_plugins

log = logging.getLogger("taskqueue")

# Exit codes: they mean the same for every command.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"taskqueue: {message}", err=True)
    sys.exit(code)


def config_options(func: Any) -> Any:
    """The flags every command shares; each maps onto one configuration key."""
    options = [
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def worker_options(func: Any) -> Any:
    options = [
        click.option("--concurrency", type=int, help="Tasks run at once (worker.concurrency)."),
        click.option("--worker-id", help="This worker's id (worker.id)."),
        click.option("--task-types", help="Comma-separated types to run (worker.task_types)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def server_options(func: Any) -> Any:
    options = [
        click.option("--host", help="Address the API listens on (server.host)."),
        click.option("--port", type=int, help="Port of the API (server.port)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_FLAG_KEYS = {
    "redis_url": "redis.url",
    "log_level": "logging.level",
    "log_format": "logging.format",
    "concurrency": "worker.concurrency",
    "worker_id": "worker.id",
    "task_types": "worker.task_types",
    "host": "server.host",
    "port": "server.port",
}


def load(config_path: str | None, flags: dict[str, Any]) -> Config:
    overrides = {_FLAG_KEYS[name]: value for name, value in flags.items() if name in _FLAG_KEYS}
    try:
        return load_config(config_path, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc))


def plugins_for(config: Config) -> LoadedPlugins:
    try:
        return load_plugins(settings=config.plugins, skip_broken=config.worker.skip_broken_plugins)
    except PluginLoadError as exc:
        fail(f"{exc} (set worker.skip_broken_plugins = true to start without it)", EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskqueue")
def main() -> None:
    """taskqueue: a distributed task queue on trio and Redis."""


def _serve(mode: str, config_path: str | None, flags: dict[str, Any]) -> None:
    from taskqueue.daemon.runtime import Mode, run_daemon

    config = load(config_path, flags)
    configure_logging(config.logging.level, config.logging.format)
    plugins = plugins_for(config)
    with contextlib.ExitStack() as stack:
        if config.redis.url is None:
            if mode != "run":
                fail(
                    f"`taskqueue {mode}` needs redis.url: its processes share one Redis. "
                    "`taskqueue run` starts an embedded Redis when none is configured."
                )
            from taskqueue.embedded import EmbeddedRedis

            data_dir = Path(config.redis.data_dir)
            data_dir.mkdir(parents=True, exist_ok=True)
            server = stack.enter_context(EmbeddedRedis(data_dir=data_dir))
            log.info(
                "no redis.url configured: started an embedded Redis at %s (data in %s)",
                server.url,
                data_dir.resolve(),
            )
            config = attrs.evolve(config, redis=attrs.evolve(config.redis, url=server.url))
        try:
            trio.run(lambda: run_daemon(config, plugins, mode=Mode(mode), api=_api_service()))
        except ValueError as exc:
            fail(str(exc))


def _api_service() -> Any:
    """The API service, when the API package is installed with this one."""
    try:
        from taskqueue.api.service import serve_api  # type: ignore[import-not-found]
    except ImportError:
        return None
    return serve_api


@main.command()
@config_options
@worker_options
@server_options
def run(config_path: str | None, **flags: Any) -> None:
    """Everything in one process: API, worker, scheduler, reaper (embedded Redis if none)."""
    _serve("run", config_path, flags)


@main.command()
@config_options
@worker_options
def worker(config_path: str | None, **flags: Any) -> None:
    """Run tasks (no API). Several workers can share one Redis."""
    _serve("worker", config_path, flags)


@main.command()
@config_options
@server_options
def server(config_path: str | None, **flags: Any) -> None:
    """Serve the API only (no tasks run in this process)."""
    _serve("server", config_path, flags)


@main.command()
@config_options
def plugins(config_path: str | None, **flags: Any) -> None:
    """List installed plugins: their task types, versions and per-type defaults."""
    config = load(config_path, flags)
    loaded = plugins_for(config)
    rows = [
        (spec.task_type, spec.plugin, spec.version, spec.description)
        for spec in loaded.registry.specs()
    ]
    width = max((len(r[0]) for r in rows), default=4)
    for task_type, plugin, version, description in rows:
        click.echo(f"{task_type:<{width}}  {version or plugin:<32}  {description}")
    for name, error in loaded.broken.items():
        click.echo(f"{name}: BROKEN: {error}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
