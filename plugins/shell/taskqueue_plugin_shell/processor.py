"""The ``shell.run`` processor: run one allowlisted executable, return its exit and output."""

from __future__ import annotations

import shutil
import signal
import tempfile
from typing import Any

import trio

from taskqueue.plugin import TaskContext
from taskqueue_plugin_shell.environment import environment, unlisted
from taskqueue_plugin_shell.errors import (
    CommandFailedError,
    CommandStartError,
    EnvNotAllowedError,
    ShellPayloadError,
)
from taskqueue_plugin_shell.payload import ShellCommandSpec
from taskqueue_plugin_shell.process import Completed, run_capped
from taskqueue_plugin_shell.settings import Allowlist, ShellSettings

_STDERR_TAIL_CHARS = 1000


class ShellRunProcessor:
    """Runs ``shell.run`` tasks with one set of operator settings."""

    def __init__(self, settings: ShellSettings, allowed: Allowlist) -> None:
        self.settings = settings
        self.allowed = allowed

    def environment(self, spec: ShellCommandSpec) -> dict[str, str]:
        """:data:`BASE_ENV`, then the operator's ``env``, then the payload's ``env``, whose
        names must each be listed in ``allowed_env``."""
        refused = unlisted(spec.env, frozenset(self.settings.allowed_env))
        if refused:
            allowed = ", ".join(sorted(self.settings.allowed_env)) or "none"
            raise EnvNotAllowedError(
                f"env: {', '.join(refused)} may not be set by a task: [plugins.shell]"
                f" allowed_env lists the names a payload may set (allowed: {allowed})",
                field="env",
            )
        return environment(self.settings.env, spec.env)

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        """Run an allowlisted executable (never a shell); fail on an unexpected exit code."""
        spec: ShellCommandSpec = ctx.payload  # checked by the core: registered as the payload
        allowed = self.allowed.executable_for(spec.argv[0])
        executable = allowed.path
        argv = (executable, *spec.argv[1:])
        env = self.environment(spec)
        if spec.cwd is not None and not await trio.Path(spec.cwd).is_dir():
            raise ShellPayloadError(f"cwd: {spec.cwd!r} is not a directory", field="cwd")
        scratch = None
        if spec.cwd is None and self.settings.cwd is None:
            scratch = tempfile.mkdtemp(prefix="taskqueue-shell-")
        cwd = spec.cwd or self.settings.cwd or scratch
        assert cwd is not None
        started = trio.current_time()
        try:
            completed = await run_capped(
                argv,
                executable=allowed.real,
                env=env,
                cwd=cwd,
                stdin=spec.stdin_bytes,
                max_output_bytes=self.settings.max_output_bytes,
                kill_grace_period=self.settings.kill_grace_period,
            )
        except OSError as exc:
            raise CommandStartError(f"cannot start {executable}: {exc}") from exc
        finally:
            if scratch is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_remove_tree, scratch)
        elapsed_ms = round((trio.current_time() - started) * 1000)
        ctx.logger.info("%s exited %d in %d ms", executable, completed.returncode, elapsed_ms)
        result = summarise(completed, elapsed_ms)
        if completed.returncode not in spec.expected_exit:
            tail = result["stderr"][-_STDERR_TAIL_CHARS:]
            expected = ", ".join(str(c) for c in sorted(spec.expected_exit))
            raise CommandFailedError(
                f"{executable} {_describe_exit(completed.returncode)} (expected {expected});"
                f" stderr: {tail!r}",
                exit_code=completed.returncode,
                stderr_tail=tail,
            )
        return result


def summarise(completed: Completed, elapsed_ms: int) -> dict[str, Any]:
    """The task result: exit code, signal name, output as text, truncation marks, timing."""
    code = completed.returncode
    return {
        "exit_code": code,
        "signal": _signal_name(-code) if code < 0 else None,
        "stdout": completed.stdout.data.decode(errors="replace"),
        "stderr": completed.stderr.data.decode(errors="replace"),
        "stdout_truncated": completed.stdout.truncated,
        "stderr_truncated": completed.stderr.truncated,
        "stdout_bytes": completed.stdout.total_bytes,
        "stderr_bytes": completed.stderr.total_bytes,
        "elapsed_ms": elapsed_ms,
    }


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {_signal_name(-code)}"
    return f"exited with {code}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
