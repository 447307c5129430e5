"""shell.run with real processes: allowlist, I/O, output caps, and killing on cancel."""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import taskqueue_plugin_shell
import trio
from taskqueue_plugin_shell import (
    BASE_ENV,
    TASK_TYPE,
    CommandFailedError,
    ExecutableNotAllowedError,
    ShellCommandSpec,
    ShellPayloadError,
    ShellSettings,
    resolve_allowlist,
)

from taskqueue.config.plugins import parse_plugin_settings
from taskqueue.errors import ConfigError, InvalidPayloadError, PermanentError
from taskqueue.models import ClaimedTask, Priority
from taskqueue.payloads import decode_payload
from taskqueue.plugin import ProcessorRegistry, TaskContext
from taskqueue.processors import load_plugins
from taskqueue.testing import plugin_registry, run_processor


def context(payload: Any) -> TaskContext:
    task = ClaimedTask(
        id="t-1",
        type=TASK_TYPE,
        priority=Priority.MEDIUM,
        payload=payload,
        attempt=1,
        max_retries=3,
        timeout_ms=60_000,
        ready_ms=0,
        started_ms=0,
    )
    return TaskContext(task, worker_id="w", logger=logging.getLogger("t"))


def parse_settings(table: dict[str, Any]) -> ShellSettings:
    """``table`` as the daemon reads ``[plugins.shell]``."""
    return parse_plugin_settings(ShellSettings, "shell", table)


def registry(*allowed: str, **settings: Any) -> ProcessorRegistry:
    """shell.run as the daemon registers it, with ``allowed`` as the allowlist."""
    return plugin_registry(
        taskqueue_plugin_shell,
        name="shell",
        settings={"allowed_executables": list(allowed), **settings},
    )


async def run(payload: Any, *allowed: str, **settings: Any) -> dict[str, Any]:
    done = await run_processor(registry(*allowed, **settings), TASK_TYPE, payload)
    result: dict[str, Any] = done.value
    return result


def process_is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None  # not written yet, or half written


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> bool:
    """Poll ``condition`` (something another process changes) until true or ``within`` passes."""
    for _ in range(int(within / 0.01)):
        if condition():
            return True
        await trio.sleep(0.01)
    return condition()


async def wait_for_pid_file(path: Path) -> int:
    assert await eventually(lambda: read_pid(path) is not None), f"{path} never appeared"
    pid = read_pid(path)
    assert pid is not None
    return pid


# --- the allowlist -----------------------------------------------------------------------------


async def test_with_the_default_empty_allowlist_every_task_is_refused() -> None:
    with pytest.raises(ExecutableNotAllowedError) as info:
        await run({"argv": ["echo", "hi"]})
    assert "shell.run is disabled" in str(info.value)
    assert "[plugins.shell] allowed_executables" in str(info.value)


async def test_an_allowed_name_runs_the_path_it_resolved_to_at_registration() -> None:
    result = await run({"argv": ["echo", "hello", "world"]}, "echo")
    assert result["exit_code"] == 0
    assert result["signal"] is None
    assert result["stdout"] == "hello world\n"
    assert result["stderr"] == ""
    assert (result["stdout_truncated"], result["stderr_truncated"]) == (False, False)
    json.dumps(result)  # a task result must be JSON-serialisable


async def test_an_allowed_name_may_also_be_called_by_its_absolute_path() -> None:
    echo = shutil.which("echo")
    assert echo is not None
    assert (await run({"argv": [echo, "x"]}, "echo"))["stdout"] == "x\n"


@pytest.mark.parametrize("argv0", ["cat", "/usr/bin/cat", "./echo", "bin/echo", "/tmp/../usr/x"])
async def test_executables_not_on_the_allowlist_are_refused(argv0: str) -> None:
    with pytest.raises(ExecutableNotAllowedError, match=r"not in \[plugins\.shell\]"):
        await run({"argv": [argv0]}, "echo")


def test_a_shell_string_is_refused_with_a_hint_to_split_it() -> None:
    with pytest.raises(InvalidPayloadError, match="never go through a shell") as info:
        decode_payload(ShellCommandSpec, {"argv": "echo hi"})
    assert info.value.field == "argv"


# --- exit codes --------------------------------------------------------------------------------


async def test_an_unexpected_exit_code_fails_with_the_stderr_tail() -> None:
    payload = {"argv": ["sh", "-c", "echo progress; echo 'disk on fire' >&2; exit 3"]}
    with pytest.raises(CommandFailedError) as info:
        await run(payload, "sh")
    assert info.value.exit_code == 3
    assert "exited with 3 (expected 0)" in str(info.value)
    assert "disk on fire" in str(info.value)
    assert "disk on fire" in info.value.stderr_tail


async def test_expected_exit_codes_are_successes() -> None:
    payload = {"argv": ["sh", "-c", "exit 3"], "expected_exit": [0, 3]}
    assert (await run(payload, "sh"))["exit_code"] == 3


