"""Every expected start-up failure of the daemon is one line naming the cause and the fix, with
its documented exit code, and ``config check`` refuses what start would refuse."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Result, cli_env, run

from taskqueue.cli.common import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """A daemon's environment that logs only errors, so stderr holds the failure alone."""
    return cli_env(redis_url, "startup", TASKQUEUE_LOGGING__LEVEL="error")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def not_redis() -> Iterator[str]:
    """The URL of a server that answers like a web server, not like Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"<html>hello</html>\r\n")

    threading.Thread(target=answer, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def failed(result: Result, code: int) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    return result.error


def test_a_port_in_use_is_one_line_exit_1(env: dict[str, str], taken_port: int) -> None:
    message = failed(run(env, "server", "--port", str(taken_port)), EXIT_FAILED)
    assert message == (
        f"cannot listen on 127.0.0.1:{taken_port}: Address already in use; another process "
        "listens there: stop it or choose another port (server.host/server.port)"
    )


def test_an_address_of_no_interface_is_one_line_exit_1(env: dict[str, str]) -> None:
    env = {**env, "TASKQUEUE_SERVER__ALLOW_UNAUTHENTICATED_PUBLIC": "true"}
    message = failed(run(env, "server", "--host", "192.0.2.1", "--port", "0"), EXIT_FAILED)
    assert message == (
        "cannot listen on 192.0.2.1:0: Cannot assign requested address; no interface of this "
        "machine has that address (server.host/server.port)"
    )


def test_a_public_bind_without_tokens_is_refused_at_start_and_by_config_check(
    env: dict[str, str],
) -> None:
    env = {**env, "TASKQUEUE_SERVER__HOST": "0.0.0.0", "TASKQUEUE_SERVER__PORT": "0"}
    at_start = failed(run(env, "server"), EXIT_USAGE)
    checked = failed(run(env, "config", "check"), EXIT_USAGE)
    assert at_start == checked
    assert "server.host = '0.0.0.0' would open the API to the network" in at_start


def test_unreadable_tls_files_are_refused_at_start_and_by_config_check(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    env = {**env, "TASKQUEUE_SERVER__CERTFILE": str(missing), "TASKQUEUE_SERVER__PORT": "0"}
    at_start = failed(run(env, "server"), EXIT_USAGE)
    checked = failed(run(env, "config", "check"), EXIT_USAGE)
    assert at_start == checked
    assert f"server.certfile = '{missing}'" in at_start
    assert "cannot load the TLS certificate and key" in at_start


def test_a_server_that_is_not_redis_is_one_line_exit_4(env: dict[str, str], not_redis: str) -> None:
    env = {**env, "TASKQUEUE_REDIS__URL": not_redis, "TASKQUEUE_SERVER__PORT": "0"}
    for command in (("server",), ("worker",), ("queues",)):
        message = failed(run(env, *command), EXIT_UNREACHABLE)
        assert "does not speak the Redis protocol" in message, command


def test_an_unusable_data_directory_is_one_line_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {k: v for k, v in env.items() if k != "TASKQUEUE_REDIS__URL"}
    env["TASKQUEUE_REDIS__DATA_DIR"] = str(blocker / "data")
    message = failed(run(env, "run", "--port", "0"), EXIT_FAILED)
    assert message.startswith(f"cannot use data directory {blocker / 'data'}: ")
