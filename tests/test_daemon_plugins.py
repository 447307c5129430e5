"""Plugins reach the daemon through the ``taskqueue`` entry-point group; one that fails to load
stops start-up, unless the operator chose to start without it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from daemon_helpers import daemon_config, running_daemon, submit, wait_for_state, wait_until

from taskqueue.broker import Broker
from taskqueue.models import Priority
from taskqueue.plugin import ProcessorRegistry, TaskContext, hookimpl
from taskqueue.processors import PluginLoadError, load_plugins
from taskqueue.redis import Redis, Script
from taskqueue.testing import run_processor

BUILTIN_TYPES = {"clock", "echo", "fail", "noop", "sleep"}


def _clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQUEUE_")}
    env.update(variables)
    return env


async def _taskqueue(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(10):
        return await trio.run_process(
            [sys.executable, "-m", "taskqueue", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def _listing(output: bytes) -> dict[str, str]:
    """``taskqueue plugins`` output as task type -> the rest of its line."""
    rows = (line.split(None, 1) for line in output.decode().splitlines() if line.strip())
    return {row[0]: row[1] for row in rows}


async def test_bundled_plugins_are_discovered_through_their_entry_points() -> None:
    done = await _taskqueue("plugins", env=_clean_env())

    assert done.returncode == 0, done.stderr.decode()
    listed = _listing(done.stdout)
    for task_type, dist in [
        ("http.request", "taskqueue-plugin-http"),
        ("shell.run", "taskqueue-plugin-shell"),
    ]:
        version = importlib.metadata.version(dist)
        assert listed[task_type].startswith(f"{dist} {version} "), listed[task_type]
    assert set(listed) >= BUILTIN_TYPES


def test_loaded_processors_are_credited_to_their_plugin_and_version() -> None:
    registry = load_plugins().registry

    for task_type, plugin, dist in [
        ("http.request", "http", "taskqueue-plugin-http"),
        ("shell.run", "shell", "taskqueue-plugin-shell"),
    ]:
        spec = registry[task_type]
        assert spec.plugin == plugin
        assert spec.version == f"{dist} {importlib.metadata.version(dist)}"


def _refuse(registry: ProcessorRegistry) -> None:
    raise RuntimeError("licence server unreachable")


BROKEN = SimpleNamespace(__name__="licensed", taskqueue_register_processors=hookimpl(_refuse))


def test_plugin_whose_registration_raises_stops_start_up() -> None:
    with pytest.raises(PluginLoadError, match=r"'licensed'.*licence server unreachable"):
        load_plugins(extra=(BROKEN,))


def test_plugin_whose_registration_raises_is_left_out_when_skip_broken() -> None:
    loaded = load_plugins(extra=(BROKEN,), skip_broken=True)

    assert set(loaded.broken) == {"licensed"}
    assert "licence server unreachable" in loaded.broken["licensed"]
    assert loaded.manager.get_plugin("licensed") is None
    assert set(loaded.registry.task_types) >= {*BUILTIN_TYPES, "http.request", "shell.run"}


@pytest.fixture
def broken_distribution(tmp_path: Path) -> Path:
    """A directory for PYTHONPATH holding an installed distribution whose ``taskqueue`` entry
    point names a module that fails on import."""
    site = tmp_path / "site"
    dist_info = site / "taskqueue_plugin_broken-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: taskqueue-plugin-broken\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text("[taskqueue]\nbroken = taskqueue_plugin_broken\n")
    (site / "taskqueue_plugin_broken.py").write_text(
        textwrap.dedent(
            """
            raise ImportError("needs libfrobnicate.so.3")
            """
        )
    )
    return site


async def test_installed_plugin_that_fails_to_import_stops_the_worker(
    broken_distribution: Path, redis_url: str
) -> None:
    env = _clean_env(PYTHONPATH=str(broken_distribution), TASKQUEUE_REDIS__URL=redis_url)

    done = await _taskqueue("worker", env=env)

    assert done.returncode == 1
    error = done.stderr.decode()
    assert "plugin 'broken' (taskqueue-plugin-broken 1.0) failed to load" in error
    assert "libfrobnicate" in error
    assert "worker.skip_broken_plugins" in error


async def test_installed_plugin_that_fails_to_import_is_reported_and_skipped_when_asked(
    broken_distribution: Path,
) -> None:
    env = _clean_env(
        PYTHONPATH=str(broken_distribution), TASKQUEUE_WORKER__SKIP_BROKEN_PLUGINS="true"
    )

    done = await _taskqueue("plugins", env=env)

    assert done.returncode == 0, done.stderr.decode()
    assert "broken: BROKEN:" in done.stderr.decode()
    assert set(_listing(done.stdout)) >= {*BUILTIN_TYPES, "http.request", "shell.run"}


async def _report(ctx: TaskContext) -> str:
    return "built"


def _register_report(registry: ProcessorRegistry) -> None:
    registry.add("report.build", _report, timeout=900, max_retries=1, priority="low")


REPORTS = SimpleNamespace(
    __name__="reports", taskqueue_register_processors=hookimpl(_register_report)
)


async def test_a_types_registered_defaults_apply_to_submissions_that_leave_them_unset(
    redis_url: str, broker: Broker
) -> None:
    plugins = load_plugins(extra=(REPORTS,))
    async with running_daemon(daemon_config(redis_url), plugins):
        await wait_until(
            lambda: _has_defaults(broker, "report.build"), "the worker records its defaults"
        )
        bare = await broker.get(await submit(broker, "report.build"))
        explicit = await broker.get(await submit(broker, "report.build", priority="high"))

    assert (bare.priority, bare.max_retries, bare.timeout_ms) == (Priority.LOW, 1, 900_000)
    assert explicit.priority is Priority.HIGH


async def _has_defaults(broker: Broker, task_type: str) -> bool:
    return task_type in (await broker.policy()).task_types


def test_a_processor_registered_with_an_impossible_default_is_refused() -> None:
    def register(registry: ProcessorRegistry) -> None:
        registry.add("x", _report, timeout=0)

    bad = SimpleNamespace(__name__="bad", taskqueue_register_processors=hookimpl(register))
    with pytest.raises(PluginLoadError, match="timeout must be above 0"):
        load_plugins(extra=(bad,))


# -- ctx.redis ------------------------------------------------------------------------------------

COUNT_RUNS = Script("count_runs", "return redis.call('INCR', KEYS[1])")


async def _count_run(ctx: TaskContext) -> int:
    runs: int = await ctx.redis.run_script(COUNT_RUNS, ["counting:runs"], [])
    return runs


COUNTING = SimpleNamespace(
    __name__="counting",
    taskqueue_register_processors=hookimpl(lambda registry: registry.add("count.run", _count_run)),
)


async def test_processors_reach_the_workers_redis_through_the_task_context(
    redis_url: str, broker: Broker, redis: Redis
) -> None:
    plugins = load_plugins(extra=(COUNTING,))
    async with running_daemon(daemon_config(redis_url), plugins) as daemon:
        ids = [await submit(broker, "count.run") for _ in range(20)]
        tasks = [await wait_for_state(broker, task_id) for task_id in ids]
        # The processors' own client: beside the broker's, so their errors are not its own.
        assert daemon.task_redis is not None
        assert daemon.task_redis is not broker.redis

    assert sorted(t.result for t in tasks) == list(range(1, 21))
    assert await redis.execute("GET", "counting:runs") == "20"


async def test_run_processor_hands_its_redis_to_the_context(redis: Redis) -> None:
    run = await run_processor(_count_run, "count.run", redis=redis)
    assert run.value == 1
    with pytest.raises(RuntimeError, match="no Redis client"):
        await run_processor(_count_run, "count.run")
