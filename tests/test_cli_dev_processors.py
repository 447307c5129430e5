"""Development mode through the real ``taskqueue`` command: ``--processors MODULE`` (and
``worker.processors``) loads processors from a module in the current directory, beside the
installed plugins, credited to the module; a module that cannot be used exits 2 naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Daemon, cli_env, run, start_daemon

from taskqueue.embedded import EmbeddedRedis

#: A development module: the hook, as an entry-point plugin's module has it, and a typed
#: payload, so the module gets everything a packaged plugin does.
GREETINGS = '''
import msgspec

from taskqueue.plugin import TaskContext, hookimpl


class Greeting(msgspec.Struct, forbid_unknown_fields=True):
    name: str


async def greet(ctx: TaskContext) -> dict[str, str]:
    """Greets the payload's name."""
    return {"greeting": f"hello, {ctx.payload.name}"}


@hookimpl
def taskqueue_register_processors(registry):
    registry.add("dev.greet", greet, payload=Greeting, max_retries=2)
'''


def write_module(where: Path, name: str, source: str) -> Path:
    """``name`` (``pkg.mod`` makes a package) as source files under ``where``."""
    *packages, module = name.split(".")
    directory = where
    for package in packages:
        directory = directory / package
        directory.mkdir(exist_ok=True)
        (directory / "__init__.py").touch()
    path = directory / f"{module}.py"
    path.write_text(source, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory holding ``devtasks.greetings`` and nothing installed."""
    where = tmp_path_factory.mktemp("project")
    write_module(where, "devtasks.greetings", GREETINGS)
    write_module(where, "other", GREETINGS.replace('"dev.greet"', '"dev.other"'))
    return where


@pytest.fixture(scope="module")
def daemon(
    redis_server: EmbeddedRedis, project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    logs = tmp_path_factory.mktemp("cli-dev")
    flags = ("--processors", "devtasks.greetings", "--processors", "other")
    with start_daemon(redis_server.url, "cli-dev", logs, *flags, cwd=project) as daemon:
        yield daemon


def test_a_worker_runs_a_task_of_a_type_from_its_processors_modules(daemon: Daemon) -> None:
    done = daemon.run("submit", "dev.greet", "--payload", '{"name": "Ada"}', "--wait", "--json")
    task = done.json()
    assert task["state"] == "succeeded", task
    assert task["result"] == {"greeting": "hello, Ada"}
    other = daemon.run("submit", "dev.other", "--payload", '{"name": "Bo"}', "--wait", "--json")
    assert other.json()["result"] == {"greeting": "hello, Bo"}


def test_a_processors_module_is_a_plugin_like_any_other(daemon: Daemon) -> None:
    # Its payload type is checked before it runs: a bad payload is refused at once.
    done = daemon.run("submit", "dev.greet", "--payload", '{"name": 5}', "--wait", "--json")
    assert done.code == 1, done
    task = json.loads(done.out)
    assert task["state"] == "dead"
    assert task["attempt"] == 1
    assert "payload.name: Expected str, got int (5)" in task["error"]


def test_workers_credits_the_types_to_the_module(daemon: Daemon) -> None:
    (worker,) = daemon.run("workers", "--json").json()
    assert worker["task_types"]["dev.greet"] == "devtasks.greetings"
    assert worker["task_types"]["dev.other"] == "other"
    assert worker["task_types"]["echo"].startswith("builtin taskqueue ")  # entry points too


def test_plugins_lists_the_module_as_the_plugin(daemon: Daemon, project: Path) -> None:
    done = run(daemon.env, "plugins", "--processors", "devtasks.greetings", "--json", cwd=project)
    by_type = {spec["task_type"]: spec for spec in done.json()}
    assert by_type["dev.greet"]["plugin"] == "devtasks.greetings"
    assert by_type["dev.greet"]["max_retries"] == 2
    assert by_type["dev.greet"]["description"] == "Greets the payload's name."
    assert "http.request" in by_type


def test_worker_processors_in_the_config_file_and_the_flag_replacing_it(
    daemon: Daemon, project: Path, tmp_path: Path
) -> None:
    config = tmp_path / "taskqueue.toml"
    config.write_text('[worker]\nprocessors = ["devtasks.greetings"]\n', encoding="utf-8")
    from_file = run(daemon.env, "plugins", "-c", str(config), "--json", cwd=project).json()
    types = {spec["task_type"] for spec in from_file}
    assert "dev.greet" in types and "dev.other" not in types

    flag = run(
        daemon.env, "plugins", "-c", str(config), "--processors", "other", "--json", cwd=project
    ).json()
    types = {spec["task_type"] for spec in flag}
    assert "dev.other" in types and "dev.greet" not in types


# -- modules that cannot be used --------------------------------------------------------------


@pytest.fixture
def env(redis_server: EmbeddedRedis) -> dict[str, str]:
    return cli_env(redis_server.url, "cli-dev-errors")


@pytest.mark.parametrize("command", ["worker", "run", "plugins"])
def test_a_missing_module_exits_2_naming_it(
    env: dict[str, str], tmp_path: Path, command: str
) -> None:
    done = run(env, command, "--processors", "devtasks.missing", cwd=tmp_path)
    assert done.code == 2, done
    assert done.error == (
        "processors module 'devtasks.missing': no module named 'devtasks' "
        f"(looked in the current directory {tmp_path} and on sys.path)"
    )


def test_a_module_that_fails_to_import_exits_2_with_its_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    write_module(tmp_path, "needs", "import not_installed_anywhere\n")
    done = run(env, "worker", "--processors", "needs", cwd=tmp_path)
    assert done.code == 2, done
    assert done.error == (
        "processors module 'needs': importing it failed: No module named 'not_installed_anywhere'"
    )


def test_a_module_without_the_hook_exits_2_naming_it(env: dict[str, str], tmp_path: Path) -> None:
    path = write_module(
        tmp_path, "devtasks.nohook", "def taskqueue_register_processor(registry): ...\n"
    )
    done = run(env, "worker", "--processors", "devtasks.nohook", cwd=tmp_path)
    assert done.code == 2, done
    assert done.error.startswith(
        f"processors module 'devtasks.nohook' ({path}) has no taskqueue_register_processors hook"
    )
    assert done.error.endswith("is taskqueue_register_processor a misspelling of it?")


def test_a_file_name_is_not_a_module_path(env: dict[str, str], tmp_path: Path) -> None:
    done = run(env, "worker", "--processors", "devtasks/greetings.py", cwd=tmp_path)
    assert done.code == 2, done
    assert done.error.startswith("override: worker.processors = ('devtasks/greetings.py',)")
    assert 'expected a list of module paths such as ["mypkg.tasks"]' in done.error
