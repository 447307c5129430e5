"""Helpers for the daemon tests: start daemons (in this process or as real ``taskqueue worker``
processes) and wait on the broker for what they do, so each test reads as a story.

Nothing here sleeps for a fixed time to "let things happen": every wait polls a condition at a
short interval under a deadline, and a missed deadline fails with what was being waited for.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from taskqueue.broker import Broker, Submission
from taskqueue.config import Config, load_config
from taskqueue.daemon.runtime import Daemon, Mode, begin_shutdown, run_daemon
from taskqueue.models import Task, TaskState
from taskqueue.processors import LoadedPlugins, load_plugins

#: Short timings, so leases lapse, dead workers are reaped and retries come back in well under a
#: second. In-process daemons get them as overrides; real processes as environment variables.
FAST_SETTINGS: Mapping[str, str] = {
    "worker.heartbeat_interval": "0.1s",
    "worker.worker_timeout": "1s",
    "worker.drain_timeout": "5s",
    "task.retry_base_delay": "10ms",
    "task.retry_max_delay": "100ms",
}

#: How often the waits below look at the broker.
POLL = 0.02
#: How long to wait for something that needs a worker process to start first: its imports alone
#: take a second or two, more on a machine busy with other tests.
STARTUP = 15.0


# -- configuration ----------------------------------------------------------------------------


def daemon_config(redis_url: str, path: Path | None = None, /, **settings: object) -> Config:
    """The configuration of an in-process daemon on ``redis_url``: :data:`FAST_SETTINGS`, the
    TOML file at ``path`` if given, then ``settings`` (``worker__concurrency=5`` sets
    ``worker.concurrency``). The environment is ignored."""
    overrides: dict[str, object] = {**FAST_SETTINGS, "redis.url": redis_url}
    overrides.update({key.replace("__", "."): value for key, value in settings.items()})
    return load_config(path, env={}, overrides=overrides)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- in-process daemons -----------------------------------------------------------------------


@asynccontextmanager
async def running_daemon(
    config: Config, plugins: LoadedPlugins | None = None, *, mode: Mode = Mode.WORKER
) -> AsyncIterator[Daemon]:
    """A daemon running in this trio run, signals left alone, for the ``async with`` block.

    On a normal exit it is stopped the way the first SIGTERM stops it (drain, then deregister)
    and the block waits for it to finish; if the block raises, the daemon is cancelled at once.
    """
    if plugins is None:
        plugins = load_plugins(settings=config.plugins)
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(
            functools.partial(run_daemon, config, plugins, mode=mode, handle_signals=False)
        )
        try:
            yield daemon
        except BaseException:
            nursery.cancel_scope.cancel()
            raise
        begin_shutdown(daemon)
        nursery.cancel_scope.deadline = trio.current_time() + 10


# -- real worker processes --------------------------------------------------------------------

#: Variables a worker must not inherit from whoever runs the tests.
_INHERITED_NOT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def worker_env(redis_url: str, **variables: str) -> dict[str, str]:
    """The environment of a ``taskqueue worker`` on ``redis_url`` with :data:`FAST_SETTINGS`,
    JSON logs, and ``variables`` on top (None removes one). No ``TASKQUEUE_*`` variable of the
    test runner's own leaks in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TASKQUEUE_") and key not in _INHERITED_NOT
    }
    env["TASKQUEUE_REDIS__URL"] = redis_url
    env["TASKQUEUE_LOGGING__FORMAT"] = "json"
    for key, value in FAST_SETTINGS.items():
        section, name = key.split(".")
        env[f"TASKQUEUE_{section.upper()}__{name.upper()}"] = value
    env["TASKQUEUE_WORKER__HEARTBEAT_INTERVAL"] = "0.2s"
    env.update(variables)
    return env


