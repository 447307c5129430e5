"""The real ``taskqueue`` command where no daemon is needed: a Redis it cannot reach, no Redis
at all, bad usage, ``config check`` and ``plugins``. Each error is one line and a meaningful
exit code, never a traceback."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest
from cli_helpers import cli_env, closed_port, env_without_redis, run

from taskqueue.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def unreachable() -> dict[str, str]:
    """Commands' environment naming a Redis where nothing listens."""
    return cli_env(f"redis://127.0.0.1:{closed_port()}/0", "cli-errors")


@pytest.mark.parametrize(
    "command",
    [
        ["submit", "echo"],
        ["submit", "echo", "--wait", "--json"],
        ["status", "some-id"],
        ["cancel", "some-id"],
        ["tasks", "--state", "dead", "--type", "x"],
        ["workers", "--json"],
        ["queues", "--watch"],
        ["dlq", "requeue", "--all"],
        ["bench", "-n", "1"],
    ],
    ids=lambda c: " ".join(c),
)
def test_an_unreachable_redis_exits_4_with_one_line(
    unreachable: dict[str, str], command: list[str]
) -> None:
    done = run(unreachable, *command)
    assert done.code == 4, done
    port = unreachable["TASKQUEUE_REDIS__URL"].split(":")[2].split("/")[0]
    assert done.error == (
        f"cannot connect to redis 127.0.0.1:{port} db=0: all attempts to connect to "
        f"127.0.0.1:{port} failed (is Redis running? check redis.url)"
    )
    assert done.out == ""


def test_wrong_credentials_exit_4(redis_server: EmbeddedRedis) -> None:
    env = cli_env(
        redis_server.url,
        "cli-errors",
        TASKQUEUE_REDIS__USERNAME="nobody",
        TASKQUEUE_REDIS__PASSWORD="not-the-password",
    )
    done = run(env, "status", "some-id")
    assert done.code == 4, done
    assert done.error.startswith("Redis refused the credentials: ")


def test_with_no_redis_named_the_tools_try_the_default_and_say_so(tmp_path: Path) -> None:
    if _listening(6379):
        pytest.skip("something listens on 127.0.0.1:6379, the default this test expects closed")
    done = run(env_without_redis(), "queues", cwd=tmp_path)
    assert done.code == 4, done
    assert done.error == (
        "cannot connect to redis 127.0.0.1:6379 db=0: all attempts to connect to "
        "127.0.0.1:6379 failed (is Redis running? check redis.url); no redis.url is configured "
        "(TASKQUEUE_REDIS__URL, --redis-url or the config file) and no `taskqueue run` "
        "advertises one in the data directory"
    )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("command", ["worker", "server"])
def test_a_worker_or_server_without_redis_exits_2(tmp_path: Path, command: str) -> None:
    done = run(env_without_redis(), command, cwd=tmp_path)
    assert done.code == 2, done
    assert done.err.splitlines()[-1].startswith(f"taskqueue: `taskqueue {command}` needs redis.url")


def test_a_daemon_flag_with_a_wrong_value_exits_2(unreachable: dict[str, str]) -> None:
    done = run(unreachable, "worker", "--concurrency", "0")
    assert done.code == 2, done
    assert "worker.concurrency" in done.error


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "Missing argument 'TYPE'. (see `taskqueue submit --help`)"),
        (["echo", "--wait-timeout", "1s"], "--wait-timeout needs --wait"),
        (["echo", "--payload", "1", "--payload-file", "-"], "give --payload or --payload-file"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    unreachable: dict[str, str], command: list[str], message: str
) -> None:
    done = run(unreachable, "submit", *command)
    assert done.code == 2, done
    assert done.error.startswith(message)


def test_an_unknown_command_exits_2() -> None:
    done = run(env_without_redis(), "frobnicate")
    assert done.code == 2, done
    assert done.error == "No such command 'frobnicate'. (see `taskqueue --help`)"


# -- config check -----------------------------------------------------------------------------


def test_config_check_prints_the_effective_configuration_with_secrets_masked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "taskqueue.toml"
    path.write_text(
        '[redis]\nurl = "redis://:hunter2@db.internal:6380/2"\npassword = "hunter2"\n'
        "[worker]\nconcurrency = 8\n"
    )
    env = env_without_redis(TASKQUEUE_TASK__MAX_RETRIES="9")
    done = run(env, "config", "check", "--config", str(path), "--log-level", "debug")
    assert done.code == 0, done
    assert done.err == f"configuration is valid ({path})\n"
    assert "hunter2" not in done.out
    effective = tomllib.loads(done.out)  # it reads back as a configuration file
    assert effective["redis"]["password"] == "***"
    assert effective["redis"]["url"] == "redis://:***@db.internal:6380/2"
    assert effective["worker"]["concurrency"] == 8  # from the file
    assert effective["task"]["max_retries"] == 9  # from the environment
    assert effective["logging"]["level"] == "debug"  # from a flag

    as_json = run(env, "config", "check", "--config", str(path), "--json").json()
    assert as_json["redis"]["password"] == "***"
    assert as_json["worker"]["concurrency"] == 8


def test_config_check_shows_the_schedules_as_tables_that_read_back(tmp_path: Path) -> None:
    path = tmp_path / "taskqueue.toml"
    path.write_text(
        '[[schedules]]\nname = "nightly"\ntype = "report.build"\ncron = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\npayload = { format = "pdf" }\n'
        '[[schedules]]\nname = "poll"\ntype = "echo"\nevery = "30s"\nmissed = "once"\n'
    )
    done = run(env_without_redis(), "config", "check", "--config", str(path))
    assert done.code == 0, done
    nightly, poll = tomllib.loads(done.out)["schedules"]
    assert nightly == {"name": "nightly", "type": "report.build", "cron": "0 3 * * *",
                       "timezone": "Europe/Berlin", "payload": {"format": "pdf"}}  # fmt: skip
    assert poll == {"name": "poll", "type": "echo", "every": 30.0, "missed": "once"}
    again = tmp_path / "again.toml"
    again.write_text(done.out)
    assert run(env_without_redis(), "config", "check", "--config", str(again)).out == done.out


def test_config_check_names_the_wrong_key_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "taskqueue.toml"
    path.write_text("[worker]\nconcurency = 8\n")
    done = run(env_without_redis(), "config", "check", "--config", str(path))
    assert done.code == 2, done
    assert "worker.concurency" in done.error
    assert "concurrency" in done.error.split("worker.concurency", 1)[1]  # did you mean


# -- plugins ----------------------------------------------------------------------------------


def test_plugins_lists_task_types_with_versions() -> None:
    done = run(env_without_redis(), "plugins")
    assert done.code == 0, done
    header, *rows = done.out.splitlines()
    assert header.split() == [
        "TYPE", "VERSION", "PLUGIN", "TIMEOUT", "RETRIES", "PRIORITY", "DESCRIPTION"
    ]  # fmt: skip
    by_type = {row.split()[0]: row.split() for row in rows}
    assert by_type["echo"][1:4] == ["taskqueue", "0.1.0", "builtin"]
    assert by_type["http.request"][1:4] == ["taskqueue-plugin-http", "0.1.0", "http"]
    assert by_type["shell.run"][1:5] == ["taskqueue-plugin-shell", "0.1.0", "shell", "5m00s"]

    listed = run(env_without_redis(), "plugins", "--json").json()
    echo = next(p for p in listed if p["task_type"] == "echo")
    assert echo["plugin"] == "builtin"
    assert echo["version"] == "taskqueue 0.1.0"
