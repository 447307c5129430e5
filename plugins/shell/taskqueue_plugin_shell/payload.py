"""The ``shell.run`` payload: a msgspec Struct the core checks before the processor runs.

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
from typing import Annotated

import msgspec

from taskqueue_plugin_shell.environment import refusal

FIELDS = frozenset({"argv", "env", "cwd", "stdin", "expected_exit"})

ExitCode = Annotated[int, msgspec.Meta(ge=-64, le=255, description="0-255, or -N for signal N")]


class ShellCommandSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A ``shell.run`` payload. Registered as the type's payload, so a malformed one fails the
    task for good with :class:`~taskqueue.errors.InvalidPayloadError` naming the field."""

    #: The executable, then its arguments; a plain string is refused (there is no shell).
    argv: list[str] | str
    env: dict[str, str] = {}
    cwd: str | None = None
    stdin: str | None = None
    expected_exit: Annotated[list[ExitCode], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [0]
    )

    def __post_init__(self) -> None:
        # Each message starts with its field's name, which the core reports as payload.<name>.
        if isinstance(self.argv, str):
            raise ValueError(
                "argv: expected a list of strings, got a string; commands never go through a"
                ' shell, so split it yourself: ["ls", "-l"], not "ls -l"'
            )
        if not self.argv:
            raise ValueError("argv: expected a non-empty list of strings, got []")
        for i, arg in enumerate(self.argv):
            if "\0" in arg:
                raise ValueError(f"argv: item {i} contains a NUL character")
        if not self.argv[0]:
            raise ValueError("argv: the executable (item 0) is empty")
        for name, value in self.env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"env: {name!r} is not a valid variable name")
            why = refusal(name)
            if why is not None:
                raise ValueError(f"env: {why}")
            if "\0" in value:
                raise ValueError(f"env: the value of {name} contains a NUL")
        if self.cwd is not None and (not os.path.isabs(self.cwd) or "\0" in self.cwd):
            raise ValueError(f"cwd: expected an absolute path, got {self.cwd!r}")

    @property
    def stdin_bytes(self) -> bytes | None:
        return None if self.stdin is None else self.stdin.encode()
