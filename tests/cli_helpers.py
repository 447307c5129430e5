"""Helpers for the CLI tests: run the real ``taskqueue`` console script in a subprocess, next to
a real ``taskqueue worker`` daemon, and read what it printed.

Commands against a live daemon (:meth:`Daemon.run`) run in this process through click's
runner instead: the same ``main`` with the same arguments, environment, exit code, stdout and
stderr, without an interpreter start (a third of a second of CPU) per command. What only a
process shows (start-up errors, the console script, the working directory) goes through
:func:`run`.

The daemon is started once per test module (:func:`start_daemon`) in a namespace of its own,
so every command of the module talks to the same live worker; nothing here sleeps for a fixed
time: waits poll a condition under a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import redis
from click.testing import CliRunner
from daemon_helpers import STARTUP, free_port, worker_env

from taskqueue.broker.keys import Keys
from taskqueue.cli import main

#: The console script installed with the package (what an operator types), beside the venv's
#: python.
TASKQUEUE = shutil.which("taskqueue", path=str(Path(sys.executable).parent)) or "taskqueue"

#: Variables that would change how the command prints, removed unless a test sets them.
_OUTPUT_VARIABLES = ("FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES", "TERM")


@attrs.frozen
class Result:
    """How one command ended and what it printed."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)

    @property
    def error(self) -> str:
        """The one-line error, after checking it is exactly one line and no traceback."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        assert lines[0].startswith("taskqueue: "), lines[0]
        return lines[0].removeprefix("taskqueue: ")

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"taskqueue {command} -> {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def cli_env(redis_url: str, namespace: str, **variables: str) -> dict[str, str]:
    """The environment of a command on ``redis_url`` and ``namespace``, not a terminal."""
    env = worker_env(redis_url, TASKQUEUE_REDIS__NAMESPACE=namespace)
    env["TASKQUEUE_LOGGING__FORMAT"] = "console"
    for name in _OUTPUT_VARIABLES:
        env.pop(name, None)
    env.update(variables)
    return env


def run(
    env: Mapping[str, str],
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 30,
) -> Result:
    """Run ``taskqueue *args`` to its end (in ``cwd``, if given)."""
    done = subprocess.run(
        [TASKQUEUE, *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def run_in_process(env: Mapping[str, str], *args: str, stdin: str | None = None) -> Result:
    """Run ``taskqueue *args`` as :func:`run` does, in this process: the environment is
    exactly ``env`` while it runs (every other variable unset), stdin is ``stdin`` or empty,
    and an exception that escapes ``main`` fails the test with its traceback."""
    only_env: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    only_env.update(env)
    result = CliRunner().invoke(
        main, list(args), input=stdin, env=only_env, prog_name="taskqueue", catch_exceptions=False
    )
    return Result(tuple(args), result.exit_code, result.stdout, result.stderr)


def wait_until(condition: Callable[[], bool], what: str, within: float = STARTUP) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting until {what}")
        time.sleep(0.02)


@attrs.define
class Daemon:
    """A live ``taskqueue worker`` and the environment to run commands against it."""

    env: dict[str, str]
    keys: Keys
    redis: redis.Redis
    process: subprocess.Popen[bytes]
    log: Path

    def run(self, *args: str, stdin: str | None = None, **variables: str) -> Result:
        """``taskqueue *args`` against this daemon (in this process: :func:`run_in_process`)."""
        return run_in_process({**self.env, **variables}, *args, stdin=stdin)

    def worker_ids(self) -> list[str]:
        return [str(m) for m in self.redis.zrange(self.keys.workers, 0, -1)]


@contextmanager
def start_daemon(
    redis_url: str,
    namespace: str,
    log_dir: Path,
    *flags: str,
    cwd: Path | None = None,
    command: str = "worker",
    variables: Mapping[str, str] | None = None,
) -> Iterator[Daemon]:
    """A ``taskqueue worker *flags`` (or another daemon ``command``) on ``namespace``, with
    ``variables`` in its environment (started in ``cwd``, if given), registered before the
    block starts; stopped with SIGTERM (drained) after it."""
    env = cli_env(redis_url, namespace, **(variables or {}))
    log = log_dir / f"{command}-{namespace}.log"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(namespace)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TASKQUEUE, command, *flags],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    daemon = Daemon(env, keys, client, process, log)
    try:
        try:
            wait_until(lambda: bool(client.zcard(keys.workers)), "the worker has registered")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{log.read_text()}") from None
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        client.close()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    return free_port()


def env_without_redis(**variables: str) -> dict[str, str]:
    """An environment that names no Redis at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQUEUE_")}
    for name in _OUTPUT_VARIABLES:
        env.pop(name, None)
    env.update(variables)
    return env