async def test_death_by_signal_is_reported_by_name() -> None:
    with pytest.raises(CommandFailedError, match="killed by SIGKILL") as info:
        await run({"argv": ["sh", "-c", "kill -9 $$"]}, "sh")
    assert info.value.exit_code == -9


# --- stdin, env, cwd ---------------------------------------------------------------------------


async def test_stdin_is_fed_to_the_process() -> None:
    result = await run({"argv": ["cat"], "stdin": "line one\nline two\n"}, "cat")
    assert result["stdout"] == "line one\nline two\n"


async def test_stdin_the_process_does_not_read_does_not_block_it() -> None:
    with trio.fail_after(5):
        result = await run({"argv": ["true"], "stdin": "x" * 2_000_000}, "true")
    assert result["exit_code"] == 0


async def test_the_environment_is_minimal_plus_operator_env_plus_payload_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAEMON_SECRET", "must not leak")
    payload = {"argv": ["env"], "env": {"GREETING": "hi", "LANG": "en_GB.UTF-8"}}
    result = await run(
        payload, "env", env={"HOME": "/nonexistent"}, allowed_env=["GREETING", "LANG"]
    )
    seen = dict(line.split("=", 1) for line in result["stdout"].splitlines())
    assert seen == {**BASE_ENV, "HOME": "/nonexistent", "GREETING": "hi", "LANG": "en_GB.UTF-8"}


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "DYLD_INSERT_LIBRARIES",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "PS4",
        "IFS",
        "GLIBC_TUNABLES",
        "BASH_FUNC_echo",
    ],
)
def test_a_task_cannot_set_variables_that_change_which_code_runs(name: str) -> None:
    with pytest.raises(InvalidPayloadError, match=f"{name} cannot be set by a task") as info:
        decode_payload(ShellCommandSpec, {"argv": ["x"], "env": {name: "/tmp/evil"}})
    assert info.value.field == "env"


async def test_cwd_sets_the_working_directory(tmp_path: Path) -> None:
    result = await run({"argv": ["pwd"], "cwd": str(tmp_path)}, "pwd")
    assert result["stdout"] == f"{tmp_path}\n"


async def test_without_cwd_a_task_runs_in_a_fresh_directory_removed_afterwards() -> None:
    result = await run({"argv": ["sh", "-c", "pwd; ls -A; touch left-behind"]}, "sh")
    directory = result["stdout"].splitlines()[0]
    assert result["stdout"] == f"{directory}\n"  # it was empty
    assert "taskqueue-shell-" in directory
    assert not await trio.Path(directory).exists()


async def test_a_missing_cwd_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ShellPayloadError, match=r"cwd: .* is not a directory") as info:
        await run({"argv": ["pwd"], "cwd": str(tmp_path / "nope")}, "pwd")
    assert info.value.field == "cwd"


# --- output caps -------------------------------------------------------------------------------


async def test_output_beyond_the_cap_is_dropped_and_marked_per_stream() -> None:
    script = "yes | head -c 100000; yes e | head -c 50 >&2"
    result = await run({"argv": ["sh", "-c", script]}, "sh", max_output_bytes=1000)
    assert result["stdout"] == ("y\n" * 500)
    assert result["stdout_truncated"] is True
    assert result["stdout_bytes"] == 100_000
    assert result["stderr"] == "e\n" * 25
    assert result["stderr_truncated"] is False


# --- timeouts and cancellation -----------------------------------------------------------------


async def test_cancelling_a_task_terminates_its_process_promptly() -> None:
    start = time.monotonic()
    with trio.fail_after(10), trio.move_on_after(0.3) as scope:
        await run({"argv": ["sleep", "30"]}, "sleep", kill_grace_period=5)
    assert scope.cancelled_caught
    assert time.monotonic() - start < 2  # SIGTERM was enough: no wait for the grace period


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    # `trap "" TERM` makes the shell ignore SIGTERM, and exec keeps it ignored in sleep.
    script = "trap '' TERM; echo $$ > pid; exec sleep 30"
    payload = {"argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    settings = {"kill_grace_period": 0.5}
    with trio.fail_after(10):  # a bug here would otherwise hang the test run
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(run, payload, "sh", **settings))
            pid = await wait_for_pid_file(tmp_path / "pid")
            cancelled_at = time.monotonic()
            nursery.cancel_scope.cancel()  # what the task's timeout does
    stopped_after = time.monotonic() - cancelled_at
    assert 0.5 <= stopped_after < 2.5
    assert process_is_gone(pid)


