"""What a payload must not be able to do with shell.run (issue 15, item 6): run code of its
choosing through an allowlisted shell script's environment, or run a file the allowlist does
not list by a path that looks like one it does. Each attack is run for real; the marker file
the injected code would write must not appear."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import taskqueue_plugin_shell
import trio
from taskqueue_plugin_shell import (
    TASK_TYPE,
    EnvNotAllowedError,
    ExecutableNotAllowedError,
    ShellCommandSpec,
)

from taskqueue.errors import ConfigError, InvalidPayloadError, PermanentError
from taskqueue.payloads import decode_payload
from taskqueue.testing import plugin_registry, run_processor

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="the attacks need bash")
#: A real executable that prints the argv[0] it was given, standing in for busybox.
PYTHON = os.path.realpath(sys.executable)


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


async def run(payload: Any, *allowed: str, **settings: Any) -> dict[str, Any]:
    """The task as a worker runs it: the payload decoded as the type's, then the processor."""
    registry = plugin_registry(
        taskqueue_plugin_shell,
        name="shell",
        settings={"allowed_executables": list(allowed), **settings},
    )
    spec = decode_payload(ShellCommandSpec, payload)
    done = await run_processor(registry, TASK_TYPE, spec)
    result: dict[str, Any] = done.value
    return result


def lexically(path: str) -> str:
    return os.path.normpath(path)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    """An operator's wrapper script, as the README recommends allowing."""
    assert BASH is not None
    return script(tmp_path / "bin" / "wrapper", f"#!{BASH}\necho wrapped\n")


@needs_bash
@pytest.mark.parametrize("allowed_env", [[], ["GREETING"]])
async def test_bash_env_with_stdin_runs_nothing(
    wrapper: Path, marker: Path, allowed_env: list[str]
) -> None:
    payload = {
        "argv": [str(wrapper)],
        "env": {"BASH_ENV": "/dev/stdin"},
        "stdin": f"touch {marker}",
    }
    with pytest.raises(InvalidPayloadError, match="BASH_ENV cannot be set by a task"):
        await run(payload, str(wrapper), allowed_env=allowed_env)
    assert not await trio.Path(marker).exists()


@needs_bash
async def test_an_exported_bash_function_runs_nothing(wrapper: Path, marker: Path) -> None:
    payload = {"argv": [str(wrapper)], "env": {"BASH_FUNC_echo%%": f"() {{ touch {marker}; }}"}}
    with pytest.raises(InvalidPayloadError, match="not a portable variable name"):
        await run(payload, str(wrapper))
    assert not await trio.Path(marker).exists()


@needs_bash
@pytest.mark.parametrize("name", ["ENV", "SHELLOPTS", "PS4", "IFS", "LD_PRELOAD", "BASH_ENV"])
def test_an_operator_cannot_allow_a_name_the_loader_or_a_shell_reads(
    wrapper: Path, name: str
) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.shell\.allowed_env"):
        plugin_registry(
            taskqueue_plugin_shell,
            name="shell",
            settings={"allowed_executables": [str(wrapper)], "allowed_env": [name]},
        )


async def test_a_payload_sets_only_the_names_the_operator_allows(wrapper: Path) -> None:
    payload = {"argv": ["env"], "env": {"GREETING": "hi", "OTHER": "x"}}
    with pytest.raises(EnvNotAllowedError, match=r"env: OTHER may not be set") as info:
        await run(payload, "env", allowed_env=["GREETING"])
    assert info.value.field == "env"
    assert isinstance(info.value, PermanentError)  # dead-lettered at once, no retries
    with pytest.raises(EnvNotAllowedError, match=r"\(allowed: none\)"):
        await run({"argv": ["env"], "env": {"GREETING": "hi"}}, "env")
    result = await run(
        {"argv": ["env"], "env": {"GREETING": "hi"}}, "env", allowed_env=["GREETING"]
    )
    assert "GREETING=hi\n" in result["stdout"]


async def test_dot_dot_through_a_symlinked_directory_does_not_pass(
    tmp_path: Path, marker: Path
) -> None:
    """``safe/link/../bin/echo`` normalises to the allowed ``safe/bin/echo``, but the kernel
    follows ``link`` first and lands in ``evil/bin/echo``: matched after ``realpath``, it is
    refused."""
    safe = script(tmp_path / "safe" / "bin" / "echo", "#!/bin/sh\necho safe\n")
    script(tmp_path / "evil" / "bin" / "echo", f"#!/bin/sh\ntouch {marker}\n")
    (tmp_path / "evil" / "x").mkdir()
    (tmp_path / "safe" / "link").symlink_to(tmp_path / "evil" / "x")
    sneaky = f"{tmp_path}/safe/link/../bin/echo"
    assert lexically(sneaky) == str(safe)  # what the allowlist used to compare
    with pytest.raises(ExecutableNotAllowedError, match="not in"):
        await run({"argv": [sneaky]}, str(safe))
    assert not await trio.Path(marker).exists()
    assert (await run({"argv": [str(safe)]}, str(safe)))["stdout"] == "safe\n"


async def test_a_path_to_the_listed_file_runs_the_listed_file() -> None:
    echo = shutil.which("echo")
    assert echo is not None
    roundabout = os.path.join(os.path.dirname(echo), "..", os.path.basename(os.path.dirname(echo)))
    result = await run({"argv": [os.path.join(roundabout, "echo"), "x"]}, "echo")
    assert result["stdout"] == "x\n"


async def test_one_applet_of_a_multi_call_binary_allows_no_other(tmp_path: Path) -> None:
    """Two names for one file (busybox): allowing ``ls`` does not allow ``cat``, though both
    resolve to the same file; ``ls`` runs with its own name as argv[0] (here Python stands in
    for busybox, printing the argv[0] it was given)."""
    multi = PYTHON
    (tmp_path / "bin").mkdir()
    for applet in ("ls", "cat"):
        (tmp_path / "bin" / applet).symlink_to(multi)
    ls = str(tmp_path / "bin" / "ls")
    show = ["-I", "-c", "import sys; print(sys.orig_argv[0])"]
    assert (await run({"argv": [ls, *show]}, ls))["stdout"] == f"{ls}\n"
    with pytest.raises(ExecutableNotAllowedError):
        await run({"argv": [str(tmp_path / "bin" / "cat"), *show]}, ls)
    other = tmp_path / "other"
    other.symlink_to(multi)
    with pytest.raises(ExecutableNotAllowedError):
        await run({"argv": [str(other), *show]}, ls)


async def test_the_file_run_is_the_one_resolved_at_start_up(tmp_path: Path, marker: Path) -> None:
    """Re-pointing a listed symlink after start-up does not change what runs."""
    good = script(tmp_path / "good", "#!/bin/sh\necho good\n")
    script(tmp_path / "bad", f"#!/bin/sh\ntouch {marker}\n")
    link = tmp_path / "bin" / "tool"
    link.parent.mkdir()
    link.symlink_to(good)
    registry = plugin_registry(
        taskqueue_plugin_shell, name="shell", settings={"allowed_executables": [str(link)]}
    )
    link.unlink()
    link.symlink_to(tmp_path / "bad")
    spec = decode_payload(ShellCommandSpec, {"argv": [str(good.parent / "bin" / "tool")]})
    with pytest.raises(ExecutableNotAllowedError):
        await run_processor(registry, TASK_TYPE, spec)
    assert not await trio.Path(marker).exists()
