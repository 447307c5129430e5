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
from taskqueue_plugin_shell.errors import ExecutableNotAllowedError

SECTION = "[plugins.shell]"
#: The environment every command starts from; nothing is inherited from the daemon.
BASE_ENV: Mapping[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The executables tasks may run.

    ``argv[0]`` matches when it is a bare name listed as a name, or an absolute path equal to a
    listed path or to the path a listed name resolved to. Paths are compared as written (after
    normalising ``.``/``..``), never through symlinks: allowing one applet of a multi-call binary
    such as busybox must not allow all of them.
    """

    #: Every runnable absolute path.
    paths: frozenset[str] = frozenset()
    #: Bare names as listed -> the absolute path they resolved to.
    names: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def executable_for(self, argv0: str) -> str:
        """The absolute path to run for ``argv0``, or :class:`ExecutableNotAllowedError`."""
        if not self.paths:
            raise ExecutableNotAllowedError(
                "shell.run is disabled: no executable is allowed. An operator enables it by"
                f" listing executables in {SECTION} allowed_executables (absolute paths, or"
                " names looked up on PATH when the daemon starts)",
                field="argv",
            )
        if "/" not in argv0 and argv0 in self.names:
            return self.names[argv0]
        if os.path.isabs(argv0) and os.path.normpath(argv0) in self.paths:
            return os.path.normpath(argv0)
        allowed = ", ".join(sorted(self.names) + sorted(self.paths - set(self.names.values())))
        raise ExecutableNotAllowedError(
            f"argv: {argv0!r} is not in {SECTION} allowed_executables (allowed: {allowed})",
            field="argv",
        )


def _entry_ok(entry: str) -> bool:
    return "/" not in entry or os.path.isabs(entry)


def _env_name_ok(name: str) -> bool:
    return "=" not in name and "\0" not in name


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
    """Resolve ``allowed_executables`` entries to absolute paths (see :class:`Allowlist`).

    ``path`` is the search path for bare names (default: the daemon's ``PATH``).
    """
    key = "plugins.shell.allowed_executables"
    paths: set[str] = set()
    names: dict[str, str] = {}
    for entry in entries:
        if "/" in entry:
            resolved = os.path.normpath(entry)
            if not (os.path.isfile(resolved) and os.access(resolved, os.X_OK)):
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
            resolved = os.path.normpath(found)
            names[entry] = resolved
        paths.add(resolved)
    return Allowlist(paths=frozenset(paths), names=names)