async def test_cancelling_kills_what_the_process_spawned(tmp_path: Path) -> None:
    script = "sleep 30 & echo $! > pid; wait"
    payload = {"argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, payload, "sh")
            grandchild = await wait_for_pid_file(tmp_path / "pid")
            nursery.cancel_scope.cancel()
    assert await eventually(lambda: process_is_gone(grandchild))


async def test_cancelling_kills_a_spawned_process_that_ignores_sigterm(tmp_path: Path) -> None:
    # The shell dies of SIGTERM at once; the sleep it started inherited "ignore SIGTERM".
    script = "trap '' TERM; sleep 30 & echo $! > pid; trap - TERM; wait"
    payload = {"argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(run, payload, "sh", kill_grace_period=0.3))
            grandchild = await wait_for_pid_file(tmp_path / "pid")
            nursery.cancel_scope.cancel()
    assert await eventually(lambda: process_is_gone(grandchild))


async def test_a_background_process_left_behind_does_not_hold_the_task(tmp_path: Path) -> None:
    script = "sleep 30 & echo $! > pid; echo started"
    payload = {"argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    with trio.fail_after(5):
        result = await run(payload, "sh", kill_grace_period=1)
    assert result["stdout"] == "started\n"
    pid = read_pid(tmp_path / "pid")
    assert pid is not None
    assert await eventually(lambda: process_is_gone(pid))


# --- validation and settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({}, "argv", "payload.argv: this field is required"),
        ({"argv": []}, "argv", "non-empty list"),
        ({"argv": ["echo", 1]}, "argv.1", "Expected str, got int"),
        ({"argv": ["echo", "a\0b"]}, "argv", "NUL"),
        ({"argv": [""]}, "argv", "empty"),
        ({"argv": ["echo"], "env": ["A=1"]}, "env", "Expected object, got array"),
        ({"argv": ["echo"], "env": {"A=B": "1"}}, "env", "not a valid variable name"),
        ({"argv": ["echo"], "env": {"A": 1}}, "env", "Expected str, got int"),
        ({"argv": ["echo"], "cwd": "relative/dir"}, "cwd", "absolute path"),
        ({"argv": ["echo"], "stdin": 5}, "stdin", "Expected str | null, got int"),
        ({"argv": ["echo"], "expected_exit": 0}, "expected_exit", "Expected array, got int"),
        ({"argv": ["echo"], "expected_exit": []}, "expected_exit", "length >= 1"),
        ({"argv": ["echo"], "expected_exit": [256]}, "expected_exit.0", "Expected int <= 255"),
        ({"argv": ["echo"], "shell": True}, "shell", "unknown field"),
    ],
)
def test_invalid_payloads_are_refused_naming_the_field(
    payload: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=re.escape(words)) as info:
        decode_payload(ShellCommandSpec, payload)
    assert info.value.field == field
    assert str(info.value).startswith(f"payload.{field}: ")
    assert isinstance(info.value, PermanentError)  # no retry: it would fail the same way


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"allowed_executables": "echo"}, 'allowed_executables = "echo": expected a list'),
        ({"allowed_executables": ["no-such-executable-here"]}, "not found on the daemon's PATH"),
        ({"allowed_executables": ["bin/echo"]}, "absolute paths or bare names"),
        ({"allowed_executables": ["/etc/passwd"]}, "not an executable file"),
        ({"max_output_bytes": 0}, "max_output_bytes = 0: expected a size"),
        ({"kill_grace_period": -1}, "kill_grace_period = -1: expected a duration"),
        ({"cwd": "/no/such/dir"}, "absolute directory path"),
        ({"env": {"A=B": "x"}}, "env = "),
        ({"allowed_executable": ["echo"]}, "allowed_executable: unknown setting; did you mean"),
    ],
)
def test_bad_settings_stop_registration_naming_the_key(
    settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_allowlist(parse_settings(settings).allowed_executables)
    assert str(caught.value).startswith("plugins.shell.")
    assert words in str(caught.value)


def test_names_are_resolved_on_the_path_given_at_registration(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho tool\n")
    tool.chmod(0o755)
    allowed = resolve_allowlist(["tool"], path=str(tmp_path))
    assert allowed.executable_for("tool").path == str(tool)
    assert allowed.executable_for(str(tool)).path == str(tool)


# --- the plugin as the daemon loads it ---------------------------------------------------------


async def test_the_entry_point_registers_shell_run_with_its_settings() -> None:
    settings = {"allowed_executables": ["echo"], "timeout": 30, "max_retries": 0}
    loaded = load_plugins(settings={"shell": settings}, skip_broken=True)
    assert TASK_TYPE in loaded.registry, (
        "shell.run is not registered: run `pip install -e plugins/shell` first"
    )
    spec = loaded.registry[TASK_TYPE]
    assert (spec.plugin, spec.is_async, spec.timeout, spec.max_retries) == ("shell", True, 30, 0)
    result = await spec.func(context({"argv": ["echo", "via the registry"]}))  # typed by spec
    assert result["stdout"] == "via the registry\n"


def test_a_bad_allowlist_entry_is_reported_as_a_broken_plugin() -> None:
    loaded = load_plugins(
        settings={"shell": {"allowed_executables": ["no-such-executable-here"]}},
        skip_broken=True,
    )
    assert TASK_TYPE not in loaded.registry
    assert "no-such-executable-here" in loaded.broken["shell"]
