"""Run one process with capped output, and make sure it is gone when we are.

The process starts in a session (and process group) of its own, so signals reach everything it
spawned. How it ends:

* it exits: whatever it left running in its group is killed (it would hold our pipes open and
  run unsupervised), and the pipes are drained for at most ``kill_grace_period`` (1 s at least);
* we are cancelled (the task's timeout, a cancel request, worker shutdown): the group gets
  SIGTERM, then SIGKILL if the leader has not exited within ``kill_grace_period``. That clean-up
  is shielded, so cancellation returns at most ``kill_grace_period`` (plus a moment for the
  kernel) after it was requested, and never leaves the process behind.

The leader is always reaped. A process that leaves its group on purpose (``setsid``, a double
fork) escapes the group signals; that is what containers and cgroups are for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

#: Output left in the pipes after the process exited is read for at least this long.
_MIN_DRAIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CapturedOutput:
    """One output stream: its first ``limit`` bytes, and how many bytes there were in all."""

    data: bytes
    total_bytes: int

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self.data)


@dataclass(frozen=True, slots=True)
class Completed:
    """How the process ended. ``returncode`` is ``-N`` when signal N killed it."""

    returncode: int
    stdout: CapturedOutput
    stderr: CapturedOutput


class _Capture:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self._total = 0

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        """Read to EOF, keeping the first ``limit`` bytes; the rest is counted and dropped so
        the process never blocks on a full pipe."""
        async for chunk in stream:
            self._total += len(chunk)
            room = self._limit - len(self._data)
            if room > 0:
                self._data += chunk[:room]

    def result(self) -> CapturedOutput:
        return CapturedOutput(bytes(self._data), self._total)


async def run_capped(
    argv: Sequence[str],
    *,
    executable: str | None = None,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    max_output_bytes: int,
    kill_grace_period: float,
) -> Completed:
    """Run ``argv`` (``argv[0]`` an executable path; never a shell) to completion; the file
    executed is ``executable`` when given (``argv[0]`` is then only what the process sees).

    Raises ``OSError`` when the process cannot be started. Cancellation stops the process
    as the module docstring describes, then propagates.
    """
    process = await trio.lowlevel.open_process(
        list(argv),
        executable=executable,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    stdout, stderr = _Capture(max_output_bytes), _Capture(max_output_bytes)
    try:
        async with trio.open_nursery() as nursery:
            if stdin is not None:
                assert process.stdin is not None
                nursery.start_soon(_feed, process.stdin, stdin)
            assert process.stdout is not None and process.stderr is not None
            nursery.start_soon(stdout.drain, process.stdout)
            nursery.start_soon(stderr.drain, process.stderr)
            await process.wait()
            _signal_group(process, signal.SIGKILL)
            # Normally the pipes are at EOF now; only a process that left the group holds them.
            drain = max(kill_grace_period, _MIN_DRAIN_SECONDS)
            nursery.cancel_scope.deadline = trio.current_time() + drain
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                await _stop(process, kill_grace_period)
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
    assert process.returncode is not None
    return Completed(process.returncode, stdout.result(), stderr.result())


async def _feed(pipe: trio.abc.SendStream, data: bytes) -> None:
    try:
        async with pipe:
            await pipe.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the process exited (or closed its stdin) without reading everything


async def _stop(process: trio.Process, grace_period: float) -> None:
    """SIGTERM the group; SIGKILL it if the leader is still there after ``grace_period``."""
    _signal_group(process, signal.SIGTERM)
    with trio.move_on_after(grace_period):
        await process.wait()
    # Also when the leader exited in time: group members that ignore SIGTERM are still there.
    _signal_group(process, signal.SIGKILL)
    await process.wait()


def _signal_group(process: trio.Process, signum: int) -> None:
    # The group id is the leader's pid (start_new_session); the group outlives its leader for
    # as long as any member lives, so the id stays ours while there is anyone to signal.
    # Failing means the group is empty: everyone has exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