class WorkerProcess:
    """A real ``python -m taskqueue worker`` process, its stderr (JSON log lines) in a file.

    Use ``async with WorkerProcess(...) as worker``: leaving the block kills the process if the
    test has not already stopped it.
    """

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str],
        *,
        name: str = "worker",
        args: Iterable[str] = (),
        command: str = "worker",
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.argv = [sys.executable, "-m", "taskqueue", command, *args]
        self.log_path = log_dir / f"{name}.log"
        self.process: trio.Process | None = None

    async def __aenter__(self) -> WorkerProcess:
        with self.log_path.open("wb") as log:
            self.process = await trio.lowlevel.open_process(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with trio.move_on_after(5):
                await self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, within: float = 5.0) -> int:
        """The exit code, once the process has ended (at most ``within`` seconds from now)."""
        assert self.process is not None
        try:
            with trio.fail_after(within):
                return await self.process.wait()
        except trio.TooSlowError:
            raise AssertionError(
                f"{self.name} still runs {within}s later; its log:\n{self.output()}"
            ) from None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines as ``{"message": line}``)."""
        records: list[dict[str, Any]] = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"message": line}
            records.append(record if isinstance(record, dict) else {"message": line})
        return records

    async def wait_for_log(
        self, text: str, within: float = 5.0, *, or_: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The first log record whose message contains ``text`` (or one of ``or_``), once it
        has been written."""
        texts = (text, *or_)
        found: list[dict[str, Any]] = []

        async def logged() -> bool:
            found[:] = [
                r for r in self.log_records() if any(t in str(r.get("message", "")) for t in texts)
            ]
            return bool(found)

        what = " or ".join(repr(t) for t in texts)
        try:
            await wait_until(logged, f"{self.name} logs {what}", within)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.output()}") from None
        return found[0]


# -- waiting on the broker --------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 5.0
) -> None:
    """Poll ``condition`` every :data:`POLL` seconds until it holds; fail after ``within``
    seconds with an AssertionError that says ``what`` was awaited."""
    try:
        with trio.fail_after(within):
            while True:
                if await condition():
                    return
                await trio.sleep(POLL)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {within}s waiting until {what}") from None


async def wait_for_state(
    broker: Broker, task_id: str, *states: TaskState, within: float = 5.0
) -> Task:
    """The task, once it is in one of ``states`` (default: any terminal state)."""
    wanted = frozenset(states) if states else frozenset(s for s in TaskState if s.is_terminal)
    seen: list[Task] = []

    async def reached() -> bool:
        seen[:] = [await broker.get(task_id)]
        return seen[0].state in wanted

    try:
        await wait_until(reached, f"task {task_id} is {' or '.join(sorted(wanted))}", within)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it is {seen[0] if seen else 'unknown'}") from None
    return seen[0]


async def wait_for_count(broker: Broker, state: TaskState, count: int, within: float = 5.0) -> None:
    """Wait until ``count`` tasks are in ``state`` (read from the broker's counters)."""

    async def reached() -> bool:
        return (await broker.stats()).by_state[state] >= count

    await wait_until(reached, f"{count} tasks are {state}", within)


async def wait_for_worker(broker: Broker, worker_id: str, within: float = 5.0) -> None:
    """Wait until ``worker_id`` has registered (its first heartbeat has reached Redis)."""

    async def registered() -> bool:
        return worker_id in {w.id for w in await broker.workers()}

    await wait_until(registered, f"worker {worker_id} has registered", within)


async def wait_for_running(
    broker: Broker, worker_id: str, count: int, within: float = STARTUP
) -> None:
    """Wait until ``worker_id``'s heartbeat reports ``count`` tasks in hand.

    Seeing tasks ``active`` in Redis is not enough before a signal: the claim's reply may not
    have reached the worker yet, and a SIGTERM that overtakes it rightly gives the tasks back
    unstarted. The heartbeat that counts them is sent after the worker has handed them to its
    slots, which start them before the next I/O, so by the time the test reads it they run.
    """

    async def in_hand() -> bool:
        return any(w.id == worker_id and w.in_flight == count for w in await broker.workers())

    await wait_until(in_hand, f"worker {worker_id} has {count} tasks in hand", within)


async def submit(broker: Broker, task_type: str, payload: Any = None, **fields: Any) -> str:
    """Submit one task; its id."""
    submitted = await broker.enqueue(Submission(type=task_type, payload=payload, **fields))
    return submitted.id


async def submit_many(
    broker: Broker, task_type: str, payloads: Iterable[Any], **fields: Any
) -> list[str]:
    """Submit one task per payload, in one batch; their ids in order."""
    batch = [Submission(type=task_type, payload=p, **fields) for p in payloads]
    return [s.id for s in await broker.enqueue_many(batch)]


async def tasks_of(broker: Broker, ids: list[str]) -> list[Task]:
    tasks = await broker.get_many(ids)
    missing = [i for i, t in zip(ids, tasks, strict=True) if t is None]
    assert not missing, f"tasks without a record: {missing[:5]} ({len(missing)} in all)"
    return [t for t in tasks if t is not None]
