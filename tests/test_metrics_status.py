"""systemd's STATUS line: ``processing 37/50, 120k done, 3 failed/min, redis ok``.

Its parts are plain functions tested directly (the short counts, the failures of the last
minute at given times); then a daemon in this process, notifying a stand-in notify socket,
shows what it did in its STATUS.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from daemon_helpers import daemon_config, submit, wait_for_state

from taskqueue.broker import Broker
from taskqueue.daemon.runtime import (
    Daemon,
    Mode,
    PerMinute,
    begin_shutdown,
    run_daemon,
    short_count,
)
from taskqueue.daemon.systemd import SystemdNotifier
from taskqueue.models import TaskState
from taskqueue.processors import load_plugins
from taskqueue.redis import Redis


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1.0k"),
        (1234, "1.2k"),
        (9999, "9.9k"),
        (10_000, "10k"),
        (120_456, "120k"),
        (999_999, "999k"),
        (1_000_000, "1.0M"),
        (3_456_789, "3.4M"),
        (56_000_000, "56M"),
    ],
)
def test_counts_are_shortened_and_rounded_down(n: int, text: str) -> None:
    assert short_count(n) == text


def test_failures_per_minute_cover_the_last_minute_of_samples() -> None:
    rate = PerMinute()
    assert rate.update(0.0, 0) == 0
    assert rate.update(1.0, 3) == 3  # less than a minute of history: everything so far
    assert rate.update(30.0, 5) == 5
    assert rate.update(61.0, 5) == 2  # baseline: the sample at 1.0 (3 failures then)
    assert rate.update(91.0, 5) == 0  # baseline: the sample at 30.0
    assert rate.update(92.0, 12) == 7
    assert rate.update(500.0, 12) == 0  # quiet for minutes


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[trio.socket.SocketType]:
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(tmp_path / "notify.sock"))
        yield sock


async def next_status(sock: trio.socket.SocketType, wanted: str) -> str:
    """The first STATUS from now on that contains ``wanted``."""
    seen: list[str] = []
    with trio.move_on_after(10):
        while True:
            data = (await sock.recv(65536)).decode()
            for line in data.split("\n"):
                if line.startswith("STATUS="):
                    seen.append(line[7:])
                    if wanted in line:
                        return line[7:]
    raise AssertionError(f"no STATUS with {wanted!r}; got {seen}")


async def test_status_shows_running_done_and_failed_per_minute(
    redis_url: str, redis: Redis, notify_socket: trio.socket.SocketType
) -> None:
    broker = Broker(redis)
    config = daemon_config(redis_url, worker__concurrency=4)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    run = functools.partial(
        run_daemon,
        config,
        load_plugins(settings=config.plugins),
        mode=Mode.WORKER,
        notifier=notifier,
        handle_signals=False,
    )
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(run)
        assert await next_status(notify_socket, "") == (
            "processing 0/4, 0 done, 0 failed/min, redis ok"
        )
        running = await submit(broker, "sleep", {"seconds": 30})
        assert await next_status(notify_socket, "processing 1/4") == (
            "processing 1/4, 0 done, 0 failed/min, redis ok"
        )
        for task_id in [await submit(broker, "echo", n) for n in range(3)]:
            await wait_for_state(broker, task_id)
        for task_id in [await submit(broker, "fail", max_retries=0) for _ in range(2)]:
            assert (await wait_for_state(broker, task_id)).state is TaskState.DEAD
        assert await next_status(notify_socket, "2 failed/min") == (
            "processing 1/4, 3 done, 2 failed/min, redis ok"
        )
        await broker.cancel(running)
        await wait_for_state(broker, running)
        begin_shutdown(daemon)
