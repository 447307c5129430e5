"""Every core of a host: ``--processes N`` runs N daemon processes under one supervisor.

Python runs one thread of Python code at a time, so one daemon process uses one core. The
supervisor starts N copies of the daemon (``python -m taskqueue <mode> ...``, the same
arguments without ``--processes``), each its own trio loop, its own worker id and its own
Redis connections; API processes share the port through ``SO_REUSEPORT``, which lets the
kernel spread connections over them.

It speaks systemd's notify protocol in both directions: each child gets a ``NOTIFY_SOCKET`` of
the supervisor's own, so the supervisor tells its service manager ``READY=1`` once every child
said so, and a child that stops pinging its watchdog (a hung event loop) is killed and started
again, as is a child that exits while the supervisor is not stopping (after a back-off that
grows while children keep dying young). SIGTERM goes on to every child, each drains as it
would alone, and the supervisor exits once all have: 0 if every child exited 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import trio

from taskqueue.children import die_with_parent
from taskqueue.daemon.systemd import SystemdNotifier, run_watchdog, watchdog_interval
from taskqueue.numerals import natural

log = logging.getLogger(__name__)

#: A child that dies within this many seconds of its start died young: the next start waits
#: twice as long as the last (up to :data:`MAX_BACKOFF`); an older child restarts at once.
YOUNG = 10.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Variables of the supervisor's own service manager that no child may inherit.
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def process_count(value: str) -> int:
    """``--processes``: a number of at least 1, or ``auto`` for the cores this process may use."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    count = natural(value)
    if count is None or count < 1:
        raise ValueError(f"--processes must be a number of at least 1 or auto, not {value!r}")
    return count


def child_argv(argv: Sequence[str]) -> list[str]:
    """The command line of a child: this one (``taskqueue`` arguments, no program name)
    without ``--processes``, run as ``python -m taskqueue``."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            args.append(arg)
    return [sys.executable, "-m", "taskqueue", *args]


@attrs.define(eq=False)
class Child:
    """One daemon process of the supervisor, and the notify socket it reports on."""

    index: int
    notify_path: Path
    sock: trio.socket.SocketType
    process: trio.Process | None = None
    started_at: float = 0.0
    ready: bool = False
    last_ping: float = 0.0
    young_deaths: int = 0


class Supervisor:
    """Runs ``processes`` children of ``argv`` with ``env`` until SIGTERM (see the module)."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        processes: int,
        *,
        worker_id: str | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = {k: v for k, v in env.items() if k not in _SYSTEMD_VARIABLES}
        self.processes = processes
        self.worker_id = worker_id
        self.notifier = notifier or SystemdNotifier(env)
        self.watchdog = watchdog_interval(env)
        self.children: list[Child] = []
        #: Set by the first SIGTERM or SIGINT.
        self.stopping = trio.Event()
        self._all_ready_sent = False
        self._exit_codes: dict[int, int] = {}

    async def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="taskqueue-supervisor-") as directory:
            for index in range(self.processes):
                path = Path(directory) / f"notify-{index}"
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                await sock.bind(str(path))
                self.children.append(Child(index, path, sock))
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch_signals)
                    if self.watchdog is not None:
                        nursery.start_soon(run_watchdog, self.notifier, self.watchdog)
                        nursery.start_soon(self._watch_children)
                    for child in self.children:
                        nursery.start_soon(self._listen, child)
                    async with trio.open_nursery() as keepers:  # until every child has ended
                        for child in self.children:
                            keepers.start_soon(self._keep_running, child)
                    nursery.cancel_scope.cancel()
            finally:
                for child in self.children:
                    child.sock.close()
        codes = set(self._exit_codes.values())
        return 0 if codes <= {0} else 1

    # -- one child --------------------------------------------------------------------------------

    def _child_env(self, child: Child) -> dict[str, str]:
        env = dict(self.env)
        env["NOTIFY_SOCKET"] = str(child.notify_path)
        env["TASKQUEUE_PROCESSES"] = "1"
        env["TASKQUEUE_SERVER__REUSE_PORT"] = "true"
        if self.watchdog is not None:  # the same timeout as ours: we ping only while they do
            env["WATCHDOG_USEC"] = str(round(self.watchdog * 2 * 1_000_000))
        if self.worker_id:
            env["TASKQUEUE_WORKER__ID"] = f"{self.worker_id}-{child.index}"
        return env

    async def _keep_running(self, child: Child) -> None:
        """Start ``child``, and again whenever it ends while the supervisor is not stopping."""
        while not self.stopping.is_set():
            child.ready = False
            child.started_at = child.last_ping = trio.current_time()
            child.process = process = await trio.lowlevel.open_process(
                child_argv(self.argv),
                env=self._child_env(child),
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
            if self.stopping.is_set():  # the signal came while it was being started
                process.send_signal(signal.SIGTERM)
            log.info(
                "started process %d of %d (pid %d)", child.index + 1, self.processes, process.pid
            )
            code = await process.wait()
            self._exit_codes[child.index] = code
            if self.stopping.is_set():
                return
            young = trio.current_time() - child.started_at < YOUNG
            child.young_deaths = child.young_deaths + 1 if young else 0
            backoff = (
                min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (child.young_deaths - 1)) if young else 0
            )
            log.warning(
                "process %d (pid %d) exited with %s; starting it again in %.1fs",
                child.index + 1,
                process.pid,
                _describe(code),
                backoff,
            )
            await trio.sleep(backoff)

    async def _listen(self, child: Child) -> None:
        """Read ``child``'s notifications: its readiness and its watchdog pings."""
        while True:
            data = await child.sock.recv(4096)
            fields = dict(
                line.split("=", 1)
                for line in data.decode("utf-8", "replace").splitlines()
                if "=" in line
            )
            if fields.get("WATCHDOG") == "1":
                child.last_ping = trio.current_time()
            if fields.get("READY") == "1" and not child.ready:
                child.ready = True
                child.last_ping = trio.current_time()
                await self._maybe_all_ready()

    async def _maybe_all_ready(self) -> None:
        if all(c.ready for c in self.children) and not self.stopping.is_set():
            status = f"{self.processes} processes serving"
            if not self._all_ready_sent:
                self._all_ready_sent = True
                log.info("all %d processes are serving", self.processes)
                await self.notifier.ready(status)
            else:
                await self.notifier.status(status)

    async def _watch_children(self) -> None:
        """Kill a ready child that has not pinged for a watchdog timeout; it is restarted."""
        assert self.watchdog is not None
        timeout = self.watchdog * 2
        while True:
            await trio.sleep(self.watchdog / 2)
            now = trio.current_time()
            for child in self.children:
                process = child.process
                if process is None or process.returncode is not None or not child.ready:
                    continue
                if now - child.last_ping > timeout:
                    log.error(
                        "process %d (pid %d) has not pinged its watchdog for %.1fs: killing it",
                        child.index + 1,
                        process.pid,
                        now - child.last_ping,
                    )
                    process.kill()

    # -- stopping ---------------------------------------------------------------------------------

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping.is_set():
                    self.stopping.set()
                    log.info("%s: stopping all %d processes (each drains)", name, self.processes)
                    await self.notifier.stopping(f"stopping {self.processes} processes")
                else:
                    log.warning("%s again: the processes stop now", name)
                for child in self.children:
                    if child.process is not None and child.process.returncode is None:
                        child.process.send_signal(signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        return signal.Signals(-code).name
    return f"code {code}"


__all__ = ["Supervisor", "child_argv", "process_count"]
