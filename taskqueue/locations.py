"""Where taskqueue's files are: the data directory, the config file, credential files.

Under systemd the sandbox makes the whole file system read-only except the directories the
unit asks for, and systemd names them in the environment: ``STATE_DIRECTORY``
(``StateDirectory=``, writable), ``CONFIGURATION_DIRECTORY`` (``ConfigurationDirectory=``)
and ``CREDENTIALS_DIRECTORY`` (``LoadCredential=``). Relative paths in the configuration
resolve against them when they are set, so one configuration works in a checkout (against the
working directory) and in the unit (against ``/var/lib/taskqueue``, never ``/``, which is
read-only there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from taskqueue.config import Config

__all__ = [
    "CONFIGURATION_DIRECTORY",
    "CONFIG_FILE_NAME",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "config_file",
    "credential_file",
    "data_dir",
    "systemd_directory",
]

STATE_DIRECTORY: Final = "STATE_DIRECTORY"
CONFIGURATION_DIRECTORY: Final = "CONFIGURATION_DIRECTORY"
CREDENTIALS_DIRECTORY: Final = "CREDENTIALS_DIRECTORY"
#: The file looked for in ``$CONFIGURATION_DIRECTORY`` when no config file is named.
CONFIG_FILE_NAME: Final = "taskqueue.toml"


def systemd_directory(name: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The directory systemd names in ``$name``, or None when it is unset.

    systemd joins several directories with ``:`` (``StateDirectory=a b``); the first is ours.
    """
    environ = os.environ if env is None else env
    first = environ.get(name, "").split(":")[0]
    return Path(first) if first else None


def _against(path: str | os.PathLike[str], base: Path | None) -> Path:
    """``path`` made absolute: against ``base`` when relative and ``base`` is set, else cwd."""
    given = Path(path).expanduser()
    if not given.is_absolute() and base is not None:
        given = base / given
    return given.absolute()


def data_dir(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """The absolute data directory of ``redis.data_dir`` (relative: in ``$STATE_DIRECTORY``).

    Absolute because redis-server runs in a directory of its own, where a relative one is
    wrong; not resolved through symlinks, so the path shown is the one the operator knows.
    """
    return _against(config.redis.data_dir, systemd_directory(STATE_DIRECTORY, env))


def credential_file(path: str, env: Mapping[str, str] | None = None) -> Path:
    """A secret's file: relative names are ``LoadCredential=`` names, in
    ``$CREDENTIALS_DIRECTORY`` (or the working directory outside systemd)."""
    return _against(path, systemd_directory(CREDENTIALS_DIRECTORY, env))


def config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """``$CONFIGURATION_DIRECTORY/taskqueue.toml`` when systemd names that directory and the
    file exists: a unit needs no ``--config`` flag, and none to change when it moves."""
    directory = systemd_directory(CONFIGURATION_DIRECTORY, env)
    if directory is None:
        return None
    candidate = directory / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None
