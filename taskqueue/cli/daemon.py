"""``taskqueue run``, ``worker`` and ``server``: the daemon in its three shapes.

They start the same runtime (:mod:`taskqueue.daemon.runtime`) with different services
switched on; only ``run`` may start an embedded Redis, since workers and servers on several
machines must share one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
import trio

from taskqueue.cli.common import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_USAGE,
    config_options,
    explain,
    fail,
    load,
    stack_options,
)
from taskqueue.config import Config
from taskqueue.daemon.ownership import DataDirectoryBusy, own_data_dir
from taskqueue.daemon.supervisor import process_count
from taskqueue.dev_processors import import_processors
from taskqueue.discovery import advertise, find_redis
from taskqueue.errors import ConfigError
from taskqueue.locations import data_dir
from taskqueue.logs import configure_logging
from taskqueue.processors import LoadedPlugins, PluginLoadError, load_plugins

log = logging.getLogger("taskqueue")


def _given(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    """A repeatable flag given no times is None: it leaves the configured list alone."""
    return value or None


#: ``--processors MODULE``, repeatable: development mode (:mod:`taskqueue.dev_processors`).
processors_option = click.option(
    "--processors",
    multiple=True,
    callback=_given,
    metavar="MODULE",
    help="Also load processors from this module (its taskqueue_register_processors hook); "
    "repeatable; replaces worker.processors. For development: ship with an entry point.",
)


#: ``--processes N|auto``: several daemon processes under one supervisor
#: (:mod:`taskqueue.daemon.supervisor`).
processes_option = click.option(
    "--processes",
    envvar="TASKQUEUE_PROCESSES",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Run N daemon processes (auto: one per core) under one supervisor; API processes "
    "share the port.",
)


def worker_options(func: Any) -> Any:
    return stack_options(
        func,
        [
            click.option("--concurrency", type=int, help="Tasks run at once (worker.concurrency)."),
            click.option("--worker-id", help="This worker's id (worker.id)."),
            click.option("--task-types", help="Comma-separated types to run (worker.task_types)."),
            processors_option,
        ],
    )


def server_options(func: Any) -> Any:
    return stack_options(
        func,
        [
            click.option("--host", help="Address the API listens on (server.host)."),
            click.option("--port", type=int, help="Port of the API (server.port)."),
        ],
    )


def plugins_for(config: Config) -> LoadedPlugins:
    """The installed plugins and the ``worker.processors`` modules, or exit 1 naming the one
    that failed to load (2 for a wrong ``[plugins.<name>]`` setting or a processors module
    that cannot be imported or has no hook, like any other configuration error)."""
    try:
        modules = tuple(import_processors(path) for path in config.worker.processors)
        return load_plugins(
            settings=config.plugins,
            skip_broken=config.worker.skip_broken_plugins,
            extra=modules,
        )
    except ConfigError as exc:
        fail(str(exc))
    except PluginLoadError as exc:
        fail(f"{exc} (set worker.skip_broken_plugins = true to start without it)", EXIT_FAILED)


def _serve(mode: str, config_path: str | None, flags: dict[str, Any]) -> None:
    from taskqueue.daemon.runtime import Mode, run_daemon  # the daemon's imports cost ~0.5s

    try:
        processes = process_count(flags.pop("processes"))
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    config = load(config_path, flags)
    configure_logging(config.logging.level, config.logging.format)
    # `run` owns its data directory and starts its own Redis there when none is named; the
    # others may join the Redis a `run` beside them advertises.
    found = find_redis(config, url=flags.get("redis_url"), advertised=mode != "run", default=False)
    with contextlib.ExitStack() as stack:
        # The lock first, so that a second daemon says so in one line, before any other.
        owns = found is None and mode == "run"
        directory = stack.enter_context(_owned(config)) if owns else None
        plugins = plugins_for(config)
        if found is None and mode != "run":
            fail(
                f"`taskqueue {mode}` needs redis.url: its processes share one Redis. "
                "`taskqueue run` starts an embedded Redis when none is configured."
            )
        if directory is not None:
            url = stack.enter_context(_embedded_redis(directory))
        else:
            assert found is not None
            url = found.url
        config = attrs.evolve(config, redis=attrs.evolve(config.redis, url=url))
        if processes > 1:
            _supervise(mode, config, processes)
        # A worker serves no API: it does not import it (hypercorn, h2: a fifth of a second).
        api = _api_service() if mode != "worker" else None
        _freeze_start_up_heap()
        try:
            trio.run(lambda: run_daemon(config, plugins, mode=Mode(mode), api=api))
        except ValueError as exc:
            fail(str(exc))
        except Exception as exc:  # an expected start-up failure: one line and its exit code
            code, message = explain(exc)
            if code is None:
                raise
            fail(message, code)


def _supervise(mode: str, config: Config, processes: int) -> NoReturn:
    """Run ``processes`` copies of this command under a supervisor, all on the Redis chosen
    here (the embedded one of ``run`` included), and exit with the supervisor's code."""
    from taskqueue.daemon.supervisor import Supervisor

    if mode != "worker" and config.server.port == 0:
        fail("--processes needs a fixed server.port: processes share one port", EXIT_USAGE)
    assert config.redis.url is not None
    env = {**os.environ, "TASKQUEUE_REDIS__URL": config.redis.url}
    supervisor = Supervisor(sys.argv[1:], env, processes, worker_id=config.worker.id)
    sys.exit(trio.run(supervisor.run))


