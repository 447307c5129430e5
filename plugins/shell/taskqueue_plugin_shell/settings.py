"""The ``[plugins.shell]`` settings and the executable allowlist.

The allowlist is resolved once, at registration (daemon start-up): a name is looked up on the
daemon's ``PATH`` then, and the task runs that absolute path, whatever ``PATH`` the task gets.
A missing or non-executable entry stops start-up with a :class:`ConfigError`, so a typo is
noticed by the operator rather than by every task.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskqueue.errors import ConfigError
from taskqueue_plugin_shell.errors import ExecutableNotAllowedError

SECTION = "[plugins.shell]"
MIB = 1024 * 1024
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


@dataclass(frozen=True, slots=True)
class ShellSettings:
    """Operator settings of ``shell.run``; see the package README for each one."""

    allowed: Allowlist = field(default_factory=Allowlist)
    max_output_bytes: int = MIB
    kill_grace_period: float = 5.0
    #: Merged onto :data:`BASE_ENV` (operators may set PATH, HOME, ...).
    env: Mapping[str, str] = field(default_factory=dict)
    #: None: each task runs in a new empty temporary directory, removed afterwards.
    cwd: str | None = None
    #: The task type's default timeout and retries, used when a submission sets none.
    timeout: float | None = 300.0
    max_retries: int | None = None


_KEYS = frozenset(
    {
        "allowed_executables",
        "max_output_bytes",
        "kill_grace_period",
        "env",
        "cwd",
        "timeout",
        "max_retries",
    }
)


def parse_settings(table: Mapping[str, Any], *, path: str | None = None) -> ShellSettings:
    """Build settings from the plugin's config table, or raise ConfigError naming the key.

    ``path`` is the search path for bare executable names (default: the daemon's ``PATH``).
    """
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ConfigError(f"{SECTION} {unknown[0]}: unknown setting; the settings are {known}")
    defaults = ShellSettings()
    return ShellSettings(
        allowed=resolve_allowlist(table.get("allowed_executables", []), path=path),
        max_output_bytes=_positive_int(table, "max_output_bytes", defaults.max_output_bytes),
        kill_grace_period=_seconds(table, "kill_grace_period", defaults.kill_grace_period),
        env=_env(table.get("env", {})),
        cwd=_cwd(table.get("cwd")),
        timeout=_optional_timeout(table.get("timeout", defaults.timeout)),
        max_retries=None if "max_retries" not in table else _max_retries(table["max_retries"]),
    )


def resolve_allowlist(entries: Any, *, path: str | None = None) -> Allowlist:
    """Resolve ``allowed_executables`` entries to absolute paths (see :class:`Allowlist`)."""
    key = f"{SECTION} allowed_executables"
    if not isinstance(entries, list):
        example = '["/usr/bin/git", "rsync"]'
        raise ConfigError(f"{key}: expected a list such as {example}, got {entries!r}")
    paths: set[str] = set()
    names: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{key}: {entry!r} is not an executable name or path")
        if "/" in entry:
            if not os.path.isabs(entry):
                raise ConfigError(f"{key}: {entry!r} must be an absolute path or a bare name")
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


def _positive_int(table: Mapping[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{SECTION} {key}: expected a positive integer, got {value!r}")
    return value


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if not _is_number(value) or value < 0:
        raise ConfigError(f"{SECTION} {key}: expected a number of seconds >= 0, got {value!r}")
    return float(value)


def _optional_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or value <= 0:
        raise ConfigError(f"{SECTION} timeout: expected a number of seconds > 0, got {value!r}")
    return float(value)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{SECTION} max_retries: expected an integer >= 0, got {value!r}")
    return value


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{SECTION} env: expected a table of NAME = value, got {value!r}")
    env: dict[str, str] = {}
    for name, val in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise ConfigError(f"{SECTION} env: {name!r} is not a valid variable name")
        if not isinstance(val, str) or "\0" in val:
            raise ConfigError(f"{SECTION} env: the value of {name} must be a string without NUL")
        env[name] = val
    return env


def _cwd(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not os.path.isabs(value) or not os.path.isdir(value):
        raise ConfigError(f"{SECTION} cwd: expected an absolute directory path, got {value!r}")
    return value
