"""``--processes N``: one supervisor, N daemon processes. It tells systemd READY=1 once every
process is serving, starts a process again when it dies, shares the API port between the
processes, and stops them all, each draining, on SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    free_port,
    submit_many,
    wait_for_count,
    wait_until,
    worker_env,
)
from systemd_helpers import NotifySocket, open_notify_socket

from taskqueue.broker import Broker
from taskqueue.daemon.supervisor import child_argv, process_count
from taskqueue.models import TaskState
from taskqueue.redis import Redis


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    async with open_notify_socket(tmp_path / "notify.sock") as sock:
        yield sock


def test_a_child_runs_the_same_command_without_processes() -> None:
    argv = ["worker", "--processes", "4", "--concurrency", "5", "--processes=2", "-c", "x.toml"]
    assert child_argv(argv) == [
        sys.executable, "-m", "taskqueue", "worker", "--concurrency", "5", "-c", "x.toml"
    ]  # fmt: skip


def test_processes_is_a_positive_number_or_auto() -> None:
    assert process_count("3") == 3
    assert process_count("auto") >= 1
    for bad in ("0", "-1", "two", "¹", "1_0"):
        with pytest.raises(ValueError, match="--processes"):
            process_count(bad)


#: Several processes start at once here: their imports compete for the cores.
START_ALL = 2 * STARTUP


async def ready(notify_socket: NotifySocket, supervisor: WorkerProcess) -> None:
    """Wait for the supervisor's READY=1; on a timeout, say what the processes logged."""
    try:
        await notify_socket.receive_until(lambda n: "READY" in n, "READY=1", within=START_ALL)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the log:\n{supervisor.output()}") from None


async def pids_of_workers(broker: Broker) -> set[int]:
    return {w.pid for w in await broker.workers()}


async def test_two_worker_processes_serve_restart_and_drain(
    redis: Redis, redis_url: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    broker = Broker(redis)
    env = worker_env(redis_url, NOTIFY_SOCKET=str(notify_socket.path))
    async with WorkerProcess(tmp_path, env, args=["--processes", "2"]) as supervisor:
        await ready(notify_socket, supervisor)
        first = await pids_of_workers(broker)
        assert len(first) == 2 and supervisor.pid not in first  # two children registered

        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            pids = await pids_of_workers(broker)
            return len(pids - {victim}) == 2

        await wait_until(replaced, "the killed process was started again", within=START_ALL)

        await submit_many(broker, "noop", [None] * 200)
        await wait_for_count(broker, TaskState.SUCCEEDED, 200, within=STARTUP)

        supervisor.send_signal(signal.SIGTERM)
        await notify_socket.receive_until(lambda n: "STOPPING" in n, "STOPPING=1")
        assert await supervisor.wait_exit(within=STARTUP) == 0
    assert await broker.workers() == []  # each child drained and deregistered
    log = supervisor.output()
    assert "exited with SIGKILL; starting it again" in log
    assert sum("READY" in n for n in notify_socket.received) == 1


async def test_api_processes_share_one_port(
    redis_url: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    port = free_port()
    env = worker_env(
        redis_url, NOTIFY_SOCKET=str(notify_socket.path), TASKQUEUE_SERVER__PORT=str(port)
    )
    async with WorkerProcess(tmp_path, env, command="server", args=["--processes", "2"]) as sup:
        # READY=1 comes only once both processes listen: without SO_REUSEPORT the second
        # could not bind, and would exit instead.
        await ready(notify_socket, sup)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(20):  # new connections, spread by the kernel
                response = await client.get("/readyz", headers={"connection": "close"})
                assert response.status_code == 200
        sup.send_signal(signal.SIGTERM)
        assert await sup.wait_exit(within=STARTUP) == 0
    assert "exited with" not in sup.output()  # no child died, neither binding nor after


async def test_processes_with_port_0_is_refused(redis_url: str, tmp_path: Path) -> None:
    env = worker_env(redis_url, TASKQUEUE_SERVER__PORT="0")
    async with WorkerProcess(tmp_path, env, command="server", args=["--processes", "2"]) as sup:
        assert await sup.wait_exit(within=STARTUP) == 2
    assert "--processes needs a fixed server.port" in sup.output()


async def test_processes_do_not_outlive_a_killed_supervisor(
    redis: Redis, redis_url: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    broker = Broker(redis)
    env = worker_env(redis_url, NOTIFY_SOCKET=str(notify_socket.path))
    async with WorkerProcess(tmp_path, env, args=["--processes", "2"]) as supervisor:
        await ready(notify_socket, supervisor)
        children = await pids_of_workers(broker)
        supervisor.send_signal(signal.SIGKILL)
        assert await supervisor.wait_exit(within=STARTUP) == -signal.SIGKILL

        async def gone() -> bool:
            return await broker.workers() == []  # each drained (SIGTERM) and deregistered

        await wait_until(gone, "the processes stopped with their supervisor", within=STARTUP)

    async def exited() -> bool:
        return not [pid for pid in children if running(pid)]

    await wait_until(exited, "the processes exited", within=STARTUP)


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited child not yet reaped by init is a zombie: "Z")."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return state.split()[1] != "Z"
