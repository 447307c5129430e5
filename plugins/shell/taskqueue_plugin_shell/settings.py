"""The ``[plugins.shell]`` settings and the executable allowlist.

The settings are declared with the core's settings engine (units such as ``"5s"`` and
``"1MiB"``, errors naming ``plugins.shell.<key>``). The allowlist is resolved once, at
registration (daemon start-up): a name is looked up on the
daemon's ``PATH`` then, and the task runs that absolute path, whatever ``PATH`` the task gets.
A missing or non-executable entry stops start-up with a :class:`ConfigError`, so a typo is
noticed by the operator rather than by every task.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from taskqueue.errors import ConfigError
from taskqueue.plugin import setting, settings_class
from taskqueue_plugin_shell.environment import refusal
from taskqueue_plugin_shell.errors import ExecutableNotAllowedError

SECTION = "[plugins.shell]"


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allowlist entry as resolved at start-up."""

    #: The absolute path listed (normalised), or the one a listed name resolved to on PATH:
    #: the process's ``argv[0]``, which is what a multi-call binary (busybox) dispatches on.
    path: str
    #: ``realpath(path)`` at start-up: the file that is executed, every symlink resolved.
    real: str


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The executables tasks may run.

    ``argv[0]`` matches when it is a bare name listed as a name, or an absolute path whose
    ``realpath`` is the ``realpath`` of an entry *and* whose last component is that entry's
    (so ``/usr/bin/../bin/echo``, ``/bin/echo`` and a symlink named ``echo`` to the listed
    file all run the listed echo; a path that resolves elsewhere, even through a symlinked
    directory, does not match; and allowing one applet of busybox does not allow the others,
    whose paths resolve to the same file under another name). The file executed is always the
    entry's start-up ``real``, with the entry's ``path`` as ``argv[0]``.
    """

    #: Every entry.
    entries: tuple[Allowed, ...] = ()
    #: Bare names as listed -> their entry.
    names: Mapping[str, Allowed] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def executable_for(self, argv0: str) -> Allowed:
        """The entry to run for ``argv0``, or :class:`ExecutableNotAllowedError`."""
        if not self.entries:
            raise ExecutableNotAllowedError(
                "shell.run is disabled: no executable is allowed. An operator enables it by"
                f" listing executables in {SECTION} allowed_executables (absolute paths, or"
                " names looked up on PATH when the daemon starts)",
                field="argv",
            )
        if "/" not in argv0 and argv0 in self.names:
            return self.names[argv0]
        if os.path.isabs(argv0):
            real = os.path.realpath(argv0)
            name = os.path.basename(argv0)
            for entry in self.entries:
                if entry.real == real and os.path.basename(entry.path) == name:
                    return entry
        listed = {e.path for e in self.entries} - {e.path for e in self.names.values()}
        allowed = ", ".join(sorted(self.names) + sorted(listed))
        raise ExecutableNotAllowedError(
            f"argv: {argv0!r} is not in {SECTION} allowed_executables (allowed: {allowed})",
            field="argv",
        )


def _entry_ok(entry: str) -> bool:
    return "/" not in entry or os.path.isabs(entry)


def _env_name_ok(name: str) -> bool:
    return "=" not in name and "\0" not in name


def _allowable_env(name: str) -> bool:
    return refusal(name) is None


def _directory_ok(path: str) -> bool:
    return os.path.isabs(path) and os.path.isdir(path)


@settings_class
class ShellSettings:
    """Operator settings of ``shell.run``; see the package README for each one.

    Off by default: with the empty ``allowed_executables`` every task is refused.
    """

    _section: ClassVar[str] = "plugins.shell"

    allowed_executables: tuple[str, ...] = setting(
        (),
        check=_entry_ok,
        expected='a list of absolute paths or bare names, such as ["/usr/bin/git", "rsync"]',
    )
    max_output_bytes: int = setting("1MiB", kind="size", positive=True)
    kill_grace_period: float = setting("5s", kind="duration")
    #: Names a payload's ``env`` may set (default: none). Names the loader or shells read are
    #: refused here too (see :mod:`taskqueue_plugin_shell.environment`).
    allowed_env: tuple[str, ...] = setting(
        (),
        check=_allowable_env,
        expected='a list of variable names a task may set, such as ["GIT_TERMINAL_PROMPT"];'
        " never PATH, LD_*, BASH_ENV, ENV, BASH_FUNC_*, SHELLOPTS, PS4, IFS and the like",
    )
    #: Merged onto :data:`BASE_ENV` (operators may set PATH, HOME, ...).
    env: Mapping[str, str] = setting(
        {}, check=_env_name_ok, expected="a table of NAME = value (names without '=')"
    )
    #: None: each task runs in a new empty temporary directory, removed afterwards.
    cwd: str | None = setting(None, check=_directory_ok, expected="an absolute directory path")
    #: The task type's default timeout and retries, used when a submission sets none.
    timeout: float | None = setting("5m", kind="duration", positive=True)
    max_retries: int | None = setting(None, minimum=0)


def resolve_allowlist(entries: Iterable[str], *, path: str | None = None) -> Allowlist:
    """Resolve ``allowed_executables`` entries (see :class:`Allowlist`).

    ``path`` is the search path for bare names (default: the daemon's ``PATH``).
    """
    key = "plugins.shell.allowed_executables"
    resolved: list[Allowed] = []
    names: dict[str, Allowed] = {}
    for entry in entries:
        if "/" in entry:
            listed = os.path.normpath(entry)
            if not (os.path.isfile(listed) and os.access(listed, os.X_OK)):
                raise ConfigError(f"{key}: {entry!r} is not an executable file")
        else:
            found = shutil.which(entry, path=path if path is not None else os.environ.get("PATH"))
            if found is None:
                raise ConfigError(f"{key}: {entry!r} is not found on the daemon's PATH")
            if not os.path.isabs(found):
                raise ConfigError(
                    f"{key}: {entry!r} resolves to the relative path {found!r}; list it by its"
                    " absolute path"
                )
            listed = os.path.normpath(found)
        allowed = Allowed(path=listed, real=os.path.realpath(listed))
        if "/" not in entry:
            names[entry] = allowed
        resolved.append(allowed)
    return Allowlist(entries=tuple(resolved), names=names)
