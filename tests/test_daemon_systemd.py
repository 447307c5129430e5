"""The daemon under systemd: notifications on ``NOTIFY_SOCKET`` from a real worker process, and
task log lines as structured journal entries.

The journal test runs the daemon in this process: the journal socket's path is fixed in
:mod:`taskqueue.logs` (no variable moves it), so a real process could only log to the
machine's journald. ``configure_logging(journal_socket=...)`` points it at a test socket.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from daemon_helpers import (
    STARTUP,
    WorkerProcess,
    daemon_config,
    running_daemon,
    submit,
    wait_for_state,
    wait_until,
    worker_env,
)
from log_helpers import journal_entry
from systemd_helpers import NotifySocket, open_notify_socket

from taskqueue.broker import Broker
from taskqueue.logs import configure_logging
from taskqueue.models import TaskState
from taskqueue.redis import Redis


@pytest.fixture
def broker(redis: Redis) -> Broker:
    """The test's broker: the daemon's defaults and the wall clock, as the daemon has."""
    return Broker(redis)


# -- sd_notify ----------------------------------------------------------------------------------


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    async with open_notify_socket(tmp_path / "notify.sock") as sock:
        yield sock


async def test_worker_process_notifies_ready_watchdog_status_and_stopping(
    redis_url: str, broker: Broker, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    env = worker_env(
        redis_url,
        NOTIFY_SOCKET=str(notify_socket.path),
        WATCHDOG_USEC="200000",  # pings every 0.1 s
        TASKQUEUE_WORKER__CONCURRENCY="4",
    )
    async with WorkerProcess(tmp_path, env) as worker:
        ready = await notify_socket.receive_until(lambda n: "READY" in n, "READY=1", within=STARTUP)
        assert ready == {"READY": "1", "STATUS": "processing 0/4, 0 done, 0 failed/min, redis ok"}

        await submit(broker, "echo", "hello")
        status = await notify_socket.receive_until(
            lambda n: "1 done" in n.get("STATUS", ""), "a STATUS counting the task"
        )
        assert status == {"STATUS": "processing 0/4, 1 done, 0 failed/min, redis ok"}
        pings = [n for n in notify_socket.received if n == {"WATCHDOG": "1"}]
        assert len(pings) >= 2, notify_socket.received

        worker.send_signal(signal.SIGTERM)
        stopping = await notify_socket.receive_until(lambda n: "STOPPING" in n, "STOPPING=1")
        assert stopping == {"STOPPING": "1", "STATUS": "draining 0 task(s)"}
        assert await worker.wait_exit() == 0

    assert sum("READY" in n for n in notify_socket.received) == 1


# -- journald -----------------------------------------------------------------------------------


class Journal:
    """Stands in for journald's socket. A thread receives, because the daemon's handler sends
    synchronously from the event loop: were the loop to receive, a full socket queue would
    stall the very loop that must drain it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            self.entries.append(journal_entry(data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    async def wait_for(self, wanted: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
        """The first entry received that ``wanted`` accepts, once it has arrived."""
        found: list[dict[str, str]] = []

        async def arrived() -> bool:
            found[:] = [e for e in list(self.entries) if wanted(e)]
            return bool(found)

        try:
            await wait_until(arrived, f"a journal entry {what} arrives")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; got {self.entries}") from None
        return found[0]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal socket, and the process's logging sent to it for the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    journal = Journal(tmp_path / "journal.sock")
    configure_logging("info", "journald", journal_socket=str(journal.path))
    try:
        yield journal
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        journal.close()


async def test_failing_task_is_logged_to_the_journal_with_its_task_fields(
    redis_url: str, broker: Broker, journal: Journal
) -> None:
    async with running_daemon(daemon_config(redis_url, worker__id="journal-worker")):
        task_id = await submit(broker, "fail", {"message": "disk full"}, max_retries=0)
        assert (await wait_for_state(broker, task_id)).state is TaskState.DEAD

        entry = await journal.wait_for(
            lambda e: e.get("TASK_ID") == task_id, f"with TASK_ID={task_id}"
        )

    assert entry["TASK_TYPE"] == "fail"
    assert entry["ATTEMPT"] == "1"
    assert entry["WORKER_ID"] == "journal-worker"
    assert entry["PRIORITY"] == "4"  # warning
    assert entry["SYSLOG_IDENTIFIER"] == "taskqueue"
    assert "RuntimeError: disk full" in entry["MESSAGE"]