@contextlib.contextmanager
def _owned(config: Config) -> Iterator[Path]:
    """The data directory, owned by this process for the block: a second daemon there exits
    :data:`EXIT_BUSY` naming this one, and leaves it alone."""
    directory = data_dir(config)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(own_data_dir(directory))
        except DataDirectoryBusy as exc:
            fail(str(exc), EXIT_BUSY)
        except OSError as exc:
            fail(f"cannot use data directory {directory}: {exc.strerror or exc}", EXIT_FAILED)
        yield directory


@contextlib.contextmanager
def _embedded_redis(directory: Path) -> Iterator[str]:
    """An embedded Redis keeping its data in ``directory``, advertised there for the tools
    while it runs; yields its URL."""
    from taskqueue.embedded import EmbeddedRedis

    with EmbeddedRedis(data_dir=directory) as server:
        log.info(
            "no redis.url configured: started an embedded Redis at %s (data in %s)",
            server.url,
            directory,
        )
        with advertise(directory, server.url):
            yield server.url


def _api_service() -> Any:
    """The API service, when the API package is installed with this one."""
    try:
        from taskqueue.api.service import ApiServer
    except ImportError:
        return None
    return ApiServer


@click.command()
@config_options
@worker_options
@server_options
@processes_option
def run(config_path: str | None, **flags: Any) -> None:
    """Everything in one process: API, worker, scheduler, reaper (embedded Redis if none)."""
    _serve("run", config_path, flags)


@click.command()
@config_options
@worker_options
@processes_option
def worker(config_path: str | None, **flags: Any) -> None:
    """Run tasks (no API). Several workers can share one Redis."""
    _serve("worker", config_path, flags)


@click.command()
@config_options
@server_options
@processes_option
def server(config_path: str | None, **flags: Any) -> None:
    """Serve the API only (no tasks run in this process)."""
    _serve("server", config_path, flags)


def _freeze_start_up_heap() -> None:
    """Keep the garbage collector off what start-up built (modules, plugins, the API's
    routes): it lives as long as the process, yet every full collection would walk all of it
    again, pausing every running task for that long (17-23 ms for a server's 58,000 objects
    here, under a microsecond after the freeze: bench/gc_pause.py). Start-up's own garbage
    is collected first, so that none of it is kept for good."""
    gc.collect()
    gc.freeze()
    log.debug("froze %d start-up objects out of the garbage collector's way", gc.get_freeze_count())
