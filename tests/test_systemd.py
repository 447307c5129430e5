"""sd_notify without libsystemd, the watchdog loop, and the unit files in systemd/ (installed
and verified in test_systemd_install.py)."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from taskqueue.daemon.systemd import SystemdNotifier, run_watchdog, watchdog_interval

UNIT_DIR = Path(__file__).resolve().parent.parent / "systemd"


async def _receive(sock: trio.socket.SocketType) -> str:
    with trio.fail_after(5):
        data = await sock.recv(65536)
    return data.decode()


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[trio.socket.SocketType, str]]:
    """A datagram socket standing in for systemd's notify socket, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify.sock"
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(path))
        yield sock, str(path)


async def test_notifications_arrive_on_the_notify_socket(
    listener: tuple[trio.socket.SocketType, str],
) -> None:
    sock, address = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled

    assert await notifier.ready()
    assert await _receive(sock) == "READY=1"
    assert await notifier.status("draining 3 tasks")
    assert await _receive(sock) == "STATUS=draining 3 tasks"
    assert await notifier.watchdog()
    assert await _receive(sock) == "WATCHDOG=1"
    assert await notifier.stopping()
    assert await _receive(sock) == "STOPPING=1"


async def test_notify_combines_fields_and_keeps_each_on_one_line(
    listener: tuple[trio.socket.SocketType, str],
) -> None:
    sock, address = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})

    await notifier.ready("serving on :8080")
    assert await _receive(sock) == "READY=1\nSTATUS=serving on :8080"
    await notifier.notify(status="two\nlines", mainpid=1234)
    assert await _receive(sock) == "STATUS=two lines\nMAINPID=1234"
    await notifier.notify("RELOADING=1", MONOTONIC_USEC=5)
    assert await _receive(sock) == "RELOADING=1\nMONOTONIC_USEC=5"
    await notifier.extend_timeout(2.5)
    assert await _receive(sock) == "EXTEND_TIMEOUT_USEC=2500000"
    await notifier.main_pid()
    assert await _receive(sock) == f"MAINPID={os.getpid()}"


async def test_abstract_notify_socket_is_supported() -> None:
    name = f"taskqueue-test-{uuid.uuid4().hex}"
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind("\0" + name)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.address == "\0" + name

        assert await notifier.ready()
        assert await _receive(sock) == "READY=1"


async def test_notifier_reads_os_environ_by_default(
    listener: tuple[trio.socket.SocketType, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)

    await SystemdNotifier().watchdog()
    assert await _receive(sock) == "WATCHDOG=1"


async def test_without_notify_socket_every_notification_is_a_no_op() -> None:
    notifier = SystemdNotifier({})

    assert not notifier.enabled
    assert not await notifier.ready()
    assert not await notifier.stopping()
    assert not await notifier.status("x")
    assert not await notifier.watchdog()


def test_unsupported_notify_socket_disables_notifications(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})

    assert not notifier.enabled
    assert "unsupported NOTIFY_SOCKET" in caplog.text


async def test_send_failures_are_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})

    with caplog.at_level(logging.DEBUG, logger="taskqueue.daemon.systemd"):
        assert not await notifier.ready()
        assert not await notifier.watchdog()
        assert not await notifier.stopping()

    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_this_process(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    assert watchdog_interval() == 2.0


async def test_run_watchdog_pings_every_interval(
    listener: tuple[trio.socket.SocketType, str], autojump_clock: trio.testing.MockClock
) -> None:
    sock, address = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": address})
    sent_at: list[float] = []

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_watchdog, notifier, 15.0)
        for _ in range(4):
            assert await sock.recv(64) == b"WATCHDOG=1"
            sent_at.append(trio.current_time())
        nursery.cancel_scope.cancel()

    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    assert sent_at[0] == 0.0
    assert gaps == [15.0, 15.0, 15.0]


async def test_run_watchdog_returns_when_no_watchdog_is_wanted(
    listener: tuple[trio.socket.SocketType, str],
) -> None:
    _, address = listener

    with trio.fail_after(1):
        await run_watchdog(SystemdNotifier({"NOTIFY_SOCKET": address}), None)
        await run_watchdog(SystemdNotifier({}), 15.0)


def test_units_are_notify_services_with_a_watchdog() -> None:
    for name in ("taskqueue.service", "taskqueue-worker@.service"):
        lines = set((UNIT_DIR / name).read_text().splitlines())
        assert {"Type=notify", "NotifyAccess=main", "WatchdogSec=30"} <= lines, name
        assert {"DynamicUser=yes", "ProtectSystem=strict", "CapabilityBoundingSet="} <= lines
