"""Talking to systemd without libsystemd: readiness, status, stop and watchdog notifications.

The protocol (``sd_notify(3)``) is small: one AF_UNIX datagram of newline-separated
``KEY=value`` assignments, sent to the socket named by ``$NOTIFY_SOCKET``. A name starting with
``@`` is a Linux abstract socket. When the variable is unset the process was not started by a
``Type=notify`` unit and every notification is a no-op, so the daemon calls these functions
unconditionally.

Failures to send are logged once and swallowed: a hiccup of the service manager must never take
the daemon down with it. ``trio.Cancelled`` is not an ``OSError`` and passes through untouched.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import trio

__all__ = ["SystemdNotifier", "run_watchdog", "watchdog_interval"]

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends state notifications to the service manager named by ``NOTIFY_SOCKET``.

    Built from ``env`` (``os.environ`` when omitted). Each notification opens, uses and closes
    its own datagram socket, as ``sd_notify`` does: there is nothing to clean up, and the object
    is safe to share between trio tasks.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        self._address = _parse_notify_socket(environ.get("NOTIFY_SOCKET", ""))
        self._failed_before = False

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens; when False every notification does nothing."""
        return self._address is not None

    @property
    def address(self) -> str | None:
        """The socket address notifications go to (abstract names start with a NUL byte)."""
        return self._address

    async def notify(self, state: str | None = None, /, **fields: object) -> bool:
        """Send one notification; True if it was delivered to the socket.

        Either a ready-made ``state`` string (``"READY=1\\nSTATUS=up"``) or keyword fields, whose
        names are upper-cased (``notify(ready=1, status="up")``); both may be combined. Newlines
        inside a field's value are replaced by spaces because they would end the assignment.
        ``True`` and ``False`` are sent as ``1`` and ``0``.

        Never raises ``OSError``: the first failure is logged as a warning and later ones at
        debug level, and the method returns False.
        """
        if self._address is None:
            return False
        parts = [state] if state else []
        parts.extend(f"{key.upper()}={_field_value(value)}" for key, value in fields.items())
        if not parts:
            return False
        payload = "\n".join(parts).encode("utf-8", "replace")
        try:
            with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                await sock.sendto(payload, self._address)
        except OSError as exc:
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            logger.log(
                level,
                "could not notify systemd at %r: %s",
                _display_address(self._address),
                exc,
            )
            return False
        return True

    async def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete and the service is serving (with a status line)."""
        if status is None:
            return await self.notify(READY=1)
        return await self.notify(READY=1, STATUS=status)

    async def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown (the drain) has begun."""
        if status is None:
            return await self.notify(STOPPING=1)
        return await self.notify(STOPPING=1, STATUS=status)

    async def status(self, text: str) -> bool:
        """``STATUS=``: a one-line description shown by ``systemctl status``."""
        return await self.notify(STATUS=text)

    async def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping that ``WatchdogSec=`` expects."""
        return await self.notify(WATCHDOG=1)

    async def main_pid(self, pid: int | None = None) -> bool:
        """``MAINPID=``: tell systemd which process is the service's main process."""
        return await self.notify(MAINPID=os.getpid() if pid is None else pid)

    async def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC=``: ask for more time to start or stop (e.g. a long drain).

        Each message extends the current start/stop timeout to ``seconds`` from now; send it
        again before that runs out to keep extending.
        """
        return await self.notify(EXTEND_TIMEOUT_USEC=max(0, round(seconds * 1_000_000)))


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings, or None when no watchdog is expected of this process.

    systemd sets ``WATCHDOG_USEC`` to the unit's ``WatchdogSec=``; when ``WATCHDOG_PID`` is set
    too, the watchdog is meant for that process only (a child that inherited the environment
    must not ping on its parent's behalf). The interval is half the timeout, as
    ``sd_watchdog_enabled(3)`` recommends, so one late ping does not get the service killed.
    Malformed values count as "no watchdog".
    """
    environ = os.environ if env is None else env
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


async def run_watchdog(notifier: SystemdNotifier, interval: float | None) -> None:
    """Send ``WATCHDOG=1`` now and then every ``interval`` seconds, until cancelled.

    This is deliberately a plain trio task in the daemon's nursery, not a thread: it can only
    ping while the event loop schedules tasks. If the loop is blocked (a processor doing
    synchronous work, a deadlock, a runaway CPU loop) the pings stop, systemd's ``WatchdogSec=``
    expires, and systemd kills and restarts the daemon — which is exactly what a wedged worker
    needs, because its leases would lapse anyway. A thread would keep pinging for a dead loop.

    Returns at once when the notifier is disabled or ``interval`` is None (no watchdog asked
    for), so it can be started unconditionally. Cancellation is only observed in the sleep.
    """
    if not notifier.enabled or interval is None or interval <= 0:
        return
    while True:
        await notifier.watchdog()
        await trio.sleep(interval)


def _parse_notify_socket(value: str) -> str | None:
    """The address for ``sendto`` from a ``NOTIFY_SOCKET`` value, or None if unusable.

    ``/path`` is a filesystem socket and ``@name`` an abstract one. Other forms (``vsock:``,
    used by virtual machines) are not supported and disable notifications with a warning.
    """
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    logger.warning("ignoring unsupported NOTIFY_SOCKET %r", value)
    return None


def _display_address(address: str) -> str:
    return "@" + address[1:] if address.startswith("\0") else address


def _field_value(value: object) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    return str(value).replace("\r", " ").replace("\n", " ")
