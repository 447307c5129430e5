"""The ``shell.run`` payload: its fields, their defaults, and validation. No I/O here.

::

    {
      "argv": ["git", "-C", "/srv/repo", "pull"],  # required: executable and arguments
      "env": {"GIT_TERMINAL_PROMPT": "0"},          # optional: merged onto the minimal env
      "cwd": "/srv/repo",                            # optional absolute directory
      "stdin": "text fed to the process",            # optional; default: /dev/null
      "expected_exit": [0]                           # optional; default [0]
    }

Nothing is ever passed through a shell: ``argv`` is the exact argument vector.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskqueue_plugin_shell.errors import ShellPayloadError

FIELDS = frozenset({"argv", "env", "cwd", "stdin", "expected_exit"})
#: Environment names a task may not set: they change which code runs (the executable is
#: fixed by the allowlist; these would swap in other code behind its back).
FORBIDDEN_ENV_PREFIXES = ("LD_", "DYLD_")
FORBIDDEN_ENV_NAMES = frozenset({"PATH"})


@dataclass(frozen=True, slots=True)
class ShellCommandSpec:
    """A validated payload, ready to run."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    stdin: bytes | None = None
    expected_exit: frozenset[int] = frozenset({0})


def parse_payload(payload: Any) -> ShellCommandSpec:
    """Validate a ``shell.run`` payload, or raise :class:`ShellPayloadError` naming the field."""
    if not isinstance(payload, Mapping):
        raise ShellPayloadError(
            f"payload: expected an object with at least 'argv', got {_kind(payload)}", field=None
        )
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise ShellPayloadError(
            f"{unknown[0]}: unknown field; the fields are {', '.join(sorted(FIELDS))}",
            field=unknown[0],
        )
    return ShellCommandSpec(
        argv=_parse_argv(payload.get("argv")),
        env=_parse_env(payload.get("env", {})),
        cwd=_parse_cwd(payload.get("cwd")),
        stdin=_parse_stdin(payload.get("stdin")),
        expected_exit=_parse_expected_exit(payload.get("expected_exit", [0])),
    )


def _parse_argv(value: Any) -> tuple[str, ...]:
    if value is None:
        message = "argv: required (a list of strings, executable first)"
        raise ShellPayloadError(message, field="argv")
    if isinstance(value, str):
        raise ShellPayloadError(
            "argv: expected a list of strings, got a string; commands never go through a shell,"
            ' so split it yourself: ["ls", "-l"], not "ls -l"',
            field="argv",
        )
    if not isinstance(value, list) or not value:
        raise ShellPayloadError(
            f"argv: expected a non-empty list of strings, got {value!r}", field="argv"
        )
    for i, arg in enumerate(value):
        if not isinstance(arg, str):
            raise ShellPayloadError(
                f"argv: item {i} must be a string, got {_kind(arg)}", field="argv"
            )
        if "\0" in arg:
            raise ShellPayloadError(f"argv: item {i} contains a NUL character", field="argv")
    if not value[0]:
        raise ShellPayloadError("argv: the executable (item 0) is empty", field="argv")
    return tuple(value)


def _parse_env(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ShellPayloadError(
            f"env: expected an object of name -> value, got {_kind(value)}", field="env"
        )
    env: list[tuple[str, str]] = []
    for name, val in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ShellPayloadError(f"env: {name!r} is not a valid variable name", field="env")
        if name in FORBIDDEN_ENV_NAMES or name.startswith(FORBIDDEN_ENV_PREFIXES):
            raise ShellPayloadError(
                f"env: {name} cannot be set by a task (it changes which code runs);"
                " an operator can set it in [plugins.shell] env",
                field="env",
            )
        if not isinstance(val, str):
            raise ShellPayloadError(
                f"env: the value of {name} must be a string, got {_kind(val)}", field="env"
            )
        if "\0" in val:
            raise ShellPayloadError(f"env: the value of {name} contains a NUL", field="env")
        env.append((name, val))
    return tuple(env)


def _parse_cwd(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise ShellPayloadError(f"cwd: expected an absolute path, got {value!r}", field="cwd")
    return value


def _parse_stdin(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ShellPayloadError(f"stdin: expected a string, got {_kind(value)}", field="stdin")
    return value.encode()


def _parse_expected_exit(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ShellPayloadError(
            f"expected_exit: expected a non-empty list of exit codes, got {value!r}",
            field="expected_exit",
        )
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int) or not -64 <= code <= 255:
            raise ShellPayloadError(
                f"expected_exit: {code!r} is not an exit code (0-255, or -N for signal N)",
                field="expected_exit",
            )
    return frozenset(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
