"""A stand-in for systemd's notify socket, for tests of what a daemon tells its service manager."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

Notification = dict[str, str]


class NotifySocket:
    """Stands in for systemd's notify socket: receives and keeps every notification."""

    def __init__(self, sock: trio.socket.SocketType, path: Path) -> None:
        self.sock = sock
        self.path = path
        self.received: list[Notification] = []

    async def receive_until(
        self, wanted: Callable[[Notification], bool], what: str, within: float = 5.0
    ) -> Notification:
        """The first notification from now on that ``wanted`` accepts."""
        try:
            with trio.fail_after(within):
                while True:
                    data = await self.sock.recv(65536)
                    fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
                    self.received.append(fields)
                    if wanted(fields):
                        return fields
        except trio.TooSlowError:
            raise AssertionError(f"no {what} within {within}s; got {self.received}") from None


@asynccontextmanager
async def open_notify_socket(path: Path) -> AsyncIterator[NotifySocket]:
    """A notify socket bound at ``path`` for the block (name it in ``NOTIFY_SOCKET``)."""
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(path))
        yield NotifySocket(sock, path)
